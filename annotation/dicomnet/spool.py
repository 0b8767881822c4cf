"""Received instances, one folder per (calling AE title, series), and the series that are complete.

A modality or PACS sends a series as one C-STORE per instance, possibly over several associations,
and never says when the series is over. A series is taken as complete once no instance of it has
arrived for a quiet period; it is then claimed (moved out of ``incoming/`` by one atomic rename, so
an instance arriving later starts a new folder) and handed to the importer.

Layout under ``root``::

    incoming/<AE hex>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm   being received
    processing/<stamp>-<AE hex>-<SeriesInstanceUID>/…            claimed, being imported
    failed/<stamp>-<AE hex>-<SeriesInstanceUID>/…  + reason.txt   import refused (kept for IT to inspect,
                                                                  then removed by :meth:`SeriesSpool.failed_purge`)

The calling AE title is hex-encoded in folder names: AE titles may hold spaces and punctuation.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .validation import uid_valid

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpooledSeries:
    """A claimed, complete series: the calling AE title, the Series Instance UID and its folder."""

    calling_ae_title: str
    series_instance_uid: str
    folder: Path

    def files(self) -> list[Path]:
        """Return the received instance files, sorted by name."""
        return sorted(p for p in self.folder.glob("*.dcm") if p.is_file())


@dataclass(frozen=True)
class PurgedSeries:
    """A refused series' folder removed from ``failed/``: who sent it, when it failed and its age.

    Holds no PHI: the AE title names a device, not a patient; the Series Instance UID is left out.
    """

    calling_ae_title: str
    failed_at: float
    age_s: float


def _failed_folder_ae_title(name: str) -> str:
    """Return the calling AE title encoded in a ``failed/`` folder name (``?`` when it cannot be read)."""
    parts = name.split("-", 3)
    try:
        return bytes.fromhex(parts[2]).decode() if len(parts) == 4 else "?"
    except ValueError:
        return "?"


class SeriesSpool:
    """One folder per series of received instances under ``root`` (created when missing)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for name in ("incoming", "processing", "failed"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def instance_write(self, *, calling_ae_title: str, series_instance_uid: str, sop_instance_uid: str, data: bytes) -> Path:
        """Write one instance (PS3.10 bytes, preamble and file meta included) atomically.

        Raises
        ------
        ValueError
            When a UID is malformed (it becomes a file name).
        OSError
            When the disk is full or unwritable.
        """
        if not uid_valid(series_instance_uid) or not uid_valid(sop_instance_uid):
            raise ValueError("malformed UID")
        folder = self.root / "incoming" / calling_ae_title.encode().hex() / series_instance_uid
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{sop_instance_uid}.dcm"
        partial = folder / f".{uuid.uuid4().hex}.part"
        try:
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        # The folder's modification time is the time of its last instance.
        os.utime(folder)
        return target

    def pending(self) -> list[tuple[str, str]]:
        """Return (calling AE title, Series Instance UID) of every series still being received."""
        found = []
        for ae_folder in sorted((self.root / "incoming").iterdir()):
            for series_folder in sorted(ae_folder.iterdir()):
                found.append((bytes.fromhex(ae_folder.name).decode(), series_folder.name))
        return found

    def claim_complete(self, *, quiet_s: float, now: float | None = None) -> list[SpooledSeries]:
        """Claim every series with no new instance for ``quiet_s`` seconds (wall clock, ``time.time()``)."""
        now = time.time() if now is None else now
        claimed = []
        for ae_folder in sorted((self.root / "incoming").iterdir()):
            for series_folder in sorted(ae_folder.iterdir()):
                if now - series_folder.stat().st_mtime < quiet_s:
                    continue
                if any(series_folder.glob(".*.part")):
                    continue
                target = self.root / "processing" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-{ae_folder.name}-{series_folder.name}"
                try:
                    os.rename(series_folder, target)
                except OSError:
                    continue  # an instance is being written into it right now: next round
                claimed.append(SpooledSeries(bytes.fromhex(ae_folder.name).decode(), series_folder.name, target))
            try:
                ae_folder.rmdir()
            except OSError:
                pass
        return claimed

    def finish(self, spooled: SpooledSeries, *, error: str | None = None) -> Path | None:
        """Remove an imported series' folder, or move a refused one to ``failed/`` with ``reason.txt``.

        ``error`` must hold no PHI (the import's messages name files and attributes, not values).
        Returns the folder under ``failed/``, or None.
        """
        if error is None:
            shutil.rmtree(spooled.folder, ignore_errors=True)
            return None
        target = self.root / "failed" / spooled.folder.name
        os.rename(spooled.folder, target)
        (target / "reason.txt").write_text(error + "\n", encoding="utf-8")
        return target

    def failed_purge(self, *, max_age_s: float, now: float | None = None) -> list[PurgedSeries]:
        """Delete the refused series in ``failed/`` older than ``max_age_s`` seconds.

        A folder's age is counted from its ``reason.txt`` (written when the import refused it), or from
        the folder itself when that file is missing. Entries that are not folders are left alone; a
        folder that cannot be removed (permissions) is logged and kept for the next round.

        Parameters
        ----------
        max_age_s : float
            Retention in seconds (wall clock, ``time.time()``); must be positive.
        now : float, optional
            The current time, ``time.time()`` by default.

        Returns
        -------
        list of PurgedSeries
            The folders removed, oldest first.

        Raises
        ------
        ValueError
            When ``max_age_s`` is not positive.
        """
        if not max_age_s > 0:
            raise ValueError("the retention of refused series must be positive")
        now = time.time() if now is None else now
        candidates = []
        for folder in (self.root / "failed").iterdir():
            if not folder.is_dir() or folder.is_symlink():
                continue
            reason = folder / "reason.txt"
            try:
                failed_at = (reason if reason.is_file() else folder).stat().st_mtime
            except OSError:
                continue  # removed meanwhile
            if now - failed_at >= max_age_s:
                candidates.append((failed_at, folder))
        purged = []
        for failed_at, folder in sorted(candidates):
            try:
                shutil.rmtree(folder)
            except OSError as exc:
                logger.warning("could not remove a refused series folder from the spool: %s", type(exc).__name__)
                continue
            purged.append(PurgedSeries(_failed_folder_ae_title(folder.name), failed_at, now - failed_at))
        return purged


def completion_loop(
    spool: SeriesSpool,
    *,
    quiet_s: float,
    handle: Callable[[SpooledSeries], None],
    stop: threading.Event,
    poll_s: float = 1.0,
    housekeeping: Callable[[], None] | None = None,
    housekeeping_every_s: float = 3600.0,
) -> None:
    """Claim complete series and pass each to ``handle`` until ``stop`` is set.

    ``handle`` owns the outcome (it calls :meth:`SeriesSpool.finish`); an exception it raises is
    logged and the series moved to ``failed/``, and the loop goes on. ``housekeeping`` (the clean-up
    of old refused series) runs once at start and then every ``housekeeping_every_s`` seconds; an
    exception it raises is logged and the loop goes on.
    """
    next_housekeeping = time.monotonic()
    while not stop.is_set():
        if housekeeping is not None and time.monotonic() >= next_housekeeping:
            next_housekeeping = time.monotonic() + housekeeping_every_s
            try:
                housekeeping()
            except Exception:  # noqa: BLE001 - clean-up must not stop the service
                logger.exception("the clean-up of the DICOM spool failed")
        for spooled in spool.claim_complete(quiet_s=quiet_s):
            try:
                handle(spooled)
            except Exception as exc:  # noqa: BLE001 - one bad series must not stop the service
                logger.exception("importing received series %s failed", spooled.series_instance_uid)
                if spooled.folder.exists():
                    spool.finish(spooled, error=f"{type(exc).__name__}")
        stop.wait(poll_s)
