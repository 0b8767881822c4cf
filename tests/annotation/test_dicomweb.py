"""DICOMweb (issue 15) driven by dicomweb-client, the real client, over HTTP against the live server:
QIDO-RS search, WADO-RS retrieve (instances as stored, metadata, frames, rendered), STOW-RS; JWT auth,
clinicians only, another hospital's study a 404, bad queries 400, bad STOW bodies refused with nothing
stored. Data: four contiguous slices of LIDC-IDRI-0001 (shared data)."""

from __future__ import annotations

import io
import re

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from requests import HTTPError
from rest_framework_simplejwt.tokens import RefreshToken

from annotation.models import Series, SourceFile
from portal.models import AuditLog, Role
from tests.conftest import shared_data
from tests.factories import UserFactory
from tests.helpers import contiguous_slices, stored_keys

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lidc_files():
    folder = shared_data("lidc_idri_0001_ct_nodules", "dicom")
    return contiguous_slices(folder, 7)


@pytest.fixture
def lidc_study(doctor, hospital, lidc_files):
    """Four slices of LIDC-IDRI-0001 imported for ``hospital`` by the ordinary import."""
    from annotation import services

    return services.study_import(user=doctor, hospital=hospital, patient_mrn="LIDC-IDRI-0001",
                                 paths=lidc_files[:4]).studies[0]


def _client(live_server, user=None) -> DICOMwebClient:
    headers = {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"} if user else {}
    client = DICOMwebClient(url=f"{live_server.url}/dicomweb", headers=headers)
    # live_server is a WSGI server, which passes no chunked request body to Django (daphne, which the
    # portal runs, does): send STOW-RS bodies whole, with their Content-Length.
    client.set_chunk_size(256 * 1024 * 1024)
    return client


def _status(excinfo) -> int:
    return excinfo.value.response.status_code


# --- QIDO-RS -------------------------------------------------------------------------------------

def test_search_for_studies_matches_patient_id_date_range_and_modality(live_server, doctor, lidc_study):
    client = _client(live_server, doctor)

    found = client.search_for_studies(search_filters={"PatientID": "LIDC-IDRI-0001", "StudyDate": "19990101-20001231",
                                                      "ModalitiesInStudy": "CT"})

    assert len(found) == 1
    study = pydicom.Dataset.from_json(found[0])
    assert study.StudyInstanceUID == lidc_study.study_instance_uid
    assert study.PatientID == "LIDC-IDRI-0001" and study.StudyDate == "20000101"
    assert study.ModalitiesInStudy == "CT" and study.NumberOfStudyRelatedInstances == 4
    assert client.search_for_studies(search_filters={"StudyDate": "20010101-"}) == []
    assert client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"}) == []
    assert len(client.search_for_studies(search_filters={"PatientID": "LIDC*"})) == 1


def test_search_includefield_reads_the_stored_header(live_server, doctor, lidc_study, lidc_files):
    original = pydicom.dcmread(lidc_files[0], stop_before_pixels=True)

    found = _client(live_server, doctor).search_for_studies(fields=["StudyTime", "ReferringPhysicianName"])

    study = pydicom.Dataset.from_json(found[0])
    assert study.StudyTime == original.StudyTime


def test_search_for_series_and_instances_of_a_study(live_server, doctor, lidc_study, lidc_files):
    client = _client(live_server, doctor)
    uid = lidc_study.study_instance_uid
    originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in lidc_files[:4]}

    series = [pydicom.Dataset.from_json(s) for s in client.search_for_series(study_instance_uid=uid)]
    instances = [pydicom.Dataset.from_json(i) for i in client.search_for_instances(
        study_instance_uid=uid, series_instance_uid=series[0].SeriesInstanceUID)]
    page = client.search_for_instances(study_instance_uid=uid, limit=2, offset=3)

    assert len(series) == 1 and series[0].Modality == "CT" and series[0].NumberOfSeriesRelatedInstances == 4
    assert {str(i.SOPInstanceUID) for i in instances} == originals
    assert all(i.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and i.Rows == 512 for i in instances)
    assert len(page) == 1
    assert len(client.search_for_instances(search_filters={"PatientID": "LIDC-IDRI-0001"})) == 4


@pytest.mark.parametrize("params", [
    {"PatientName": "X"},             # not a matching key of the portal
    {"NoSuchAttribute": "1"},          # not a DICOM attribute
    {"StudyDate": "2000-01-01"},       # not a DA range
    {"StudyDate": "20001231-20000101"},
    {"StudyInstanceUID": "1.2.abc"},
    {"limit": "0"},
    {"limit": "x"},
    {"offset": "-1"},
    {"fuzzymatching": "true"},
    {"includefield": "NoSuchAttribute"},
])
def test_bad_qido_parameters_answer_400(live_server, doctor, lidc_study, params):
    response = requests.get(f"{live_server.url}/dicomweb/studies", params=params, timeout=30,
                            headers={"Authorization": f"Bearer {RefreshToken.for_user(doctor).access_token}"})

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_query"


# --- WADO-RS -------------------------------------------------------------------------------------

def test_retrieve_instance_returns_the_original_bytes(live_server, doctor, lidc_study, lidc_files):
    original = pydicom.dcmread(lidc_files[0])
    series_uid = str(original.SeriesInstanceUID)

    retrieved = _client(live_server, doctor).retrieve_instance(
        lidc_study.study_instance_uid, series_uid, str(original.SOPInstanceUID))

    stored = SourceFile.objects.get(sop_instance_uid=original.SOPInstanceUID)
    assert stored.size_bytes == lidc_files[0].stat().st_size
    assert retrieved.SOPInstanceUID == original.SOPInstanceUID
    np.testing.assert_array_equal(retrieved.pixel_array, original.pixel_array)
    buffer = io.BytesIO()
    retrieved.save_as(buffer, enforce_file_format=True)
    assert retrieved.PixelData == original.PixelData


def test_retrieve_study_and_its_metadata(live_server, doctor, lidc_study, lidc_files):
    client = _client(live_server, doctor)
    uid = lidc_study.study_instance_uid
    originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in lidc_files[:4]}

    instances = client.retrieve_study(uid)
    metadata = [pydicom.Dataset.from_json(m) for m in client.retrieve_study_metadata(uid)]

    assert {str(ds.SOPInstanceUID) for ds in instances} == originals
    assert {str(ds.SOPInstanceUID) for ds in metadata} == originals
    assert all(ds.PatientID == "LIDC-IDRI-0001" and "PixelData" not in ds for ds in metadata)
    assert AuditLog.objects.filter(target_type="dicomweb:wado", actor=doctor).exists()


def test_frames_are_the_uncompressed_pixel_values(live_server, doctor, lidc_study, lidc_files):
    original = pydicom.dcmread(lidc_files[1])

    frames = _client(live_server, doctor).retrieve_instance_frames(
        lidc_study.study_instance_uid, str(original.SeriesInstanceUID), str(original.SOPInstanceUID),
        frame_numbers=[1], media_types=("application/octet-stream",))

    assert len(frames) == 1
    pixels = np.frombuffer(frames[0], dtype=original.pixel_array.dtype).reshape(original.Rows, original.Columns)
    np.testing.assert_array_equal(pixels, original.pixel_array)


def test_frame_beyond_the_last_is_404(live_server, doctor, lidc_study, lidc_files):
    original = pydicom.dcmread(lidc_files[1], stop_before_pixels=True)

    with pytest.raises(HTTPError) as excinfo:
        _client(live_server, doctor).retrieve_instance_frames(
            lidc_study.study_instance_uid, str(original.SeriesInstanceUID), str(original.SOPInstanceUID),
            frame_numbers=[2], media_types=("application/octet-stream",))

    assert _status(excinfo) == 404


def test_rendered_png_applies_the_requested_window(live_server, doctor, lidc_study, lidc_files):
    from pydicom.pixels import apply_modality_lut

    from annotation.imaging.windowing import apply_window

    original = pydicom.dcmread(lidc_files[2])
    client = _client(live_server, doctor)
    args = (lidc_study.study_instance_uid, str(original.SeriesInstanceUID), str(original.SOPInstanceUID))

    png = client.retrieve_instance_rendered(*args, media_types=("image/png",), params={"window": "-600,1500,linear"})
    default = client.retrieve_instance_rendered(*args, media_types=("image/png",))

    image = np.asarray(Image.open(io.BytesIO(png)))
    expected = apply_window(apply_modality_lut(original.pixel_array, original), -600, 1500)
    np.testing.assert_array_equal(image, expected)
    stored_window = apply_window(apply_modality_lut(original.pixel_array, original),
                                 float(original.WindowCenter), float(original.WindowWidth))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(default))), stored_window)


def test_rendered_jpeg_and_a_bad_window(live_server, doctor, lidc_study, lidc_files):
    original = pydicom.dcmread(lidc_files[2], stop_before_pixels=True)
    client = _client(live_server, doctor)
    args = (lidc_study.study_instance_uid, str(original.SeriesInstanceUID), str(original.SOPInstanceUID))

    jpeg = client.retrieve_instance_rendered(*args, media_types=("image/jpeg",))
    with pytest.raises(HTTPError) as excinfo:
        client.retrieve_instance_rendered(*args, media_types=("image/png",), params={"window": "40,0,linear"})

    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert Image.open(io.BytesIO(jpeg)).size == (512, 512)
    assert _status(excinfo) == 400


# --- auth and tenancy ----------------------------------------------------------------------------

def test_another_hospitals_study_is_404_and_missing_from_searches(live_server, other_doctor, lidc_study, lidc_files):
    client = _client(live_server, other_doctor)
    original = pydicom.dcmread(lidc_files[0], stop_before_pixels=True)

    assert client.search_for_studies() == []
    assert client.search_for_instances() == []
    for call in (lambda: client.retrieve_study(lidc_study.study_instance_uid),
                 lambda: client.retrieve_study_metadata(lidc_study.study_instance_uid),
                 lambda: client.search_for_series(study_instance_uid=lidc_study.study_instance_uid),
                 lambda: client.retrieve_instance(lidc_study.study_instance_uid, str(original.SeriesInstanceUID),
                                                  str(original.SOPInstanceUID))):
        with pytest.raises(HTTPError) as excinfo:
            call()
        assert _status(excinfo) == 404


def test_unauthenticated_is_401_and_annotator_403(live_server, annotator, lidc_study):
    with pytest.raises(HTTPError) as anonymous:
        _client(live_server).search_for_studies()
    with pytest.raises(HTTPError) as not_clinician:
        _client(live_server, annotator).retrieve_study(lidc_study.study_instance_uid)

    assert _status(anonymous) == 401
    assert _status(not_clinician) == 403


# --- STOW-RS -------------------------------------------------------------------------------------

def test_stow_stores_instances_that_qido_then_finds(live_server, doctor, hospital, lidc_files):
    client = _client(live_server, doctor)
    datasets = [pydicom.dcmread(p) for p in lidc_files[:3]]

    response = client.store_instances(datasets)

    stored = [str(item.ReferencedSOPInstanceUID) for item in response.ReferencedSOPSequence]
    assert sorted(stored) == sorted(str(ds.SOPInstanceUID) for ds in datasets)
    assert "FailedSOPSequence" not in response
    series = Series.objects.get(hospital=hospital, series_instance_uid=datasets[0].SeriesInstanceUID)
    assert series.instance_count == 3 and series.study.uploaded_by == doctor
    found = client.search_for_instances(search_filters={"PatientID": "LIDC-IDRI-0001"})
    assert {pydicom.Dataset.from_json(i).SOPInstanceUID for i in found} == {ds.SOPInstanceUID for ds in datasets}
    back = client.retrieve_instance(str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID),
                                    str(datasets[0].SOPInstanceUID))
    assert back.PixelData == datasets[0].PixelData
    assert AuditLog.objects.filter(target_type="dicomweb:stow", actor=doctor).exists()


def test_stow_of_a_stored_series_is_409_and_changes_nothing(live_server, doctor, lidc_study, lidc_files):
    keys_before = stored_keys()
    files_before = SourceFile.objects.count()

    with pytest.raises(HTTPError) as excinfo:
        _client(live_server, doctor).store_instances([pydicom.dcmread(p) for p in lidc_files[:2]])

    assert _status(excinfo) == 409
    body = pydicom.Dataset.from_json(excinfo.value.response.json())
    assert [item.FailureReason for item in body.FailedSOPSequence] == [0x0111, 0x0111]
    assert SourceFile.objects.count() == files_before and stored_keys() == keys_before


def _post(live_server, user, body: bytes, content_type: str):
    return requests.post(f"{live_server.url}/dicomweb/studies", data=body, timeout=30, headers={
        "Authorization": f"Bearer {RefreshToken.for_user(user).access_token}", "Content-Type": content_type})


def test_stow_body_that_is_not_multipart_is_415(live_server, doctor, lidc_files):
    response = _post(live_server, doctor, lidc_files[0].read_bytes(), "application/dicom")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert not Series.objects.exists()


def test_stow_malformed_multipart_is_400(live_server, doctor, lidc_files):
    body = b"--abc\r\nContent-Type: application/dicom\r\n\r\n" + lidc_files[0].read_bytes()  # no closing boundary

    response = _post(live_server, doctor, body, 'multipart/related; type="application/dicom"; boundary=abc')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_multipart"
    assert not Series.objects.exists()


def test_stow_parts_that_are_not_dicom_fail_with_nothing_stored(live_server, doctor, lidc_files):
    good = lidc_files[0].read_bytes()
    body = (b"--abc\r\nContent-Type: application/dicom\r\n\r\nnot a dicom file\r\n"
            b"--abc\r\nContent-Type: text/plain\r\n\r\n" + good + b"\r\n--abc--\r\n")
    keys_before = stored_keys()

    response = _post(live_server, doctor, body, 'multipart/related; type="application/dicom"; boundary=abc')

    assert response.status_code == 409
    failed = pydicom.Dataset.from_json(response.json()).FailedSOPSequence
    assert [item.FailureReason for item in failed] == [0xC000, 0xC000]
    assert not Series.objects.exists() and stored_keys() == keys_before


def test_stow_chunked_body_under_wsgi_is_411(live_server, doctor, lidc_files):
    body = (b"--abc\r\nContent-Type: application/dicom\r\n\r\n" + lidc_files[0].read_bytes() + b"\r\n--abc--\r\n")

    response = requests.post(f"{live_server.url}/dicomweb/studies", data=iter([body]), timeout=30, headers={
        "Authorization": f"Bearer {RefreshToken.for_user(doctor).access_token}",
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=abc'})

    assert response.status_code == 411
    assert not Series.objects.exists()


def test_stow_by_an_annotator_is_403(live_server, annotator, lidc_files):
    with pytest.raises(HTTPError) as excinfo:
        _client(live_server, annotator).store_instances([pydicom.dcmread(lidc_files[0])])

    assert _status(excinfo) == 403
    assert not Series.objects.exists()


def test_platform_admin_without_hospital_cannot_stow(live_server, lidc_files):
    admin = UserFactory(role=Role.PLATFORM_ADMIN, hospital=None)

    with pytest.raises(HTTPError) as excinfo:
        _client(live_server, admin).store_instances([pydicom.dcmread(lidc_files[0])])

    assert _status(excinfo) == 403


# --- the permission matrix of docs/permissions.md, section DICOMweb --------------------------------

def test_every_dicomweb_route_has_a_row():
    from django.urls import URLResolver, get_resolver

    from tests.portal.test_permission_matrix import parse_section

    resolver = next(e for e in get_resolver().url_patterns if isinstance(e, URLResolver) and e.namespace == "dicomweb")
    routes = {f"dicomweb:{e.name}" for e in resolver.url_patterns}
    assert routes == {row.name for row in parse_section("DICOMweb")}


@pytest.mark.django_db
def test_dicomweb_follows_the_permission_matrix(hospital, doctor, annotator, patient_user, other_doctor, lidc_study,
                                                lidc_files):
    from django.urls import reverse

    from tests.helpers import api_client
    from tests.portal.test_permission_matrix import parse_section

    original = pydicom.dcmread(lidc_files[0], stop_before_pixels=True)
    values = {"study_uid": lidc_study.study_instance_uid, "series_uid": str(original.SeriesInstanceUID),
              "sop_uid": str(original.SOPInstanceUID), "frames": "1"}
    users = {"platform admin": UserFactory(role=Role.PLATFORM_ADMIN, hospital=None),
             "hospital admin": UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital), "doctor": doctor,
             "annotator": annotator, "patient": patient_user, "other hospital's staff": other_doctor}
    failures = []
    for row in parse_section("DICOMweb"):
        kwargs = {name: values[name] for name in re.findall(r"<(\w+)>", row.path)}
        url = reverse(row.name, kwargs=kwargs)
        for role, cell in row.cells.items():
            client = api_client(users[role])
            # An empty STOW body: 415 once the permission check lets the request through.
            response = client.get(url) if row.method == "GET" else client.post(url, b"", content_type="text/plain")
            status = response.status_code
            if cell == "denied" and status not in (403, 404):
                failures.append(f"{row.method} {row.name} as {role}: expected denied, got {status}")
            elif cell != "denied" and (status in (401, 403, 404, 405) or status >= 500):
                failures.append(f"{row.method} {row.name} as {role}: expected {cell}, got {status}")
    assert not failures, "DICOMweb differs from docs/permissions.md:\n" + "\n".join(failures)


# --- query counts ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_study_and_series_searches_take_as_many_queries_for_two_studies_as_for_one(doctor, hospital, lidc_study):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from annotation import services
    from tests.helpers import api_client

    client = api_client(doctor)

    def count(url: str, expected_results: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200 and len(response.json()) == expected_results
        return len(queries)

    one = (count(reverse("dicomweb:studies"), 1), count(reverse("dicomweb:series-search"), 1))
    mr = contiguous_slices(shared_data("tcia_brain_tumor_progression_mr_dicom", "T1post"), 3)
    services.study_import(user=doctor, hospital=hospital, patient_mrn="PGBM-002", paths=mr)
    two = (count(reverse("dicomweb:studies"), 2), count(reverse("dicomweb:series-search"), 2))

    assert one == two


# --- STOW-RS failure reasons (through the test client) --------------------------------------------

def _multipart(*files: bytes) -> tuple[bytes, str]:
    from annotation.dicomweb.multipart import multipart_encode_stream

    body = b"".join(multipart_encode_stream(list(files), content_type="application/dicom", boundary="b0undary"))
    return body, 'multipart/related; type="application/dicom"; boundary=b0undary'


@pytest.mark.django_db
def test_stow_into_a_named_study_fails_instances_of_another_study(doctor, lidc_files):
    from django.urls import reverse

    from tests.helpers import api_client

    body, content_type = _multipart(lidc_files[0].read_bytes())

    response = api_client(doctor).post(reverse("dicomweb:study", args=["1.2.3.4"]), body, content_type=content_type)

    assert response.status_code == 409
    failed = pydicom.Dataset.from_json(response.json()).FailedSOPSequence
    assert [item.FailureReason for item in failed] == [0xA900]
    assert not Series.objects.exists()


@pytest.mark.django_db
def test_stow_of_a_seg_is_sop_class_not_supported_and_a_repeated_instance_a_duplicate(doctor, lidc_files):
    from django.urls import reverse

    from tests.helpers import api_client

    seg = shared_data("dcmqi_ct_dicom_seg", "seg", "liver.dcm")
    ct = [p.read_bytes() for p in lidc_files[:3]]
    body, content_type = _multipart(seg.read_bytes(), *ct, ct[0])

    response = api_client(doctor).post(reverse("dicomweb:studies"), body, content_type=content_type)

    assert response.status_code == 202, response.content
    result = pydicom.Dataset.from_json(response.json())
    assert [item.FailureReason for item in result.FailedSOPSequence] == [0x0122, 0x0111]
    assert len(result.ReferencedSOPSequence) == 3
    assert SourceFile.objects.count() == 3
