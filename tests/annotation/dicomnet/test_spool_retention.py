"""The retention of refused received series (issue 15): a real LIDC-IDRI-0001 series refused by the
import stays in the spool's failed/ folder for DICOM_FAILED_RETENTION_DAYS, then the clean-up deletes it
with an audit record and a log line that name no patient and no UID."""

from __future__ import annotations

import logging
import os
import time

import pydicom
import pytest

from annotation import services, tasks
from annotation.dicomnet.spool import SeriesSpool
from portal.models import AuditLog
from tests.conftest import shared_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def refused(tmp_path, settings):
    """A real CT series received from an AE title that is no peer: refused into failed/."""
    settings.DICOM_SPOOL_DIR = tmp_path / "spool"
    spool = SeriesSpool(settings.DICOM_SPOOL_DIR)
    files = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))[:2]
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        spool.instance_write(calling_ae_title="GONE_PACS", series_instance_uid=str(ds.SeriesInstanceUID),
                             sop_instance_uid=str(ds.SOPInstanceUID), data=path.read_bytes())
    [claimed] = spool.claim_complete(quiet_s=0, now=time.time() + 1)
    assert services.dicom_received_series_import(spooled=claimed, spool=spool) is None
    [folder] = (spool.root / "failed").iterdir()
    assert (folder / "reason.txt").read_text().startswith("peer_unknown")
    return spool, folder, str(ds.SeriesInstanceUID)


def _age(folder, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(folder / "reason.txt", (then, then))


def test_a_refused_series_is_deleted_after_the_retention_with_an_audit_record_without_phi(refused, settings, caplog):
    spool, folder, series_uid = refused
    settings.DICOM_FAILED_RETENTION_DAYS = 7
    caplog.set_level(logging.INFO)
    _age(folder, 8)

    assert services.dicom_spool_failed_purge(spool=spool) == 1

    assert not folder.exists()
    audit = AuditLog.objects.get(target_type="dicom_spool_failed")
    assert audit.action == AuditLog.Action.DELETE and audit.channel == "dicom"
    assert audit.detail["removed"] == 1 and audit.detail["calling_ae_titles"] == {"GONE_PACS": 1}
    assert audit.detail["retention_days"] == 7 and audit.detail["oldest_age_days"] >= 8
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "removed 1 refused series" in logged
    assert "LIDC-IDRI-0001" not in logged and series_uid not in logged
    assert "LIDC-IDRI-0001" not in str(audit.detail) and series_uid not in str(audit.detail)


def test_a_refused_series_within_the_retention_stays_identifiable(refused, settings):
    spool, folder, series_uid = refused
    settings.DICOM_FAILED_RETENTION_DAYS = 7
    _age(folder, 6)

    assert services.dicom_spool_failed_purge(spool=spool) == 0

    assert folder.name.endswith(series_uid) and len(list(folder.glob("*.dcm"))) == 2
    assert not AuditLog.objects.filter(target_type="dicom_spool_failed").exists()


def test_a_retention_of_zero_keeps_refused_series_forever(refused, settings):
    spool, folder, _uid = refused
    settings.DICOM_FAILED_RETENTION_DAYS = 0
    _age(folder, 3650)

    assert services.dicom_spool_failed_purge(spool=spool) == 0
    assert folder.exists()


def test_the_beat_task_cleans_the_configured_spool(refused, settings):
    _spool, folder, _uid = refused
    settings.DICOM_FAILED_RETENTION_DAYS = 1
    _age(folder, 2)

    assert tasks.dicom_spool_purge_task.apply().get() == 1
    assert not folder.exists()
    assert settings.CELERY_BEAT_SCHEDULE["dicom-spool-purge"]["task"] == "annotation.dicom_spool_purge"
