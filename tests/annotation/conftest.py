"""Fixtures shared by the annotation tests: real hippocampus MRIs imported through the real services."""

from __future__ import annotations

import pytest

from tests.conftest import shared_data

HIPPOCAMPUS_CASES = ("hippocampus_001", "hippocampus_003", "hippocampus_007")


@pytest.fixture
def hippocampus_studies(hospital, doctor):
    """Three MSD Task04 hippocampus MRIs (about 35×50×35 voxels), one patient and study each, imported
    by ``doctor`` for ``hospital``; returns their series in the order of ``HIPPOCAMPUS_CASES``."""
    from annotation import services

    root = shared_data("msd_task04_hippocampus")
    series = []
    for n, case in enumerate(HIPPOCAMPUS_CASES):
        result = services.study_import(user=doctor, hospital=hospital, patient_mrn=f"AL-{n}",
                                       paths=[root / "imagesTr" / f"{case}.nii.gz"], modality="MR")
        series.append(result.series[0])
    return series
