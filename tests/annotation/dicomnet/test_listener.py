"""The DICOM service against real peers: dcmtk's echoscu and storescu, and pynetdicom as an SCU."""

from __future__ import annotations

import logging

import pydicom
import pytest

from annotation import services
from annotation.models import DicomRoutingRule, InferenceRun, Series, SourceFile
from portal.models import AuditLog
from tests.conftest import shared_data
from tests.helpers import stored_keys

from .conftest import PEER_AE

pytestmark = pytest.mark.django_db(transaction=True)

GEOMETRY = ("shape", "spacing_mm", "origin_mm", "direction", "intensity_min", "intensity_max", "modality", "body_part")


def test_echoscu_gets_a_verification_response(listener):
    result = listener.scu("echoscu")
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stderr


def test_storescu_series_is_imported_into_the_calling_hospital_like_a_file_import(listener, hospital, caplog):
    from tests.factories import HospitalFactory

    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    caplog.set_level(logging.DEBUG)

    result = listener.scu("storescu", str(folder), options=("+sd",))
    listener.wait_idle()

    assert result.returncode == 0, result.stderr
    received = Series.objects.select_related("study__patient").get(study__hospital=hospital)
    assert received.instance_count == 133
    assert received.study.patient.mrn == "LIDC-IDRI-0001"
    assert received.source_format == Series.SourceFormat.DICOM
    by_file = services.study_import(user=None, hospital=HospitalFactory(), patient_mrn="LIDC-IDRI-0001", paths=[folder]).series[0]
    for field in GEOMETRY:
        assert getattr(received, field) == getattr(by_file, field), field
    assert received.series_instance_uid == by_file.series_instance_uid
    assert set(SourceFile.objects.filter(series=received).values_list("sop_instance_uid", flat=True)) == set(
        SourceFile.objects.filter(series=by_file).values_list("sop_instance_uid", flat=True)
    )
    audit = AuditLog.objects.get(target_type="dicom_receive", target_id=str(received.pk))
    assert audit.hospital == hospital and audit.channel == "dicom" and audit.detail["instances"] == 133
    # No PHI in any log line: the Patient ID is only in the data.
    assert caplog.records and not any("LIDC-IDRI-0001" in r.getMessage() for r in caplog.records)


def test_unknown_calling_ae_is_rejected_at_association_and_nothing_is_stored(listener, caplog):
    files = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))[:3]
    keys_before = stored_keys()
    caplog.set_level(logging.INFO)

    result = listener.scu("storescu", *map(str, files), calling="STRANGER")
    listener.wait_idle()

    assert result.returncode != 0
    assert "Association Rejected" in result.stderr
    assert "Calling AE Title Not Recognized" in result.stderr
    assert listener.spool.pending() == []
    assert not Series.objects.exists() and stored_keys() == keys_before
    assert any("STRANGER" in r.getMessage() and "rejected" in r.getMessage() for r in caplog.records)


def test_a_deactivated_peer_is_rejected_without_a_restart(listener):
    from annotation.models import DicomPeer

    DicomPeer.objects.filter(ae_title=PEER_AE).update(is_active=False)

    result = listener.scu("echoscu")

    assert result.returncode != 0 and "Association Rejected" in result.stderr


def test_unsupported_sop_class_gets_a_failure_status_and_nothing_is_stored(listener):
    rtstruct = shared_data("rtutils_phantom_ct_rtstruct", "rt.dcm")
    keys_before = stored_keys()

    result = listener.scu("storescu", str(rtstruct))
    listener.wait_idle()

    assert "Received Store Response (Refused: SOPClassNotSupported)" in result.stderr, result.stderr
    assert listener.spool.pending() == []
    assert not Series.objects.exists() and stored_keys() == keys_before


def _send_with_pynetdicom(listener, dataset_or_path):
    from pynetdicom import AE

    ae = AE(ae_title=PEER_AE)
    for transfer_syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2"):
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", transfer_syntax)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=listener.ae_title)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(dataset_or_path)
    finally:
        assoc.release()
    return status


def test_truncated_pixel_data_gets_a_failure_status_and_nothing_is_stored(listener):
    source = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))[0]
    ds = pydicom.dcmread(source)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    keys_before = stored_keys()

    status = _send_with_pynetdicom(listener, ds)
    listener.wait_idle()

    assert status.Status == 0xC000
    assert listener.spool.pending() == [] and not Series.objects.exists() and stored_keys() == keys_before


def test_instance_without_patient_id_gets_a_failure_status(listener):
    source = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))[0]
    ds = pydicom.dcmread(source)
    del ds.PatientID

    status = _send_with_pynetdicom(listener, ds)
    listener.wait_idle()

    assert status.Status == 0xA900
    assert listener.spool.pending() == [] and not Series.objects.exists()


def test_undecodable_dataset_gets_a_failure_status(listener, tmp_path, monkeypatch):
    from pynetdicom import _config

    # Send the file's bytes as they are (pynetdicom would otherwise decode and re-encode them).
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    source = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))[0]
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    corrupt = tmp_path / "corrupt.dcm"
    # A valid file meta header followed by bytes that are no dataset: a sequence whose item is garbage.
    pydicom.filewriter.write_file_meta_info(buffer := pydicom.filebase.DicomBytesIO(), ds.file_meta)
    corrupt.write_bytes(b"\0" * 128 + b"DICM" + buffer.getvalue() + b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\x01\x02\x03\x04garbage")

    status = _send_with_pynetdicom(listener, corrupt)
    listener.wait_idle()

    assert status.Status == 0xC000
    assert listener.spool.pending() == [] and not Series.objects.exists()


def test_a_matching_routing_rule_queues_a_one_click_segmentation(listener, hospital, ct_lung_model):
    from diagnosis.models import Measurement  # noqa: F401 - the hooks diagnosis registers stay loaded

    DicomRoutingRule.objects.create(hospital=hospital, modality="CT", body_part="HEAD", model=ct_lung_model, priority=1)
    DicomRoutingRule.objects.create(hospital=hospital, modality="MR", model=ct_lung_model, priority=2)
    DicomRoutingRule.objects.create(hospital=hospital, modality="ct", body_part="chest",
                                    series_description_pattern=r"^$|LUNG|CHEST", model=ct_lung_model, priority=3)
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")

    result = listener.scu("storescu", str(folder), options=("+sd",))
    listener.wait_idle()

    assert result.returncode == 0, result.stderr
    series = Series.objects.get(study__hospital=hospital)
    runs = list(InferenceRun.objects.filter(series=series))
    assert [(run.model_id, run.status, run.requested_by) for run in runs] == [(ct_lung_model.pk, InferenceRun.Status.QUEUED, None)]


def test_a_routing_rule_that_does_not_match_starts_nothing(listener, hospital, ct_lung_model):
    DicomRoutingRule.objects.create(hospital=hospital, modality="CT", series_description_pattern="BRAIN", model=ct_lung_model)
    files = sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))

    listener.scu("storescu", *map(str, files))
    listener.wait_idle()

    assert Series.objects.filter(study__hospital=hospital).count() == 1
    assert not InferenceRun.objects.exists()


def test_a_series_sent_twice_is_refused_the_second_time_and_the_first_is_untouched(listener, hospital):
    files = [str(p) for p in sorted(shared_data("lidc_idri_0001_ct_nodules", "dicom").glob("*.dcm"))]
    listener.scu("storescu", *files)
    listener.wait_idle()
    first = Series.objects.get(study__hospital=hospital)
    keys_before = stored_keys()

    listener.scu("storescu", *files)
    listener.wait_idle()

    assert list(Series.objects.filter(study__hospital=hospital)) == [first]
    assert stored_keys() == keys_before
    failed = list((listener.spool.root / "failed").iterdir())
    assert len(failed) == 1 and (failed[0] / "reason.txt").read_text().startswith("series_exists")
