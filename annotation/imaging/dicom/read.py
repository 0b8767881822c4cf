"""Public API: read a set of DICOM files into one volume per image series, listing the objects that are
not images. It reads every header, groups the image frames by series, and builds each series (geometry
checked, pixels decoded); pydicom's value warnings, which quote element values that may be PHI, are
silenced while it runs and redacted from the ``pydicom`` logger."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import CorruptFileError, ImagingError, N_
from .headers import _frames_of, _read_instance, _series_key
from .pixels import _build_series
from .records import DicomReadResult, DicomSeries, _Frame


class _RedactQuotedValues(logging.Filter):
    """Replace quoted values in pydicom log records: they may be a patient's name or birth date."""

    _QUOTED = re.compile(r"b?'[^']*'|b?\"[^\"]*\"")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._QUOTED.sub("'<redacted>'", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _redact_pydicom_log() -> None:
    # pydicom logs (as well as warns) every invalid value it meets (pydicom.misc.warn_and_log).
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, _RedactQuotedValues) for f in logger.filters):
        logger.addFilter(_RedactQuotedValues())


def read_dicom_series(paths: Sequence[Path]) -> list[DicomSeries]:
    """Read DICOM files into one volume per image series; non-image objects are left out.

    Parameters
    ----------
    paths : sequence of Path
        DICOM files, any order, possibly several series (they are never merged).

    Returns
    -------
    list of DicomSeries
        See :func:`read_dicom_files` (this drops its ``skipped`` list).

    Raises
    ------
    UnsupportedFileError, CorruptFileError, InconsistentSeriesError
        See :func:`read_dicom_files`.
    """
    return list(read_dicom_files(paths).series)


def read_dicom_files(paths: Sequence[Path], *, names: Mapping[Path, str] | None = None) -> DicomReadResult:
    """Read DICOM files into series, and list the objects that hold no image.

    Parameters
    ----------
    paths : sequence of Path
        DICOM files (PS3.10), any order.
    names : mapping of Path to str, optional
        How to name each file in messages and in ``skipped`` (e.g. its path inside an upload);
        default ``path.name``.

    Returns
    -------
    DicomReadResult
        ``series`` (one per Series Instance UID (0020,000E), or, where that is empty, per Study
        Instance UID / Frame of Reference / Series Number / description) and ``skipped``.

    Raises
    ------
    UnsupportedFileError
        A file that is not DICOM; a colour image; an old-style multi-frame object without
        functional groups (NM, US cine).
    CorruptFileError
        A truncated or undecodable file (named in the message).
    InconsistentSeriesError
        Slices of one series that do not form a regular volume: different sizes, pixel spacings or
        orientations, duplicated positions, missing slices, irregular gaps, sheared (tilted) stacks.
    """
    _redact_pydicom_log()
    # pydicom converts values lazily, so its value warnings (which quote values) can fire anywhere below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _read_dicom_files(paths, dict(names or {}))


def _read_dicom_files(paths: Sequence[Path], names: dict) -> DicomReadResult:
    skipped: list[tuple[str, str]] = []
    groups: dict[tuple, list[_Frame]] = {}
    for raw_path in paths:
        path = Path(raw_path)
        name = names.get(raw_path, names.get(path, path.name))
        instance, reason = _read_instance(path, name)
        if instance is None:
            skipped.append((name, reason))
            continue
        try:
            frames = _frames_of(instance)
        except ImagingError:
            raise
        except Exception as exc:  # noqa: BLE001 - malformed geometry values (DS "abc") raise on access
            raise CorruptFileError(
                N_("%(name)s: unreadable image geometry attributes (%(name2)s)"),
                params={"name": name, "name2": type(exc).__name__}, filename=name
            ) from None
        if isinstance(frames, str):
            skipped.append((name, frames))
            continue
        groups.setdefault(_series_key(instance.ds), []).extend(frames)
    series = tuple(_build_series(frames) for frames in groups.values())
    return DicomReadResult(series=series, skipped=tuple(skipped))
