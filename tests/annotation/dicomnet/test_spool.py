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


def _refused(spool, *, ae: str, series_uid: str, failed_at: float):
    path = spool.instance_write(calling_ae_title=ae, series_instance_uid=series_uid, sop_instance_uid=series_uid + ".1",
                                data=b"x")
    claimed = spool.claim_complete(quiet_s=0, now=path.parent.stat().st_mtime + 1)[0]
    folder = spool.finish(claimed, error="series_exists: already imported")
    os.utime(folder / "reason.txt", (failed_at, failed_at))
    return folder


def test_refused_series_past_the_retention_are_deleted_and_newer_ones_kept(tmp_path):
    spool = SeriesSpool(tmp_path)
    now = 1_800_000_000.0
    old = _refused(spool, ae="OLD PACS", series_uid="1.2.1", failed_at=now - 8 * 86400)
    new = _refused(spool, ae="CT_1", series_uid="1.2.2", failed_at=now - 6 * 86400)
    receiving = spool.instance_write(calling_ae_title="CT_1", series_instance_uid="1.2.3", sop_instance_uid="1.2.3.1",
                                     data=b"x")
    os.utime(receiving.parent, (now - 30 * 86400, now - 30 * 86400))

    purged = spool.failed_purge(max_age_s=7 * 86400, now=now)

    assert [(p.calling_ae_title, p.failed_at, round(p.age_s)) for p in purged] == [("OLD PACS", now - 8 * 86400, 8 * 86400)]
    assert not old.exists() and (new / "1.2.2.1.dcm").read_bytes() == b"x"
    assert receiving.exists()  # the clean-up touches failed/ only


def test_a_failed_folder_without_its_reason_is_aged_by_the_folder_and_stray_files_are_left(tmp_path):
    spool = SeriesSpool(tmp_path)
    now = 1_800_000_000.0
    folder = _refused(spool, ae="PACS", series_uid="1.2.1", failed_at=now)
    (folder / "reason.txt").unlink()
    os.utime(folder, (now - 2 * 86400, now - 2 * 86400))
    stray = tmp_path / "failed" / "notes.txt"
    stray.write_text("kept")

    assert [p.calling_ae_title for p in spool.failed_purge(max_age_s=86400, now=now)] == ["PACS"]
    assert not folder.exists() and stray.read_text() == "kept"


@pytest.mark.parametrize("max_age_s", [0, -1.0, float("nan")])
def test_a_retention_that_is_not_positive_is_refused(tmp_path, max_age_s):
    spool = SeriesSpool(tmp_path)
    folder = _refused(spool, ae="PACS", series_uid="1.2.1", failed_at=0.0)
    with pytest.raises(ValueError):
        spool.failed_purge(max_age_s=max_age_s)
    assert folder.exists()


def test_the_completion_loop_runs_the_housekeeping_at_start_and_survives_its_failure(tmp_path, caplog):
    import threading

    from annotation.dicomnet.spool import completion_loop

    stop = threading.Event()
    calls = []

    def housekeeping():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk gone")
        stop.set()

    completion_loop(SeriesSpool(tmp_path), quiet_s=30, handle=lambda s: None, stop=stop, poll_s=0.01,
                    housekeeping=housekeeping, housekeeping_every_s=0.0)

    assert len(calls) == 2
    assert "clean-up of the DICOM spool failed" in caplog.text
