"""The spool and the instance checks, in plain Python (no Django, no network)."""

from __future__ import annotations

import os

import pydicom
import pytest

from annotation.dicomnet.spool import SeriesSpool
from annotation.dicomnet.validation import STATUS_CANNOT_UNDERSTAND, STATUS_SOP_CLASS_NOT_SUPPORTED, instance_check
from tests.conftest import shared_data

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def test_a_series_is_claimed_only_after_its_quiet_period(tmp_path):
    spool = SeriesSpool(tmp_path)
    path = spool.instance_write(calling_ae_title="CT 1", series_instance_uid="1.2.3", sop_instance_uid="1.2.3.4", data=b"x")
    arrived = path.parent.stat().st_mtime

    assert spool.claim_complete(quiet_s=30, now=arrived + 29) == []
    claimed = spool.claim_complete(quiet_s=30, now=arrived + 31)

    assert [(c.calling_ae_title, c.series_instance_uid) for c in claimed] == [("CT 1", "1.2.3")]
    assert [p.name for p in claimed[0].files()] == ["1.2.3.4.dcm"] and spool.pending() == []


def test_a_refused_series_keeps_its_files_and_reason(tmp_path):
    spool = SeriesSpool(tmp_path)
    path = spool.instance_write(calling_ae_title="PACS", series_instance_uid="1.2", sop_instance_uid="1.2.1", data=b"x")
    claimed = spool.claim_complete(quiet_s=0, now=path.parent.stat().st_mtime + 1)[0]

    failed = spool.finish(claimed, error="series_exists: already imported")

    assert (failed / "1.2.1.dcm").read_bytes() == b"x"
    assert (failed / "reason.txt").read_text().startswith("series_exists")


@pytest.mark.parametrize("uid", ["../../etc", "1.2/3", "", "1." + "2" * 70])
def test_a_malformed_uid_never_becomes_a_path(tmp_path, uid):
    spool = SeriesSpool(tmp_path)
    with pytest.raises(ValueError):
        spool.instance_write(calling_ae_title="PACS", series_instance_uid=uid, sop_instance_uid="1.2", data=b"x")
    assert not any(os.scandir(tmp_path / "incoming"))


def test_a_real_ct_instance_passes_the_checks():
    ds = pydicom.dcmread(sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))[0])
    assert instance_check(ds, transfer_syntax=EXPLICIT_LE, affected_sop_instance_uid=str(ds.SOPInstanceUID)) is None


def test_an_rtstruct_is_not_a_supported_sop_class():
    ds = pydicom.dcmread(shared_data("rtutils_phantom_ct_rtstruct", "rt.dcm"))
    refusal = instance_check(ds, transfer_syntax=EXPLICIT_LE)
    assert refusal.status == STATUS_SOP_CLASS_NOT_SUPPORTED and "RT Structure Set" in refusal.reason


def test_short_pixel_data_cannot_be_understood():
    ds = pydicom.dcmread(sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))[0])
    ds.PixelData = ds.PixelData[:-2]
    assert instance_check(ds, transfer_syntax=EXPLICIT_LE).status == STATUS_CANNOT_UNDERSTAND
