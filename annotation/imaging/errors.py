"""Errors raised for bad imaging input. Each carries a stable ``code`` and a message for people.

A message is an English template with named parameters (``N_("%(name)s is not a DICOM file")`` with
``params={"name": ...}``): ``message`` and ``str(exc)`` are the English text, for logs; the portal
translates ``template`` at the API boundary, so people read it in their language.
"""

from __future__ import annotations

from typing import Any


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for a no-op marker
    """Mark ``message`` as a msgid for the translation catalogues and return it unchanged."""
    return message


class ImagingError(ValueError):
    """Base class: input that cannot be imported. The message is safe to show (no PHI)."""

    code = "invalid_image"

    def __init__(self, message: str, *, params: dict[str, Any] | None = None, filename: str | None = None):
        self.template = message
        self.params = dict(params) if params else {}
        self.message = message % self.params if self.params else message
        self.filename = filename
        super().__init__(self.message)


class UnsupportedFileError(ImagingError):
    """The file is not a medical image format we read (DICOM, NIfTI, MetaImage, NRRD)."""

    code = "unsupported_file"


class MissingCompanionFileError(ImagingError):
    """A header names a data file that was not supplied (an .mhd without its .raw)."""

    code = "missing_companion_file"


class CorruptFileError(ImagingError):
    """The file claims a known format but cannot be decoded (truncated, damaged)."""

    code = "corrupt_file"


class InconsistentSeriesError(ImagingError):
    """A series' slices do not form one regular volume (missing, duplicated, mixed orientation)."""

    code = "inconsistent_series"


class UnsafeArchiveError(ImagingError):
    """A zip archive that could write outside its folder or expands to an absurd size."""

    code = "unsafe_archive"


class VolumeTooLargeError(ImagingError):
    """The header declares more voxels or bytes than one import may load into memory."""

    code = "volume_too_large"
