"""Loading and keeping the annotation app's stored objects (volumes, label maps) in object storage.

This module sits below both ``services`` (writes) and ``selectors`` (reads): it imports neither, and
both — and the apps above annotation — load stored volumes and label maps through it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from portal.storage import sha256_of

from .imaging.volume import Geometry, Volume
from .models import Segmentation, Series

logger = logging.getLogger(__name__)

__all__ = [
    "StoredKeys", "work_dir", "stored_file_to_path", "stored_volume_load",
    "series_volume_load", "segmentation_labelmap_load", "series_geometry",
]


class StoredKeys:
    """Remember object keys written during an operation so that a failure can delete them."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def save(self, key: str, path: Path) -> tuple[str, str, int]:
        """Upload ``path`` under ``key``; return (stored name, SHA-256, size in bytes)."""
        with open(path, "rb") as fh:
            digest = sha256_of(fh)
            fh.seek(0)
            name = default_storage.save(key, File(fh, name=path.name))
        self.keys.append(name)
        return name, digest, path.stat().st_size

    def delete_all(self) -> None:
        """Delete every object saved so far (best effort; the database rolled back already)."""
        for key in self.keys:
            try:
                default_storage.delete(key)
            except Exception:  # noqa: BLE001 - best effort clean-up; the DB rolled back already
                logger.warning("could not delete stored object after a failed write")
        self.keys.clear()


def work_dir() -> Path:
    """Return a fresh scratch directory under ``VAR_DIR/tmp``; the caller removes it."""
    base = Path(settings.VAR_DIR) / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="work-", dir=base))


def stored_file_to_path(field_file, path: Path) -> Path:
    """Copy a stored object to a local path and return it."""
    with field_file.open("rb") as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1024 * 1024)
    return path


def stored_volume_load(field_file, *, modality: str = "") -> Volume:
    """Read a NIfTI volume kept in object storage (copied to a scratch file SimpleITK can open)."""
    from .imaging.formats import read_volume

    workdir = work_dir()
    try:
        return read_volume(stored_file_to_path(field_file, workdir / "image.nii.gz"), modality=modality)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def series_volume_load(series: Series) -> Volume:
    """Read a series' canonical volume (array shape (k, j, i), HU for CT) from object storage."""
    return stored_volume_load(series.volume_file, modality=series.modality)


def segmentation_labelmap_load(segmentation: Segmentation) -> np.ndarray:
    """Read a segmentation's label map, shape (k, j, i), on its series' grid."""
    return stored_volume_load(segmentation.labelmap_file).array


def series_geometry(series: Series) -> Geometry:
    """Return the series grid (shape (k, j, i), spacing in mm, LPS origin and direction) from its row."""
    return Geometry(
        shape=tuple(series.shape), spacing_mm=tuple(series.spacing_mm),
        origin_mm=tuple(series.origin_mm), direction=tuple(series.direction),
    )
