"""Fixtures for the imaging tests: real data from ../shared/data, copied into tmp_path when a test damages it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from tests.conftest import shared_data


@pytest.fixture(scope="session")
def lidc_dir() -> Path:
    return shared_data("lidc_idri_0001_ct_nodules", "dicom")


@pytest.fixture(scope="session")
def lidc_files_by_z(lidc_dir) -> list[Path]:
    """The 133 LIDC-IDRI-0001 slices sorted by Image Position (Patient) z (axial series)."""
    files = sorted(lidc_dir.glob("*.dcm"))
    z = {f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files}
    return sorted(files, key=z.__getitem__)


def _copy_files(files, dest: Path, names=None) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for n, source in enumerate(files):
        target = dest / (names[n] if names else source.name)
        shutil.copyfile(source, target)
        copies.append(target)
    return copies


@pytest.fixture
def copy_files():
    """Return ``copy(files, dest, names=None) -> list[Path]``: copies into ``dest`` (created)."""
    return _copy_files
