"""De-identification of DICOM instances for research exports, with dicognito.

DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile, with the Retain
Longitudinal Temporal Information with Modified Dates Option (E.3.6): dicognito replaces every
person name, identifier, address and equipment/institution value, remaps every instance UID (not
class or transfer syntax UIDs) and shifts every date and time by one offset (62–730 days back);
all of it is derived from a seed, so one seed per patient gives the same UIDs, dates and offset in
every export. On top of dicognito this module removes the profile's free-text and patient
characteristic attributes that dicognito keeps (PS3.15 Table E.1-1, action X/Z), all private
attributes (no Retain Safe Private Option), and writes the patient's pseudonym as Patient ID and
Patient's Name, with the Deidentification Method Code Sequence (CID 7050: 113100, 113107).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

#: Attributes of PS3.15 Table E.1-1 with action X (remove) or Z (empty) that dicognito leaves in place.
BASIC_PROFILE_REMOVE = (
    "AdditionalPatientHistory", "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription",
    "Allergies", "CountryOfResidence", "CurrentPatientLocation", "DerivationDescription",
    "EthnicGroup", "IdentifyingComments", "ImageComments", "InterpretationText", "MedicalAlerts",
    "OtherPatientIDsSequence", "OtherPatientNames", "PatientAge", "PatientBirthName", "PatientBirthTime",
    "PatientComments", "PatientMotherBirthName", "PatientSize", "PatientState", "PatientWeight",
    "PregnancyStatus", "RequestAttributesSequence", "RequestedProcedureDescription", "ReasonForStudy",
    "RequestedContrastAgent", "ScheduledProcedureStepDescription", "SmokingStatus", "SpecialNeeds",
    "StudyComments", "TextComments", "TextString", "VisitComments", "PerformedProcedureStepDescription",
    "ProtocolName", "AcquisitionComments", "ContentSequence", "ResultsComments", "OperatorsName",
)
#: Emptied (type 2 attributes of the Patient module, action Z).
BASIC_PROFILE_EMPTY = ("PatientBirthDate",)

#: CID 7050 De-identification Method codes (DCM).
PROFILE_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)

#: Secondary capture and ultrasound images often carry burned-in text without saying so.
_BURN_IN_SUSPECT_SOP_CLASS_PREFIXES = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3")


@dataclass(frozen=True)
class BurnedIn:
    """Burned In Annotation (0028,0301) of an instance: ``value`` YES / NO / "" and whether a person must look."""

    value: str
    review_required: bool


def burned_in_annotation(ds: Dataset) -> BurnedIn:
    """Return whether an instance may show identifying text in its pixels (never removed by tag edits).

    YES needs review; an absent value needs review for secondary capture and ultrasound SOP classes.
    """
    value = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", ""))
    suspect = value == "YES" or (not value and sop_class.startswith(_BURN_IN_SUSPECT_SOP_CLASS_PREFIXES))
    return BurnedIn(value=value, review_required=suspect)


class Deidentifier:
    """De-identify instances of one patient consistently.

    Parameters
    ----------
    seed : str
        The per-patient secret seed (derive it with a keyed hash of a deployment secret and the
        patient; never the MRN itself): the same seed gives the same UIDs, names and date offset.
    pseudonym : str
        Written as Patient ID (0010,0020) and Patient's Name (0010,0010).
    """

    def __init__(self, *, seed: str, pseudonym: str):
        from dicognito.anonymizer import Anonymizer

        self.pseudonym = pseudonym
        self.seed = seed
        self._anonymizer = Anonymizer(seed=seed)

    def uid(self, original: str) -> str:
        """Return the UID that :meth:`apply` writes in place of instance UID ``original`` (dicognito remaps
        every UI but class and transfer syntax UIDs from the seed and the value alone, whatever the attribute)."""
        from dicognito.anonymizer import Anonymizer

        probe = Dataset()
        probe.file_meta = FileMetaDataset()
        probe.StudyInstanceUID = original
        Anonymizer(seed=self.seed).anonymize(probe)
        return str(probe.StudyInstanceUID)

    def apply(self, ds: Dataset) -> None:
        """De-identify ``ds`` (and its file meta) in place."""
        ds.remove_private_tags()
        _remove_recursive(ds)
        self._anonymizer.anonymize(ds)
        for keyword in BASIC_PROFILE_EMPTY:
            if keyword in ds:
                setattr(ds, keyword, "")
        ds.PatientID = self.pseudonym
        ds.PatientName = self.pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        ds.DeidentificationMethod = "PS3.15 Basic Profile; Modified Dates (dicognito)"  # LO: 64 chars
        codes = []
        for value, meaning in PROFILE_CODES:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            codes.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(codes)


_PROBE_DATETIME = datetime.datetime(2000, 1, 1)


def date_offset(seed: str) -> datetime.timedelta:
    """Return the shift dicognito applies to every date and time for ``seed`` (negative, whole hours).

    PS3.15 Annex E, Retain Longitudinal Temporal Information with Modified Dates Option (E.3.6): one
    offset per patient, between 62 and 730 days back. dicognito derives it from the seed; instead of
    repeating its derivation this runs dicognito itself on a probe DateTime (DT) and reads the shift,
    so it is the offset a :class:`Deidentifier` of the same seed gives every DT, and every DA with its TM.
    """
    from dicognito.anonymizer import Anonymizer

    probe = Dataset()
    probe.file_meta = FileMetaDataset()
    probe.AcquisitionDateTime = _PROBE_DATETIME.strftime("%Y%m%d%H%M%S")
    Anonymizer(seed=seed).anonymize(probe)
    return datetime.datetime.strptime(str(probe.AcquisitionDateTime)[:14], "%Y%m%d%H%M%S") - _PROBE_DATETIME


def shift_date(value: datetime.date, offset: datetime.timedelta) -> datetime.date:
    """Shift a date without a time as dicognito shifts a DA without a TM: from midnight, then truncated."""
    return (datetime.datetime.combine(value, datetime.time()) + offset).date()


def shift_datetime(value: datetime.datetime, offset: datetime.timedelta) -> datetime.datetime:
    """Shift a date and time by ``offset``, as dicognito shifts a DT, or a DA with its TM (wall-clock time)."""
    return value + offset


def _remove_recursive(ds: Dataset) -> None:
    for keyword in BASIC_PROFILE_REMOVE:
        if keyword in ds:
            delattr(ds, keyword)
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value:
                _remove_recursive(item)
