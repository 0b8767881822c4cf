"""Export and import of segmentations (NIfTI, JSON, DICOM SEG, study zips), labelled datasets in the
MSD / nnU-Net layout, and MONAI bundles of registered models."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError, error_message
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record

from .. import hooks
from ..models import Segmentation, SegmentationModel, Series, Study
from ..storage import segmentation_labelmap_load, series_geometry, work_dir
from .imports import study_import
from .pseudonyms import patient_date_offset, patient_deidentifier
from .registry import segmentation_model_weights_path
from .versions import labelmap_nifti_bytes, label_table_validate, segmentation_create


EXPORT_FORMATS = ("nifti", "nifti_gz", "json", "dicom_seg")
SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage (PS3.4 B.5)


def segmentation_layers(segmentation: Segmentation) -> list[Segmentation]:
    """Return ``segmentation`` and, when it is one layer of an overlapping label set, the current
    versions of the other layers, ordered by layer index."""
    if not segmentation.layer_group:
        return [segmentation]
    others = Segmentation.objects.filter(layer_group=segmentation.layer_group, is_current=True).exclude(
        root_id=segmentation.root_id
    ).select_related("series")
    return sorted([segmentation, *others], key=lambda s: s.layer_index)


def _merged_label_table(layers: list[Segmentation]) -> list[dict]:
    table: dict[int, dict] = {}
    for layer in layers:
        for entry in layer.label_table:
            table.setdefault(int(entry["index"]), entry)
    return [table[k] for k in sorted(table)]


def _source_datasets(series: Series) -> list:
    import pydicom

    datasets = []
    for source in series.source_files.all():
        with source.file.open("rb") as fh:
            try:
                datasets.append(pydicom.dcmread(fh))
            except Exception:  # noqa: BLE001 - a non-DICOM original (NIfTI import) means no SEG
                return []
    return datasets


def _dataset_bytes(ds) -> bytes:
    import io

    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _seg_deidentified(segmentation: Segmentation, series: Series, originals: list, deidentifier):
    """Build the DICOM SEG of ``segmentation`` (with its other layers) against the original instances of
    ``series`` and de-identify it with ``deidentifier`` (PS3.15 Annex E, :mod:`annotation.dicomnet.deidentify`):
    its referenced UIDs are remapped as the instances' own. Raises ``SegInteropError``."""
    import io

    import pydicom

    from ..interop.dicom_seg import labelmap_to_dicom_seg

    layers = segmentation_layers(segmentation)
    seg = labelmap_to_dicom_seg(
        [segmentation_labelmap_load(layer) for layer in layers], series_geometry(series), originals,
        _merged_label_table(layers), series_description=f"{segmentation.name} v{segmentation.version}",
    )
    # highdicom holds dates as pydicom DA objects; dicognito reads them as strings.
    seg = pydicom.dcmread(io.BytesIO(_dataset_bytes(seg)))
    deidentifier.apply(seg)
    return seg


def segmentation_export_json(segmentation: Segmentation) -> dict:
    """Return the JSON export: label table, series geometry, provenance and measurements per label
    (from the providers registered on ``annotation.hooks.segmentation_measurements``; diagnosis
    measures a version that has no measurements yet)."""
    layers = segmentation_layers(segmentation)
    measurements = [
        {**row, "layer": layer.layer_index}
        for layer in layers
        for _key, provider in hooks.segmentation_measurements.items()
        for row in provider(segmentation=layer)
    ]
    series = segmentation.series
    return {
        "format": "yixin-segmentation/1",
        "segmentation": {
            "id": segmentation.pk, "uid": str(segmentation.uid), "name": segmentation.name,
            "version": segmentation.version, "parent": segmentation.parent_id, "root": segmentation.root_id,
            "source": segmentation.source, "tool": segmentation.tool, "parameters": segmentation.parameters,
            "model": str(segmentation.model) if segmentation.model_id else None,
            "review_status": segmentation.review_status, "created_at": segmentation.created_at.isoformat(),
            "layers": [layer.pk for layer in layers],
        },
        "series": {
            "series_instance_uid": series.series_instance_uid, "study_instance_uid": series.study.study_instance_uid,
            "modality": series.modality,
        },
        "geometry": {**series_geometry(series).to_dict(), "axis_order": "k, j, i", "coordinates": "LPS mm"},
        "label_table": _merged_label_table(layers),
        "measurements": measurements,
    }


def segmentation_export(*, user: User | None, segmentation: Segmentation, fmt: str) -> tuple[bytes, str, str]:
    """Export a segmentation version (with its other layers when it has any) and audit the download.

    Formats: ``nifti`` / ``nifti_gz`` (the label map on the series' original grid; several layers
    come as a zip of one file per layer), ``json`` (label table, geometry, measurements),
    ``dicom_seg`` (highdicom, referencing the source DICOM series).

    Returns
    -------
    (bytes, file name, content type)

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_format``; ``seg_needs_dicom`` for DICOM SEG of a series not imported from DICOM;
        ``empty_segmentation`` for a DICOM SEG of an empty label map.
    """
    import io
    import json

    from ..interop.dicom_seg import SegInteropError, labelmap_to_dicom_seg

    if fmt not in EXPORT_FORMATS:
        raise ServiceError(_("Unknown export format %(fmt)r; choose one of %(export_formats)s."),
                           params={"fmt": fmt, "export_formats": ', '.join(EXPORT_FORMATS)}, code="bad_format")
    series = segmentation.series
    base = f"segmentation-{segmentation.pk}-v{segmentation.version}"
    layers = segmentation_layers(segmentation)
    if fmt == "json":
        data = json.dumps(segmentation_export_json(segmentation), ensure_ascii=False, indent=2).encode("utf-8")
        result = (data, f"{base}.json", "application/json")
    elif fmt in ("nifti", "nifti_gz"):
        gz = fmt == "nifti_gz"
        data, name = _nifti_files(layers, series, base, gz)
        single = not name.endswith(".zip")
        result = (data, name, ("application/gzip" if gz else "application/octet-stream") if single else "application/zip")
    else:
        sources = _source_datasets(series) if series.source_format == Series.SourceFormat.DICOM else []
        try:
            seg = labelmap_to_dicom_seg(
                [segmentation_labelmap_load(layer) for layer in layers], series_geometry(series), sources,
                _merged_label_table(layers), series_description=f"{segmentation.name} v{segmentation.version}",
            )
        except SegInteropError as exc:
            raise ServiceError.from_error(exc) from None
        buffer = io.BytesIO()
        seg.save_as(buffer)
        result = (buffer.getvalue(), f"{base}.dcm", "application/dicom")
    audit_record(actor=user, action=AuditLog.Action.DOWNLOAD, target_type="segmentation", target_id=segmentation.pk,
                 hospital=series.study.hospital, detail={"format": fmt, "layers": len(layers)})
    return result


def _nifti_files(layers: list[Segmentation], series: Series, base: str, gz: bool) -> tuple[bytes, str]:
    import io
    import zipfile

    suffix = ".nii.gz" if gz else ".nii"
    files = [(labelmap_nifti_bytes(segmentation_labelmap_load(layer), series_geometry(series), gz=gz),
              f"{base}-layer{layer.layer_index}{suffix}") for layer in layers]
    if len(files) == 1:
        return files[0][0], f"{base}{suffix}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for data, name in files:
            archive.writestr(name, data)
    return buffer.getvalue(), f"{base}-layers.zip"


def _segmentation_file_deidentified(segmentation: Segmentation, fmt: str, base: str, deidentifier,
                                    offset, originals: list) -> tuple[bytes, str]:
    """One file of the de-identified studies zip: no portal id, UIDs remapped, dates shifted (PS3.15 Annex E)."""
    import json

    from ..dicomnet.deidentify import shift_datetime
    from ..interop.dicom_seg import SegInteropError

    series = segmentation.series
    if fmt in ("nifti", "nifti_gz"):
        return _nifti_files(segmentation_layers(segmentation), series, base, fmt == "nifti_gz")
    if fmt == "json":
        layers = segmentation_layers(segmentation)
        data = segmentation_export_json(segmentation)
        data["segmentation"] = {
            "name": segmentation.name, "version": segmentation.version, "source": segmentation.source,
            "tool": segmentation.tool, "parameters": segmentation.parameters,
            "model": str(segmentation.model) if segmentation.model_id else None,
            "review_status": segmentation.review_status,
            "created_at": shift_datetime(timezone.localtime(segmentation.created_at), offset).isoformat(),
            "layers": len(layers),
        }
        data["series"] = {"series_instance_uid": deidentifier.uid(series.series_instance_uid),
                          "study_instance_uid": deidentifier.uid(series.study.study_instance_uid),
                          "modality": series.modality}
        data["pseudonym"] = deidentifier.pseudonym
        return json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8"), f"{base}.json"
    try:
        seg = _seg_deidentified(segmentation, series, originals, deidentifier)
    except SegInteropError as exc:
        raise ServiceError.from_error(exc) from None
    return _dataset_bytes(seg), f"{base}.dcm"


def studies_export_zip(*, user: User, studies: list[Study], formats: list[str], deidentified: bool = False) -> bytes:
    """Export the current version of every segmentation of ``studies`` as one zip with a
    ``manifest.json`` (study/series UIDs, segmentation ids and versions, files with SHA-256).

    ``deidentified``: DICOM PS3.15 Annex E Basic Profile with the Modified Dates Option, as
    :func:`annotation.services.study_export_deidentified`: folders ``<pseudonym>/study-NNN/series-NNN``,
    the manifest and JSON carry the patient's research pseudonym and the study/series UIDs remapped by
    the patient's :class:`~annotation.dicomnet.deidentify.Deidentifier` (the UIDs of the research export),
    no portal id, MRN, name or accession number; JSON dates are shifted by the patient's offset; DICOM SEG
    is built against the originals and de-identified as in the research export; NIfTI headers carry
    geometry only. Audited per study as a de-identified export.

    Raises ServiceError ``bad_format`` or ``nothing_to_export``.
    """
    import hashlib
    import io
    import json
    import zipfile

    if not formats or any(f not in EXPORT_FORMATS for f in formats):
        raise ServiceError(_("Choose export formats among %(export_formats)s."),
                           params={"export_formats": ', '.join(EXPORT_FORMATS)}, code="bad_format")
    if deidentified:
        return _studies_export_zip_deidentified(user=user, studies=studies, formats=formats)
    manifest = {"format": "yixin-export/1", "created_at": timezone.now().isoformat(), "studies": []}
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for study in studies:
            entry = {"study_id": study.pk, "study_instance_uid": study.study_instance_uid, "segmentations": []}
            current = Segmentation.objects.filter(series__study=study, is_current=True).select_related(
                "series", "series__study", "series__study__hospital", "model").order_by("series_id", "pk")
            seen_groups: set = set()
            for segmentation in current:
                if segmentation.layer_group:
                    if segmentation.layer_group in seen_groups:
                        continue
                    seen_groups.add(segmentation.layer_group)
                files = []
                for fmt in formats:
                    try:
                        data, name, _unused = segmentation_export(user=user, segmentation=segmentation, fmt=fmt)
                    except ServiceError as exc:
                        files.append({"format": fmt, "error": error_message(exc)})
                        continue
                    path = f"study-{study.pk}/series-{segmentation.series_id}/{name}"
                    archive.writestr(path, data)
                    files.append({"format": fmt, "path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
                    count += 1
                entry["segmentations"].append({
                    "id": segmentation.pk, "name": segmentation.name, "version": segmentation.version,
                    "series_instance_uid": segmentation.series.series_instance_uid, "files": files,
                })
            manifest["studies"].append(entry)
        if count == 0:
            raise ServiceError(_("These studies have no segmentation to export."), code="nothing_to_export")
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
    return buffer.getvalue()


def _studies_export_zip_deidentified(*, user: User, studies: list[Study], formats: list[str]) -> bytes:
    import hashlib
    import io
    import json
    import zipfile

    from ..dicomnet.deidentify import PROFILE_CODES

    manifest = {
        "format": "yixin-export/1", "created_at": timezone.now().date().isoformat(),
        "deidentification": {
            "standard": "DICOM PS3.15 Annex E",
            "methods": [{"code": code, "scheme": "DCM", "meaning": meaning} for code, meaning in PROFILE_CODES],
            "library": "dicognito", "dates": "shifted by one secret offset per patient",
        },
        "studies": [],
    }
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for study_number, study in enumerate(studies, start=1):
            deidentifier = patient_deidentifier(patient=study.patient)
            offset = patient_date_offset(patient=study.patient)
            entry = {"pseudonym": deidentifier.pseudonym, "study_instance_uid": deidentifier.uid(study.study_instance_uid),
                     "segmentations": []}
            series_numbers = {pk: n for n, pk in enumerate(study.series.order_by("series_number", "pk")
                                                           .values_list("pk", flat=True), start=1)}
            current = Segmentation.objects.filter(series__study=study, is_current=True).select_related(
                "series", "series__study", "model").order_by("series_id", "pk")
            seen_groups: set = set()
            originals: dict[int, list] = {}
            for segmentation in current:
                if segmentation.layer_group:
                    if segmentation.layer_group in seen_groups:
                        continue
                    seen_groups.add(segmentation.layer_group)
                series = segmentation.series
                folder = f"{deidentifier.pseudonym}/study-{study_number:03d}/series-{series_numbers[series.pk]:03d}"
                base = f"segmentation-{len(entry['segmentations']) + 1:03d}-v{segmentation.version}"
                files = []
                for fmt in formats:
                    if fmt == "dicom_seg" and series.pk not in originals:
                        originals[series.pk] = (_source_datasets(series)
                                                if series.source_format == Series.SourceFormat.DICOM else [])
                    try:
                        data, name = _segmentation_file_deidentified(segmentation, fmt, base, deidentifier, offset,
                                                                     originals.get(series.pk, []))
                    except ServiceError as exc:
                        files.append({"format": fmt, "error": error_message(exc)})
                        continue
                    path = f"{folder}/{name}"
                    archive.writestr(path, data)
                    files.append({"format": fmt, "path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
                    count += 1
                entry["segmentations"].append({
                    "name": segmentation.name, "version": segmentation.version,
                    "series_instance_uid": deidentifier.uid(series.series_instance_uid), "files": files,
                })
            manifest["studies"].append(entry)
            audit_record(actor=user, action=AuditLog.Action.EXPORT, target_type="study", target_id=study.pk,
                         hospital=study.hospital, detail={"deidentified": True, "format": "zip", "formats": formats,
                                                          "segmentations": len(entry["segmentations"])})
        if count == 0:
            raise ServiceError(_("These studies have no segmentation to export."), code="nothing_to_export")
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
    return buffer.getvalue()


def _is_dicom_seg(path: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not DICOM at all
        return False
    return str(getattr(ds, "SOPClassUID", "")) == SEG_SOP_CLASS_UID


def segmentation_import(
    *,
    user: User | None,
    series: Series,
    path: Path,
    name: str = "",
    label_table: list[dict] | None = None,
    label_names: dict[int, str] | None = None,
) -> list[Segmentation]:
    """Import a label map file (NIfTI, NRRD, MetaImage or DICOM SEG) onto ``series`` as a new
    segmentation, after checking that it lies on the series' grid.

    A DICOM SEG whose segments overlap becomes several layers (segmentations sharing a
    ``layer_group``); otherwise one segmentation is made.

    Raises
    ------
    portal.api_errors.ServiceError
        ``wrong_grid`` naming what differs (shape, spacing, orientation, origin), ``bad_labelmap``,
        ``bad_dicom_seg``, ``bad_label_table``.
    annotation.imaging.ImagingError
        For a file that cannot be read at all.
    """
    import pydicom

    from ..interop.dicom_seg import SegInteropError, dicom_seg_to_layers
    from ..interop.labelmaps import default_label_table, labelmap_read

    geometry = series_geometry(series)
    try:
        if _is_dicom_seg(path):
            imported = dicom_seg_to_layers(pydicom.dcmread(path), geometry)
            layers, table, tool = imported.layers, imported.label_table, "import:dicom_seg"
        else:
            layer = labelmap_read(path, geometry)
            layers, tool = [layer], "import:labelmap"
            table = default_label_table(layer, label_names)
    except SegInteropError as exc:
        raise ServiceError.from_error(exc) from None
    if label_table is not None:
        table = label_table_validate(label_table)
        present = {int(v) for layer in layers for v in np.unique(layer) if v != 0}
        missing = sorted(present - {int(e["index"]) for e in table})
        if missing:
            raise ServiceError(_("The label map holds labels %(missing)s that the label table lacks."),
                               params={"missing": missing}, code="bad_label_table")
    group = uuid.uuid4() if len(layers) > 1 else None
    created = []
    with transaction.atomic():
        for n, layer in enumerate(layers):
            present = {int(v) for v in np.unique(layer) if v != 0}
            layer_table = [e for e in table if int(e["index"]) in present] if group else table
            segmentation = segmentation_create(
                series=series, label_map=layer, label_table=layer_table or table,
                name=(name or Path(path).name.split(".")[0])[:190] + (f" [{n + 1}]" if group else ""),
                source=Segmentation.Source.IMPORT, user=user, tool=tool,
                parameters={"file": Path(path).name[:200], **({"layer": n} if group else {})},
            )
            if group:
                segmentation.layer_group, segmentation.layer_index = group, n
                segmentation.save(update_fields=["layer_group", "layer_index"])
            created.append(segmentation)
    return created


@dataclass
class DatasetImportResult:
    studies: list[Study] = field(default_factory=list)
    segmentations: list[Segmentation] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def dataset_import(*, user: User | None, hospital: Hospital, root: Path, limit: int | None = None,
                   mrn_prefix: str = "") -> DatasetImportResult:
    """Batch-import a labelled dataset in the MSD or nnU-Net layout: each case becomes a patient
    (MRN = prefix + case id), a study with the image, and a segmentation from its label map.

    A case that fails (a duplicate, a label map off the image grid) is skipped with its reason; the
    others are kept.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_dataset`` when the folder is not such a dataset.
    """
    from ..imaging.errors import ImagingError
    from ..interop.msd import DatasetLayoutError, dataset_read

    try:
        dataset = dataset_read(root)
    except DatasetLayoutError as exc:
        raise ServiceError.from_error(exc) from None
    cases = dataset.cases[:limit] if limit else dataset.cases
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c"]
    # Every label of the dataset is listed, also those absent from one case.
    table = [{"index": k, "name": v, "color": palette[(k - 1) % len(palette)]} for k, v in sorted(dataset.label_names.items())]
    result = DatasetImportResult()
    for case in cases:
        try:
            with transaction.atomic():
                imported = study_import(user=user, hospital=hospital, patient_mrn=f"{mrn_prefix}{case.case_id}"[:64],
                                        paths=[case.image], modality=dataset.modality)
                series = imported.series[0]
                segs = segmentation_import(user=user, series=series, path=case.label, name=f"{dataset.name} {case.case_id}",
                                           label_table=table)
            result.studies += imported.studies
            result.segmentations += segs
        except (ServiceError, ImagingError) as exc:
            result.skipped.append((case.case_id, getattr(exc, "message", str(exc))))
    if hospital is not None:
        audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="dataset_import", hospital=hospital,
                     detail={"cases": len(cases), "imported": len(result.segmentations), "skipped": len(result.skipped)})
    return result


def segmentation_model_export_bundle(*, user: User, model: SegmentationModel) -> tuple[bytes, str]:
    """Export a registered MONAI-network model as a zipped MONAI bundle with TorchScript inside.

    Returns (zip bytes, file name).

    Raises
    ------
    portal.api_errors.ServiceError
        ``not_exportable`` for the classical method, TorchScript/bundle models or a model without
        weights.
    """
    from ..interop.bundle import bundle_write, bundle_zip
    from ..ml.networks import ARCHITECTURES, build_network, default_network_config

    if model.architecture not in ARCHITECTURES or not model.weights_file:
        raise ServiceError(_("Only trained MONAI networks (UNet, VNet, SegResNet, DynUNet) with weights can be "
                             "exported as a MONAI bundle."), code="not_exportable")
    import torch

    num_classes = max(int(e["index"]) for e in model.label_table) + 1
    network = build_network(model.architecture, in_channels=1, out_channels=num_classes, config=model.network_config)
    state = torch.load(segmentation_model_weights_path(model), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    network.load_state_dict(state)
    kwargs = {**default_network_config(model.architecture), **model.network_config,
              "in_channels": 1, "out_channels": num_classes}
    patch = tuple(model.preprocessing.get("patch_size") or (32, 32, 32))
    workdir = work_dir()
    try:
        root = bundle_write(workdir, name=f"{model.name}_v{model.version}".replace("-", "_"), version=f"{model.version}.0.0",
                            architecture=model.architecture, network_kwargs=kwargs, network=network,
                            label_table=model.label_table, preprocessing=model.preprocessing,
                            description=model.display_name, patch_size=patch)
        data = bundle_zip(root, workdir / "bundle.zip").read_bytes()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    audit_record(actor=user, action=AuditLog.Action.DOWNLOAD, target_type="segmentation_model", target_id=model.pk,
                 detail={"format": "monai_bundle"})
    return data, f"{root.name}.zip"
