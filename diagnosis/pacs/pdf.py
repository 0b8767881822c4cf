"""The signed report as a DICOM Encapsulated PDF (PS3.3 A.45.1, SOP Class 1.2.840.10008.5.1.4.1.1.104.1).

highdicom has no Encapsulated PDF class, so the IOD's modules are written here with pydicom:
Patient and General Study (copied from the source series, so the PACS files it with the images),
Encapsulated Document Series (Modality DOC), General and SC Equipment (Conversion Type WSD),
Encapsulated Document (PS3.3 C.24.2) and SOP Common.
"""

from __future__ import annotations

from datetime import datetime

from . import codes

ENCAPSULATED_PDF_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.104.1"

# Patient (C.7.1.1) and General Study (C.7.2.1) attributes taken over from the source instance.
_PATIENT_STUDY = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription",
)


def encapsulated_pdf(
    pdf: bytes,
    *,
    source_dataset,
    series_instance_uid: str,
    sop_instance_uid: str,
    document_title: str,
    content_datetime: datetime,
    series_number: int = 302,
    institution_name: str | None = None,
):
    """Wrap a PDF in a DICOM Encapsulated PDF instance of the source series' patient and study.

    Parameters
    ----------
    pdf : bytes
        The PDF file as signed (starts with ``%PDF``); it is stored unchanged, padded with one
        NUL byte when its length is odd (Encapsulated Document Length (0042,0011) keeps the true length).
    source_dataset : pydicom.Dataset
        Any instance of the source series: patient and study attributes are copied from it.
    content_datetime : datetime
        When the report was signed (Content Date/Time and Acquisition DateTime).

    Returns
    -------
    pydicom.FileDataset
        With file meta (Explicit VR Little Endian), ready to save or send.

    Raises
    ------
    ValueError
        When ``pdf`` is not a PDF.
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    if not pdf.startswith(b"%PDF"):
        raise ValueError("not a PDF document")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_SOP_CLASS_UID
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF_SOP_CLASS_UID
    ds.SOPInstanceUID = sop_instance_uid
    for keyword in _PATIENT_STUDY:
        if keyword in source_dataset:
            setattr(ds, keyword, source_dataset[keyword].value)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber"):  # type 2: present, maybe empty
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Signed report"
    ds.Manufacturer = "Yixin Portal"
    if institution_name:
        ds.InstitutionName = institution_name[:64]
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = content_datetime.strftime("%Y%m%d")
    ds.ContentTime = content_datetime.strftime("%H%M%S")
    ds.AcquisitionDateTime = content_datetime.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "YES"  # the PDF names the patient
    ds.DocumentTitle = document_title[:64]
    concept = Dataset()
    concept.CodeValue = codes.DIAGNOSTIC_IMAGING_REPORT.value
    concept.CodingSchemeDesignator = codes.DIAGNOSTIC_IMAGING_REPORT.scheme_designator
    concept.CodeMeaning = codes.DIAGNOSTIC_IMAGING_REPORT.meaning
    ds.ConceptNameCodeSequence = [concept]
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    return ds
