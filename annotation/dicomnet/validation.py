"""Checks of one received instance before it is spooled, and the DIMSE status of each refusal.

Statuses are those of the Storage Service Class, DICOM PS3.4 Table B.2-1 (C-STORE status) and
PS3.7 Annex C (general statuses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID

STATUS_SUCCESS = 0x0000
#: Refused: SOP Class not supported (PS3.7 C.5.20).
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
#: Error: Data Set does not match SOP Class (PS3.4 B.2-1).
STATUS_DATASET_MISMATCH = 0xA900
#: Error: Cannot understand (PS3.4 B.2-1).
STATUS_CANNOT_UNDERSTAND = 0xC000
#: Refused: Out of resources (PS3.4 B.2-1).
STATUS_OUT_OF_RESOURCES = 0xA700

#: Image storage SOP classes whose instances the import builds volumes from (PS3.4 B.5).
IMAGE_STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image Storage",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image Storage",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET Image Storage",
}

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class Refusal:
    """Why an instance is not stored: the DIMSE ``status`` and a message without PHI."""

    status: int
    reason: str


def uid_valid(value: object) -> bool:
    """Return whether ``value`` is a syntactically valid UID (PS3.5 9.1: digits and dots, ≤ 64 chars)."""
    text = str(value or "")
    return 0 < len(text) <= 64 and bool(_UID.match(text))


def instance_check(ds: Dataset, *, transfer_syntax: str, affected_sop_instance_uid: str = "") -> Refusal | None:
    """Check a received dataset before it is spooled.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The decoded dataset (``event.dataset``).
    transfer_syntax : str
        The Transfer Syntax UID it was sent in (the accepted presentation context's).
    affected_sop_instance_uid : str, optional
        The C-STORE request's Affected SOP Instance UID; the dataset's SOP Instance UID must match it.

    Returns
    -------
    Refusal or None
        None when the instance may be stored. Otherwise the status: 0x0122 for a SOP class the import
        does not read (SEG, RTSTRUCT, SR, presentation states, …), 0xA900 for a missing or malformed
        UID, Patient ID or image attribute, 0xC000 when the elements cannot be decoded or the pixel
        data is shorter than Rows × Columns × Samples × Bits Allocated × Frames (native syntaxes).
    """
    try:
        # pydicom converts values lazily: touch every top-level element so that malformed ones raise here.
        for element in ds:
            _ = element.value
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class not in IMAGE_STORAGE_SOP_CLASSES:
            name = UID(sop_class).name if sop_class else "no SOP Class UID"
            return Refusal(STATUS_SOP_CLASS_NOT_SUPPORTED, f"SOP class not imported: {name}")
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            if not uid_valid(ds.get(keyword)):
                return Refusal(STATUS_DATASET_MISMATCH, f"missing or malformed {keyword}")
        if affected_sop_instance_uid and str(ds.SOPInstanceUID) != affected_sop_instance_uid:
            return Refusal(STATUS_DATASET_MISMATCH, "SOP Instance UID differs from the request's Affected SOP Instance UID")
        if not str(ds.get("PatientID", "") or "").strip():
            return Refusal(STATUS_DATASET_MISMATCH, "missing Patient ID (0010,0020)")
        for keyword in ("Rows", "Columns", "BitsAllocated", "PixelData"):
            if ds.get(keyword) in (None, b"", 0):
                return Refusal(STATUS_DATASET_MISMATCH, f"missing {keyword}")
        if not UID(transfer_syntax).is_compressed:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * frames
            expected = expected * int(ds.BitsAllocated) // 8
            if len(ds.PixelData) < expected:
                return Refusal(STATUS_CANNOT_UNDERSTAND, f"pixel data has {len(ds.PixelData)} bytes; {expected} expected")
    except Exception as exc:  # noqa: BLE001 - any decoding error of the peer's bytes is their error
        return Refusal(STATUS_CANNOT_UNDERSTAND, f"undecodable dataset ({type(exc).__name__})")
    return None
