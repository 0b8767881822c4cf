"""The measurements of a signed report as a DICOM Comprehensive 3D SR: TID 1500 Measurement Report.

One TID 1411 Volumetric ROI Measurements group per segment of the report's DICOM SEG
(Referenced Segment (0062,000B) + the source series), holding its volume (mL), RECIST long and
short axial axes (mm) and, on CT, its mean attenuation (Hounsfield units). The codes and their
sources are in :mod:`.codes`. The observer context (TID 1002) names the signing doctor (person) and
the model or workbench that drew the segmentation (device); the SR is complete, final and verified
by the signing doctor (PS3.3 C.17.2 Verification Flag), because it is written only on signature.

Built with highdicom (``highdicom.sr``), which checks the template's structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from . import codes

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"


class ResultObjectError(ValueError):
    """A result object cannot be built from what the portal holds (stable ``code``)."""

    def __init__(self, message: str, *, code: str):
        self.message = message
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class SegmentFigures:
    """The stored figures of one segment (label) of the report's segmentation.

    ``volume_ml`` in millilitres, ``long_axis_mm``/``short_axis_mm`` the RECIST 1.1 longest axial
    diameter and its perpendicular (mm), ``mean_hu`` the mean Hounsfield units inside the segment
    (None when the series is not CT). ``label`` is the value in the portal's label map; the SEG
    numbers its segments 1..N and says which label each is in its Segment Description ("label L").
    """

    label: int
    name: str
    volume_ml: float
    long_axis_mm: float
    short_axis_mm: float
    mean_hu: float | None = None


@dataclass(frozen=True)
class Observers:
    """Who observed: the signing doctor (DICOM PN, e.g. ``"Wang^Li"``) and the device that drew the
    segmentation (a model name and version, or the annotation workbench)."""

    person_name: str
    person_login: str
    organization: str
    device_uid: str
    device_name: str
    device_model: str = ""
    device_manufacturer: str = "Yixin Portal"


def seg_segment_numbers(seg_dataset) -> dict[int, tuple[int, object]]:
    """Map each portal label to (segment number, Segment Sequence item) of a SEG written by
    :func:`annotation.interop.dicom_seg.labelmap_to_dicom_seg` (Segment Description "label L")."""
    numbers = {}
    for item in seg_dataset.SegmentSequence:
        description = str(getattr(item, "SegmentDescription", ""))
        if description.startswith("label "):
            numbers[int(description.split()[1])] = (int(item.SegmentNumber), item)
    return numbers


def measurement_report_sr(
    *,
    source_datasets: Sequence,
    seg_dataset,
    segments: Sequence[SegmentFigures],
    observers: Observers,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int = 301,
    institution_name: str | None = None,
    content_datetime: datetime | None = None,
):
    """Build the TID 1500 Measurement Report of a report's segments.

    Parameters
    ----------
    source_datasets : sequence of pydicom.Dataset
        The source series' instances (headers suffice: read them with ``stop_before_pixels``); the
        SR takes patient and study from them and lists them, with the SEG, as evidence.
    seg_dataset : pydicom.Dataset
        The DICOM SEG the groups reference (Referenced Segment, PS3.3 C.18.9 / TID 1411 row 8).
    segments : sequence of SegmentFigures
        The figures to write, one group each; every label must be a segment of ``seg_dataset``.
    observers : Observers
        The signing doctor and the device (TID 1002 Observer Context).

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        Complete, final and verified by ``observers.person_name``.

    Raises
    ------
    ResultObjectError
        ``no_measurements`` when ``segments`` is empty; ``segment_not_in_seg`` when a label has no
        segment in the SEG.
    """
    import highdicom as hd

    if not segments:
        raise ResultObjectError("The report has no measured segment to send as a DICOM SR.", code="no_measurements")
    numbers = seg_segment_numbers(seg_dataset)
    series_uid = str(source_datasets[0].SeriesInstanceUID)
    modality = str(getattr(source_datasets[0], "Modality", ""))
    groups = []
    for figures in segments:
        if figures.label not in numbers:
            raise ResultObjectError(f"Label {figures.label} is not a segment of the DICOM SEG.",
                                    code="segment_not_in_seg")
        number, item = numbers[figures.label]
        finding_type = hd.sr.CodedConcept.from_dataset(item.SegmentedPropertyTypeCodeSequence[0])
        measurements = [
            hd.sr.Measurement(name=codes.VOLUME, value=float(figures.volume_ml), unit=codes.UNIT_ML),
            hd.sr.Measurement(name=codes.LONG_AXIS, value=float(figures.long_axis_mm), unit=codes.UNIT_MM),
            hd.sr.Measurement(name=codes.SHORT_AXIS, value=float(figures.short_axis_mm), unit=codes.UNIT_MM),
        ]
        if figures.mean_hu is not None:
            measurements.append(hd.sr.Measurement(name=codes.ATTENUATION, value=float(figures.mean_hu),
                                                  unit=codes.UNIT_HU, derivation=codes.MEAN))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=hd.UID(), identifier=f"{figures.name} (segment {number})"[:64]),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=str(seg_dataset.SOPClassUID), sop_instance_uid=str(seg_dataset.SOPInstanceUID),
                segment_number=number, source_series=hd.sr.SourceSeriesForSegmentation(series_uid)),
            finding_type=finding_type,
            measurements=measurements,
        ))
    context = hd.sr.ObservationContext(
        observer_person_context=hd.sr.ObserverContext(
            observer_type=codes.PERSON,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=observers.person_name, login_name=observers.person_login or None,
                organization_name=observers.organization or None)),
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DEVICE,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=observers.device_uid, name=observers.device_name[:64] or None,
                manufacturer_name=observers.device_manufacturer or None,
                model_name=observers.device_model[:64] or None)),
    )
    report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=codes.procedure_for_modality(modality),
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*source_datasets, seg_dataset],
        content=report,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer="Yixin Portal",
        is_complete=True,
        is_final=True,
        is_verified=True,
        verifying_observer_name=observers.person_name,
        verifying_organization=observers.organization or "Yixin Portal",
        institution_name=institution_name,
        series_description="Measurement report",
    )
    # Names (the doctor's, the hospital's) may be Chinese: declare UTF-8 (PS3.5 6.1.2.5.3).
    sr.SpecificCharacterSet = "ISO_IR 192"
    if content_datetime is not None:
        sr.ContentDate = content_datetime.strftime("%Y%m%d")
        sr.ContentTime = content_datetime.strftime("%H%M%S")
    return sr
