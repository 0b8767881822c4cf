"""Train in the portal through the browser (issue 18): a doctor starts a training run from the
datasets page and the run page follows the real Celery worker's epochs over the websocket until the
trained model is registered."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import REPO_DIR, shared_data
from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = """
import numpy as np
from annotation import services
from annotation.imaging.formats import read_volume
from annotation.models import Segmentation
from portal.models import Hospital, User

root, tag = {root!r}, {tag!r}
hospital = Hospital.objects.get(code="demo")
doctor, annotator = User.objects.get(username="doctor"), User.objects.get(username="annotator")
label_set = services.label_set_create(user=annotator, hospital=hospital, name=f"e2e-{{tag}}", labels=[
    {{"index": 1, "name": "anterior", "color": "#ff0000"}}, {{"index": 2, "name": "posterior", "color": "#00ff00"}}])
for n, case in enumerate(["hippocampus_019", "hippocampus_024", "hippocampus_025"]):
    series = services.study_import(user=doctor, hospital=hospital, patient_mrn=f"TR-{{tag}}-{{n}}",
                                   paths=[f"{{root}}/imagesTr/{{case}}.nii.gz"], modality="MR").series[0]
    [blank] = services.segmentation_create_from_label_set(user=annotator, series=series, label_set=label_set)
    label_map = np.asarray(read_volume(f"{{root}}/labelsTr/{{case}}.nii.gz").array).astype(np.uint8)
    version = services.segmentation_create(series=series, label_map=label_map, label_table=blank.label_table,
                                           name=blank.name, source=Segmentation.Source.MANUAL, user=annotator,
                                           parent=blank, tool="editor")
    services.segmentation_review(user=annotator, segmentation=version, decision="submit")
    services.segmentation_review(user=doctor, segmentation=version, decision="approve")
dataset = services.training_dataset_build(hospital=hospital, name=f"e2e-{{tag}}", label_set=label_set, user=annotator)
print(dataset.pk)
"""


def test_a_doctor_trains_from_the_datasets_page_and_watches_the_epochs_live(portal_server, browser_page):
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", YIXIN_VAR_DIR=str(portal_server["logs"]),
               S3_BUCKET="yixin-e2e", DATABASE_URL=portal_server["database_url"], REDIS_URL=portal_server["redis_url"],
               CELERY_TASK_DEFAULT_QUEUE=portal_server["celery_queue"])
    seeded = subprocess.run(
        [sys.executable, str(REPO_DIR / "manage.py"), "shell", "-c",
         SEED.format(root=str(shared_data("msd_task04_hippocampus")), tag=tag)],
        env=env, cwd=REPO_DIR, capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    dataset_id = int(seeded.stdout.strip().splitlines()[-1])

    page, base = browser_page, portal_server["url"]
    page.goto(f"{base}/login/")
    page.fill("#id_username", "doctor")
    page.fill("#id_password", portal_server["password"])
    page.click("#login-submit")
    page.wait_for_load_state("networkidle")
    page.goto(f"{base}/studies/datasets/")
    form = page.locator(f'form.training-run-form[data-dataset-id="{dataset_id}"]')
    form.locator('select[name="architecture"]').select_option("unet")
    form.locator('input[name="epochs"]').fill("2")
    form.locator("button").click()
    page.wait_for_url(f"{base}/studies/training-runs/*/")

    # The page re-reads the run only when its socket opens: the end arrives as a socket event.
    wait_for_js(page, "document.getElementById('training-run').dataset.status === 'succeeded'", timeout=300_000)
    assert page.locator("#training-run-epochs").inner_text() == "2 / 2"
    link = page.locator("#training-run-model-link")
    assert link.is_visible() and link.get_attribute("href").endswith("/bundle.zip") and f"e2e-{tag}-unet" in link.inner_text()
    assert page.locator("#training-run-cancel").is_hidden() and page.locator("#training-run-error").is_hidden()
    body = page.evaluate("fetch(JSON.parse(document.getElementById('training-run-config').textContent).api_url)"
                         ".then((r) => r.json())")
    assert [e["epoch"] for e in body["epochs"]] == [1, 2] and body["split"]["val_patients"] == 1
    assert page.evaluate("document.getElementById('training-run-chart').width") > 0
