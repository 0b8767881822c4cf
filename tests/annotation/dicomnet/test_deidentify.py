"""The de-identifier in plain Python on a real instance (no Django)."""

from __future__ import annotations

import pydicom

from annotation.dicomnet.deidentify import Deidentifier, burned_in_annotation
from tests.conftest import shared_data


def _instance():
    return pydicom.dcmread(sorted(shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post").glob("*.dcm"))[0])


def test_burned_in_annotation_yes_needs_review_and_no_does_not():
    ds = _instance()
    ds.BurnedInAnnotation = "YES"
    assert burned_in_annotation(ds).review_required
    ds.BurnedInAnnotation = "NO"
    assert not burned_in_annotation(ds).review_required


def test_secondary_capture_without_the_attribute_needs_review():
    ds = _instance()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    assert "BurnedInAnnotation" not in ds and burned_in_annotation(ds).review_required


def test_the_same_seed_gives_the_same_uids_and_dates_and_another_seed_other_ones():
    a, b, c = _instance(), _instance(), _instance()
    Deidentifier(seed="s1", pseudonym="YX1").apply(a)
    Deidentifier(seed="s1", pseudonym="YX1").apply(b)
    Deidentifier(seed="s2", pseudonym="YX2").apply(c)
    assert (a.SOPInstanceUID, a.StudyDate) == (b.SOPInstanceUID, b.StudyDate)
    assert a.SOPInstanceUID != c.SOPInstanceUID and a.StudyDate != c.StudyDate
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
