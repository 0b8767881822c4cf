"""Safe extraction of uploaded zip archives.

An upload is untrusted: entries may try to write outside the destination ("zip slip": absolute
names, ``..`` components, symlinks) or expand to far more than they weigh ("zip bomb"). Everything
that can be judged from the central directory is checked before a single byte is written, and the
bytes actually inflated are counted while extracting, because the declared sizes can lie.
"""

from __future__ import annotations

import stat
import struct
import zlib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from .errors import CorruptFileError, N_, UnsafeArchiveError, UnsupportedFileError

__all__ = ["ArchiveLimits", "extract_zip", "is_junk_name"]

_CHUNK_BYTES = 1 << 20
# Entries below this declared size are not ratio-checked on their own: a few KB of zeros compress
# 1000:1 legitimately and can do no harm.
_RATIO_MIN_ENTRY_BYTES = 1 << 20
_JUNK_FILE_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits on what one uploaded archive may expand to.

    Attributes
    ----------
    max_total_bytes : int
        Largest total uncompressed size (declared and actual), bytes. Default 4 GiB.
    max_files : int
        Largest number of file entries. Default 20 000.
    max_ratio : float
        Largest uncompressed/compressed ratio, for the whole archive and for any entry of at least
        1 MiB. Default 200 (DICOM and NIfTI typically compress 2–10:1; deflate tops out near 1000:1).
    """

    max_total_bytes: int = 4 * 1024**3
    max_files: int = 20_000
    max_ratio: float = 200.0


def is_junk_name(name: str) -> bool:
    """Return True for operating-system clutter: ``__MACOSX/`` forks, ``._*`` AppleDouble, ``.DS_Store``."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if not parts:
        return False
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1].lower() in _JUNK_FILE_NAMES


def _unsafe(zip_name: str, detail: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(N_("%(zip_name)s: %(detail)s; the archive was not extracted"),
                              params={"zip_name": zip_name, "detail": detail}, filename=zip_name)


def _check_entry_name(info: zipfile.ZipInfo, zip_name: str, dest_root: Path) -> Path:
    """Return the destination of an entry, refusing names that could land outside ``dest_root``."""
    name = info.filename
    posix = name.replace("\\", "/")  # Windows tools write backslashes; treat them as separators
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or not parts:
        raise _unsafe(zip_name, f"entry {name!r} has an absolute path")
    if ".." in parts:
        raise _unsafe(zip_name, f"entry {name!r} contains '..'")
    if "\x00" in name:
        raise _unsafe(zip_name, f"entry {name!r} contains a NUL byte")
    # Unix mode bits live in the high 16 bits of external_attr when the archive was made on Unix.
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise _unsafe(zip_name, f"entry {name!r} is a symbolic link")
    relative = [p for p in parts if p not in ("", ".")]
    if not relative:
        if info.is_dir():
            return dest_root
        raise _unsafe(zip_name, f"entry {name!r} has no file name")
    target = dest_root.joinpath(*relative).resolve()
    if dest_root not in target.parents:
        raise _unsafe(zip_name, f"entry {name!r} would be written outside the destination")
    return target


def extract_zip(
    zip_path: Path,
    dest_dir: Path,
    limits: ArchiveLimits = ArchiveLimits(),
    *,
    on_skip: Callable[[str, str], None] | None = None,
) -> list[Path]:
    """Extract a zip archive safely and return the files written.

    Parameters
    ----------
    zip_path : Path
        The archive.
    dest_dir : Path
        Folder to extract into (created if needed). Entry paths are kept below it.
    limits : ArchiveLimits
        Size, count and compression-ratio limits.
    on_skip : callable(name, reason), optional
        Told about each entry left out (``__MACOSX/`` and other OS clutter).

    Returns
    -------
    list of Path
        Extracted regular files, in archive order. Directory entries and OS clutter are not
        extracted. Nested archives are extracted as plain files (not expanded).

    Raises
    ------
    UnsafeArchiveError
        Absolute or ``..`` entry paths, symlink entries, paths resolving outside ``dest_dir``, too
        many entries, a declared total above ``limits.max_total_bytes``, a compression ratio above
        ``limits.max_ratio`` (all checked before anything is written), or an entry inflating to more
        than it declared. Files already written are left for the caller to delete with ``dest_dir``.
    CorruptFileError
        Not a readable zip (damaged central directory, CRC mismatch, truncated data).
    UnsupportedFileError
        Encrypted entries or an unsupported compression method.
    """
    zip_path = Path(zip_path)
    zip_name = zip_path.name
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest_root = dest_dir.resolve()

    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise CorruptFileError(N_("%(zip_name)s: not a readable zip archive (%(exc)s)"),
                               params={"zip_name": zip_name, "exc": exc}, filename=zip_name) from None

    with archive:
        entries: list[tuple[zipfile.ZipInfo, Path]] = []
        seen: set[Path] = set()
        declared_total = 0
        compressed_total = 0
        for info in archive.infolist():
            target = _check_entry_name(info, zip_name, dest_root)  # even junk must not escape
            if info.is_dir():
                continue
            if is_junk_name(info.filename):
                if on_skip is not None:
                    on_skip(info.filename, "operating-system metadata (__MACOSX, .DS_Store), not an image")
                continue
            if target in seen:
                raise _unsafe(zip_name, f"entry {info.filename!r} appears twice")
            seen.add(target)
            if info.flag_bits & 0x1:
                raise UnsupportedFileError(
                    N_("%(zip_name)s: entry %(filename)r is encrypted; upload an unencrypted archive"),
                    params={"zip_name": zip_name, "filename": info.filename},
                    filename=zip_name,
                )
            if (
                info.file_size >= _RATIO_MIN_ENTRY_BYTES
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)
            ):
                raise _unsafe(
                    zip_name,
                    f"entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
                    f"(limit {limits.max_ratio:.0f}); this looks like a zip bomb",
                )
            declared_total += info.file_size
            compressed_total += info.compress_size
            entries.append((info, target))
            if len(entries) > limits.max_files:
                raise _unsafe(zip_name, f"more than {limits.max_files} files")
        if declared_total > limits.max_total_bytes:
            raise _unsafe(
                zip_name, f"expands to {declared_total} bytes, more than the {limits.max_total_bytes} allowed"
            )
        if declared_total >= _RATIO_MIN_ENTRY_BYTES and declared_total > limits.max_ratio * max(compressed_total, 1):
            raise _unsafe(
                zip_name,
                f"expands {declared_total / max(compressed_total, 1):.0f}-fold (limit {limits.max_ratio:.0f}); "
                "this looks like a zip bomb",
            )

        written: list[Path] = []
        actual_total = 0
        for info, target in entries:
            target.parent.mkdir(parents=True, exist_ok=True)
            entry_bytes = 0
            try:
                with archive.open(info) as source, target.open("wb") as sink:
                    while chunk := source.read(_CHUNK_BYTES):
                        entry_bytes += len(chunk)
                        actual_total += len(chunk)
                        # The central directory can lie about sizes: stop on what is really inflated.
                        if entry_bytes > info.file_size or actual_total > limits.max_total_bytes:
                            raise _unsafe(zip_name, f"entry {info.filename!r} inflates beyond its declared size")
                        sink.write(chunk)
            except UnsafeArchiveError:
                target.unlink(missing_ok=True)
                raise
            except NotImplementedError as exc:
                target.unlink(missing_ok=True)
                raise UnsupportedFileError(N_("%(zip_name)s: %(exc)s"),
                                           params={"zip_name": zip_name, "exc": exc}, filename=zip_name) from None
            except (zipfile.BadZipFile, EOFError, zlib.error, struct.error, ValueError, RuntimeError) as exc:
                # Decoding failures only: an OSError here is the server's disk, not the upload.
                target.unlink(missing_ok=True)
                raise CorruptFileError(
                    N_("%(zip_name)s: entry %(filename)r cannot be extracted (%(name)s: %(exc)s)"),
                    params={"zip_name": zip_name, "filename": info.filename, "name": type(exc).__name__, "exc": exc},
                    filename=zip_name,
                ) from None
            written.append(target)
    return written
