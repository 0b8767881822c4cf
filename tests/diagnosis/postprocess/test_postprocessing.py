"""Post-processing scripts through the portal: upload, run on a real CT in the sandbox, figures and plots
stored with the study and shown on its page; permissions; hostile scripts leave the portal unharmed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import translation

from annotation import services as annotation_services
from annotation.models import Segmentation, Series
from annotation.storage import segmentation_labelmap_load, series_volume_load
from diagnosis import services
from diagnosis.models import PostProcessingRun, PostProcessingScript
from portal.models import AuditLog, Role
from portal.storage import sha256_of
from tests.factories import UserFactory
from tests.helpers import api_client

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="bubblewrap is not installed"),
    pytest.mark.skipif(not Path(f"/usr/bin/python3.{sys.version_info.minor}").exists(),
                       reason="the sandbox's interpreter (Debian's python3) is not installed"),
]

LABEL_VOLUMES_SCRIPT = """
import json, numpy as np, SimpleITK as sitk, PIL.Image
study = json.load(open("/in/study.json"))
ct = sitk.GetArrayFromImage(sitk.ReadImage("/in/volume.nii.gz"))
lab = sitk.GetArrayFromImage(sitk.ReadImage("/in/labelmap.nii.gz"))
voxel_ml = float(np.prod(study["spacing_mm"])) / 1000.0
volumes = {name: float((lab == int(k)).sum()) * voxel_ml for k, name in study["labels"].items()}
counts, _ = np.histogram(ct, bins=16, range=(-1024, 1024))
bars = np.zeros((32, 16), np.uint8)
for i, c in enumerate((31 * counts / max(counts.max(), 1)).astype(int)):
    bars[31 - c:, i] = 255
PIL.Image.fromarray(bars).resize((160, 64)).save("/out/histogram.png")
json.dump({"volume_ml": volumes, "histogram": counts.tolist(), "series_id": study["study"]["series_id"]},
          open("/out/figures.json", "w"))
"""


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.POSTPROCESS_WALL_S = 20.0
    settings.POSTPROCESS_CPU_S = 15
    settings.POSTPROCESS_MEMORY_MB = 1024
    settings.POSTPROCESS_OUTPUT_MB = 1


@pytest.fixture
def hospital_admin(hospital):
    return UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)


@pytest.fixture
def series(small_ct_study):
    return small_ct_study.series.get()


@pytest.fixture
def segmentation(series):
    volume = series_volume_load(series)
    labels = np.zeros(volume.array.shape, np.uint8)
    labels[volume.array > 200] = 1
    labels[volume.array < -500] = 2
    return annotation_services.segmentation_create(
        series=series, label_map=labels, label_table=[{"index": 1, "name": "bone", "color": "#ffffff"},
                                                      {"index": 2, "name": "air", "color": "#0000ff"}],
        name="thresholds", source=Segmentation.Source.MANUAL)


@pytest.fixture
def script(hospital_admin):
    return services.postprocessing_script_upload(user=hospital_admin, name="label volumes", code=LABEL_VOLUMES_SCRIPT)


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _upload(user, name, code):
    return services.postprocessing_script_upload(user=user, name=name, code=code)


def _run(doctor, study, script) -> PostProcessingRun:
    response = api_client(doctor).post(reverse("study-postprocessing-runs", args=[study.pk]), {"script": script.pk},
                                       format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued"
    return services.postprocessing_run_execute(run_id=response.json()["id"])


# --- the whole journey on a real CT ---------------------------------------------------------------------

def test_doctor_runs_an_uploaded_script_and_gets_label_volumes_and_a_plot(doctor, small_ct_study, series, segmentation,
                                                                          script):
    run = _run(doctor, small_ct_study, script)

    assert run.status == "succeeded", (run.error_code, run.error_message, run.error_detail)
    volume = series_volume_load(series)
    labels = segmentation_labelmap_load(segmentation)
    voxel_ml = float(np.prod(volume.geometry.spacing_mm)) / 1000.0
    assert run.figures["volume_ml"]["bone"] == pytest.approx(float((labels == 1).sum()) * voxel_ml, rel=1e-9)
    assert run.figures["volume_ml"]["air"] == pytest.approx(float((labels == 2).sum()) * voxel_ml, rel=1e-9)
    assert run.figures["volume_ml"]["bone"] > 1.0
    assert run.figures["histogram"] == np.histogram(volume.array, bins=16, range=(-1024, 1024))[0].tolist()
    assert run.figures["series_id"] == series.pk
    assert AuditLog.objects.filter(target_type="postprocessing_run", target_id=str(run.pk), action="create").exists()

    detail = api_client(doctor).get(reverse("postprocessing-run", args=[run.pk])).json()
    assert detail["plots"][0]["name"] == "histogram.png" and detail["error"] is None
    plot = api_client(doctor).get(detail["plots"][0]["url"])
    assert plot.status_code == 200 and plot["Content-Type"] == "image/png"
    assert b"".join(plot.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"

    page = _browser(doctor).get(reverse("annotation:study-detail", args=[small_ct_study.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert f'id="postprocessing-run-{run.pk}"' in html and detail["plots"][0]["url"] in html


def test_study_page_form_queues_a_run(doctor, small_ct_study, script):
    client = _browser(doctor)
    response = client.post(reverse("diagnosis:postprocessing-run-start", args=[small_ct_study.pk]), {"script": script.pk})
    assert response.status_code == 302
    assert PostProcessingRun.objects.filter(study=small_ct_study, script=script, status="queued").count() == 1


# --- hostile scripts through the portal ------------------------------------------------------------------

@pytest.fixture
def other_study(hospital, doctor):
    """Another patient's study of the same hospital, whose stored volume the script must not reach."""
    from tests.conftest import shared_data

    result = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-2",
                                              paths=[shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")],
                                              modality="CT")
    return result.studies[0]


def test_script_cannot_reach_another_studys_files_settings_or_storage(doctor, hospital_admin, small_ct_study,
                                                                        other_study, settings, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "portal-secret-key-xyz")
    other_series = other_study.series.get()
    before = (other_series.volume_sha256, Series.objects.filter(pk=other_series.pk).values().get())
    settings_file = Path(settings.BASE_DIR) / "portal" / "settings" / "base.py"
    var_dir = Path(settings.VAR_DIR)
    code = f"""
import json, os, socket
seen = {{"env": sorted(os.environ)}}
for path in ({str(settings_file)!r}, {str(var_dir)!r}, {str(Path(settings.BASE_DIR) / '.env')!r}):
    try:
        seen[path] = os.listdir(path) if os.path.isdir(path) else open(path).read()
    except OSError as exc:
        seen[path] = type(exc).__name__
try:
    socket.create_connection(("127.0.0.1", {settings.EMBEDDED_S3_PORT}), timeout=1)
    seen["s3"] = "connected"
except OSError as exc:
    seen["s3"] = type(exc).__name__
with open("/out/figures.json", "w") as fh:
    json.dump(seen, fh)
"""
    run = _run(doctor, small_ct_study, _upload(hospital_admin, "snoop", code))

    assert run.status == "succeeded"
    assert run.figures[str(settings_file)] == "FileNotFoundError"
    assert run.figures[str(var_dir)] == "FileNotFoundError"
    assert run.figures["s3"] != "connected"
    assert "AWS_SECRET_ACCESS_KEY" not in run.figures["env"] and "DJANGO_SECRET_KEY" not in run.figures["env"]
    other_series.refresh_from_db()
    assert (other_series.volume_sha256, Series.objects.filter(pk=other_series.pk).values().get()) == before
    with default_storage.open(other_series.volume_file.name, "rb") as fh:
        assert sha256_of(fh) == other_series.volume_sha256


@pytest.mark.parametrize("code, error_code", [
    ("import time\nwhile True:\n    time.sleep(1)\n", "timeout"),
    ("import numpy as np\na = np.ones(10 * 1024**3, dtype=np.uint8)\n", "memory_limit"),
    ("with open('/out/big.bin', 'wb') as fh:\n    for _ in range(1024):\n        fh.write(b'x' * 1024**2)\n",
     "output_too_large"),
    ("import os\nwhile True:\n    os.fork()\n", "process_limit"),
    ("open('/etc/passwd').read()\n", "script_failed"),
])
def test_hostile_script_fails_its_run_with_a_clear_error(doctor, hospital_admin, small_ct_study, settings, code,
                                                         error_code):
    settings.POSTPROCESS_WALL_S = 3.0
    settings.POSTPROCESS_PROCESSES = 16
    run = _run(doctor, small_ct_study, _upload(hospital_admin, f"hostile {error_code}", code))

    assert (run.status, run.error_code) == ("failed", error_code)
    assert run.plots == [] and not default_storage.exists(f"postprocessing/{run.pk}/big.bin")
    with translation.override("en"):
        body = api_client(doctor).get(reverse("postprocessing-run", args=[run.pk])).json()
    assert body["error"]["code"] == error_code and body["error"]["message"]
    assert "root:" not in body["error"]["stderr_tail"]
    assert not list(Path(settings.POSTPROCESS_WORK_DIR).glob("run-*"))  # the run's folder is gone


def test_a_run_of_a_lost_worker_is_failed_not_left_running(doctor, small_ct_study, script):
    run = services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)
    PostProcessingRun.objects.filter(pk=run.pk).update(status="running")
    services.postprocessing_run_lost(run_id=run.pk, reason="the worker process running it was lost")
    run.refresh_from_db()
    assert (run.status, run.error_code) == ("failed", "worker_lost")
    assert services.postprocessing_run_execute(run_id=run.pk).status == "failed"  # not executed again


# --- uploads ------------------------------------------------------------------------------------------------

def test_hospital_admin_uploads_a_script_as_a_file(hospital_admin):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api_client(hospital_admin).post(
        reverse("postprocessing-scripts"),
        {"name": "volumes", "file": SimpleUploadedFile("volumes.py", LABEL_VOLUMES_SCRIPT.encode())},
        format="multipart")
    assert response.status_code == 201, response.content
    script = PostProcessingScript.objects.get(pk=response.json()["id"])
    assert script.hospital_id == hospital_admin.hospital_id and script.code == LABEL_VOLUMES_SCRIPT
    assert AuditLog.objects.filter(target_type="postprocessing_script", target_id=str(script.pk)).exists()


@pytest.mark.parametrize("payload, code", [
    ({"name": "bad", "code": "def f(:\n  pass"}, "script_syntax"),
    ({"name": "big", "code": "x = 1\n" * 100_000}, "script_too_large"),
    ({"name": "both"}, "invalid"),
])
def test_bad_uploads_are_refused_and_nothing_is_stored(hospital_admin, payload, code):
    response = api_client(hospital_admin).post(reverse("postprocessing-scripts"), payload, format="json")
    assert response.status_code == 400, response.content
    if code != "invalid":
        assert response.json()["error"]["code"] == code
    assert not PostProcessingScript.objects.exists()


def test_non_utf8_file_is_refused(hospital_admin):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api_client(hospital_admin).post(
        reverse("postprocessing-scripts"), {"name": "latin", "file": SimpleUploadedFile("x.py", b"x = '\xe9'\n")},
        format="multipart")
    assert response.status_code == 400 and response.json()["error"]["code"] == "script_not_utf8"


@pytest.mark.parametrize("who, status", [("doctor", 403), ("annotator", 403), ("patient_user", 403)])
def test_only_hospital_admins_upload(request, who, status):
    response = api_client(request.getfixturevalue(who)).post(
        reverse("postprocessing-scripts"), {"name": "x", "code": "pass"}, format="json")
    assert response.status_code == status
    assert not PostProcessingScript.objects.exists()


def test_script_list_is_scoped_to_the_hospital(doctor, other_doctor, script, patient_user):
    assert [s["id"] for s in api_client(doctor).get(reverse("postprocessing-scripts")).json()["results"]] == [script.pk]
    assert api_client(other_doctor).get(reverse("postprocessing-scripts")).json()["results"] == []
    assert api_client(patient_user).get(reverse("postprocessing-scripts")).status_code == 403


# --- running and reading: permissions ------------------------------------------------------------------------

def test_annotator_and_patient_cannot_run(annotator, patient_user, small_ct_study, script):
    for user in (annotator, patient_user):
        response = api_client(user).post(reverse("study-postprocessing-runs", args=[small_ct_study.pk]),
                                         {"script": script.pk}, format="json")
        assert response.status_code == 403
    assert not PostProcessingRun.objects.exists()


def test_another_hospitals_doctor_finds_no_study_run_or_plot(other_doctor, doctor, small_ct_study, script):
    run = services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)
    client = api_client(other_doctor)
    assert client.post(reverse("study-postprocessing-runs", args=[small_ct_study.pk]), {"script": script.pk},
                       format="json").status_code == 404
    assert client.get(reverse("study-postprocessing-runs", args=[small_ct_study.pk])).status_code == 404
    assert client.get(reverse("postprocessing-run", args=[run.pk])).status_code == 404
    assert client.get(reverse("postprocessing-run-plot", args=[run.pk, "histogram.png"])).status_code == 404


def test_a_script_of_another_hospital_cannot_be_run(doctor, small_ct_study):
    from tests.factories import HospitalFactory

    other_admin = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=HospitalFactory())
    foreign = _upload(other_admin, "foreign", "pass")
    response = api_client(doctor).post(reverse("study-postprocessing-runs", args=[small_ct_study.pk]),
                                       {"script": foreign.pk}, format="json")
    assert response.status_code == 404
    assert not PostProcessingRun.objects.exists()


def test_inactive_script_and_wrong_series_are_refused(doctor, hospital_admin, small_ct_study, other_study, script):
    other_series = other_study.series.get()
    response = api_client(doctor).post(reverse("study-postprocessing-runs", args=[small_ct_study.pk]),
                                       {"script": script.pk, "series": other_series.pk}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "series_mismatch"
    services.postprocessing_script_set_active(user=hospital_admin, script=script, active=False)
    response = api_client(doctor).post(reverse("study-postprocessing-runs", args=[small_ct_study.pk]),
                                       {"script": script.pk}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "script_inactive"
    assert not PostProcessingRun.objects.exists()


def test_patient_sees_no_runs(patient_user, doctor, small_ct_study, script):
    services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)
    assert api_client(patient_user).get(reverse("study-postprocessing-runs", args=[small_ct_study.pk])).status_code == 403


def test_unknown_plot_name_is_not_found(doctor, small_ct_study, script):
    run = services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)
    assert api_client(doctor).get(reverse("postprocessing-run-plot", args=[run.pk, "missing.png"])).status_code == 404


def test_run_list_query_count(doctor, small_ct_study, script, django_assert_max_num_queries):
    for _ in range(3):
        services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)
    with django_assert_max_num_queries(8):
        body = api_client(doctor).get(reverse("study-postprocessing-runs", args=[small_ct_study.pk])).json()
    assert len(body["results"]) == 3


def test_the_celery_task_executes_a_queued_run_once(doctor, small_ct_study, script, segmentation):
    from diagnosis.tasks import postprocessing_run_task

    run = services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)
    assert postprocessing_run_task.apply(args=(run.pk,)).get() == "succeeded"
    # A redelivered message finds the run finished and leaves it as it is.
    assert postprocessing_run_task.apply(args=(run.pk,)).get() == "succeeded"
    run.refresh_from_db()
    assert run.attempts == 1 and run.segmentation_id == segmentation.pk


def test_study_page_form_is_for_doctors_only(annotator, small_ct_study, script):
    response = _browser(annotator).post(reverse("diagnosis:postprocessing-run-start", args=[small_ct_study.pk]),
                                        {"script": script.pk})
    assert response.status_code == 403
    assert not PostProcessingRun.objects.exists()


def test_sweeper_fails_a_run_whose_whole_worker_died_and_publishes_an_unpublished_one(doctor, small_ct_study, script):
    from datetime import timedelta

    from django.utils import timezone

    stuck = services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)
    PostProcessingRun.objects.filter(pk=stuck.pk).update(status="running",
                                                         started_at=timezone.now() - timedelta(hours=1))
    fresh = services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)
    PostProcessingRun.objects.filter(pk=fresh.pk).update(status="running", started_at=timezone.now())
    unpublished = services.postprocessing_run_create(user=doctor, script=script, study=small_ct_study, enqueue=False)

    assert services.postprocessing_runs_sweep(republish_after_s=3600) == {"failed": [stuck.pk], "republished": []}
    result = services.postprocessing_runs_sweep(republish_after_s=0)
    assert result == {"failed": [], "republished": [unpublished.pk]}

    stuck.refresh_from_db(), fresh.refresh_from_db(), unpublished.refresh_from_db()
    assert (stuck.status, stuck.error_code) == ("failed", "worker_lost") and "silent" in stuck.error_message
    assert fresh.status == "running"
    assert unpublished.status == "queued" and unpublished.published_at is not None
