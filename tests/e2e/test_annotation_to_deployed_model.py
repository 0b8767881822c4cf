"""Issue 18's "done when", in a real browser against the real worker: hippocampus cases imported with
their segmentations, approved by a doctor in the workbench, a dataset built and a network trained from
the datasets page with its live chart, the model card read, the model deployed by the hospital
administrator as its organ's default, one-click on an unseen case with the uncertainty heat overlay
shown in NiiVue, and the model exported to ONNX from its card (checked with onnx.checker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import REPO_DIR, shared_data
from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRAINING_CASES = ["hippocampus_019", "hippocampus_024", "hippocampus_025"]
UNSEEN_CASE = "hippocampus_033"

SEED = """
import json
import numpy as np
from annotation import services
from annotation.imaging.formats import read_volume
from annotation.models import Segmentation
from portal.models import Hospital, Role, User
from portal.services import user_create

root, tag, password = {root!r}, {tag!r}, {password!r}
hospital = Hospital.objects.get(code="demo")
doctor, annotator = User.objects.get(username="doctor"), User.objects.get(username="annotator")
admin = user_create(username=f"hadmin-{{tag}}", password=password, role=Role.HOSPITAL_ADMIN, hospital=hospital)
label_set = services.label_set_create(user=annotator, hospital=hospital, name=f"e2e-{{tag}}", labels=[
    {{"index": 1, "name": "anterior", "color": "#ff0000"}}, {{"index": 2, "name": "posterior", "color": "#00ff00"}}])
submitted = []
for n, case in enumerate({cases!r}):
    study = services.study_import(user=doctor, hospital=hospital, patient_mrn=f"DM-{{tag}}-{{n}}",
                                  paths=[f"{{root}}/imagesTr/{{case}}.nii.gz"], modality="MR").studies[0]
    series = study.series.get()
    [blank] = services.segmentation_create_from_label_set(user=annotator, series=series, label_set=label_set)
    label_map = np.asarray(read_volume(f"{{root}}/labelsTr/{{case}}.nii.gz").array).astype(np.uint8)
    version = services.segmentation_create(series=series, label_map=label_map, label_table=blank.label_table,
                                           name=blank.name, source=Segmentation.Source.MANUAL, user=annotator,
                                           parent=blank, tool="editor")
    services.segmentation_review(user=annotator, segmentation=version, decision="submit")
    submitted.append({{"study": study.pk, "segmentation": version.pk}})
unseen = services.study_import(user=doctor, hospital=hospital, patient_mrn=f"DM-{{tag}}-unseen",
                               paths=[f"{{root}}/imagesTr/{unseen}.nii.gz"], modality="MR").studies[0]
print(json.dumps({{"submitted": submitted, "unseen_study": unseen.pk, "label_set": label_set.pk,
                  "admin": admin.username}}))
"""


def _login(page, base, username, password):
    page.context.clear_cookies()
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_load_state("networkidle")


def _open_viewer(page, url):
    page.goto(url)
    wait_for_js(page, "window.yixinViewer && window.yixinViewer.nv", timeout=60_000)
    page.wait_for_selector("#viewer-loading", state="hidden", timeout=120_000)


def test_from_annotation_to_a_deployed_model_with_its_uncertainty_and_onnx_export(portal_server, browser_page,
                                                                                   tmp_path):
    onnx = pytest.importorskip("onnx")
    tag = uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", YIXIN_VAR_DIR=str(portal_server["logs"]),
               S3_BUCKET="yixin-e2e", DATABASE_URL=portal_server["database_url"], REDIS_URL=portal_server["redis_url"],
               CELERY_TASK_DEFAULT_QUEUE=portal_server["celery_queue"])
    seed = SEED.format(root=str(shared_data("msd_task04_hippocampus")), tag=tag, password=portal_server["password"],
                       cases=TRAINING_CASES, unseen=UNSEEN_CASE)
    seeded = subprocess.run([sys.executable, str(REPO_DIR / "manage.py"), "shell", "-c", seed],
                            env=env, cwd=REPO_DIR, capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    ids = json.loads(seeded.stdout.strip().splitlines()[-1])
    page, base, password = browser_page, portal_server["url"], portal_server["password"]

    # 1. The doctor approves each submitted segmentation in the study's workbench.
    _login(page, base, "doctor", password)
    for item in ids["submitted"]:
        _open_viewer(page, f"{base}/studies/{item['study']}/")
        wait_for_js(page, f"window.yixinViewer.page.activeSegmentationId === {item['segmentation']}", timeout=60_000)
        page.click("#wb-approve")
        wait_for_js(page, f"fetch('/api/studies/{item['study']}/review/').then((r) => r.json()).then((b) => "
                          f"b.comments.some((c) => c.segmentation === {item['segmentation']} "
                          "&& c.decision === 'approve'))", timeout=30_000)

    # 2. ...builds a dataset from them on the datasets page...
    page.goto(f"{base}/studies/datasets/")
    build = page.locator("#training-dataset-build")
    build.locator('input[name="name"]').fill(f"hippo-{tag}")
    build.locator('select[name="label_set"]').select_option(str(ids["label_set"]))
    build.locator("button").click()
    page.wait_for_load_state("networkidle")
    row = page.locator(f'#training-dataset-list tr[data-dataset="hippo-{tag}"]')
    assert row.locator("td").nth(3).inner_text().strip() == "3"

    # 3. ...and trains a network there, following the epochs on the live chart.
    form = row.locator("form.training-run-form")
    form.locator('select[name="architecture"]').select_option("unet")
    form.locator('input[name="epochs"]').fill("2")
    form.locator("button").click()
    page.wait_for_url(f"{base}/studies/training-runs/*/")
    wait_for_js(page, "document.getElementById('training-run').dataset.status === 'succeeded'", timeout=600_000)
    assert page.locator("#training-run-epochs").inner_text() == "2 / 2"
    chart = page.locator("#training-run-chart")
    assert chart.get_attribute("data-epochs") == "2" and page.evaluate(
        "document.getElementById('training-run-chart').width") > 0
    model_name = f"hippo-{tag}-unet"  # the dataset's name and the network
    assert model_name in page.locator("#training-run-model-link").inner_text()

    # 4. The model card: its training data, network and validation Dice.
    page.goto(f"{base}/studies/models/")
    page.locator(f'#model-list tr[data-model="{model_name}"] a.model-card-link').click()
    page.wait_for_url(f"{base}/studies/models/*/")
    card_url = page.url
    assert f"hippo-{tag}" in page.locator("#card-training-data").inner_text()
    assert page.locator("#card-provenance p").get_attribute("data-source") == "training_run"
    assert page.locator("#model-deploy-form").count() == 0  # deploying is the administrator's

    # 5. The hospital administrator deploys it: the default model for its organ.
    _login(page, base, ids["admin"], password)
    page.goto(card_url)
    page.click("#model-deploy-form button")
    page.wait_for_url(f"{base}/studies/models/")
    default_row = page.locator(f'#organ-defaults tr[data-body-part="e2e-{tag}"]')
    assert model_name in default_row.inner_text()

    # 6. The doctor runs it with one click on a case it never saw and turns on the uncertainty heat map.
    _login(page, base, "doctor", password)
    _open_viewer(page, f"{base}/studies/{ids['unseen_study']}/")
    model_id = card_url.rstrip("/").rsplit("/", 1)[-1]
    assert page.locator(f'#model-select option[value="{model_id}"]').count() == 1  # offered for this MR series
    page.select_option("#model-select", value=model_id)
    page.click("#start-segmentation")
    page.wait_for_selector('#run-progress[data-status="succeeded"]', timeout=300_000)
    wait_for_js(page, "document.body.dataset.overlayLoaded", timeout=120_000)
    page.wait_for_selector("#uncertainty-toggle-wrap", state="visible", timeout=60_000)
    volumes_before = page.evaluate("window.yixinViewer.nv.volumes.length")
    before = page.locator("#viewer-canvas").screenshot()
    page.check("#uncertainty-toggle")
    # The heat layer is the viewer's own NVImage, added to NiiVue's volumes above the image and labels.
    heat_loaded = ("(() => { const v = window.yixinViewer.page.viewer.heatmap;"
                   " return Boolean(v) && window.yixinViewer.nv.volumes.includes(v); })()")
    wait_for_js(page, heat_loaded, timeout=60_000)
    heat = page.evaluate("(() => { const v = window.yixinViewer.page.viewer.heatmap; const nv = window.yixinViewer.nv;"
                         " return {opacity: v.opacity, n: nv.volumes.length, last: nv.volumes.indexOf(v),"
                         " max: v.img.reduce((a, b) => (a > b ? a : b), 0)}; })()")
    assert heat["n"] == volumes_before + 1 and heat["last"] == heat["n"] - 1
    assert heat["opacity"] > 0 and heat["max"] > 0  # visible, and the network was unsure somewhere
    page.wait_for_timeout(500)  # one more frame of the software renderer
    after = page.locator("#viewer-canvas").screenshot()
    assert after != before, "the heat overlay did not change the rendered image"
    page.uncheck("#uncertainty-toggle")
    wait_for_js(page, f"window.yixinViewer.nv.volumes.length === {volumes_before}", timeout=30_000)

    # 7. The doctor exports the model to ONNX from its card.
    page.goto(card_url)
    with page.expect_download(timeout=120_000) as download_info:
        page.click("#model-export-onnx")
    path = tmp_path / "model.onnx"
    download_info.value.save_as(path)
    onnx.checker.check_model(str(path))
    graph_input = onnx.load(str(path)).graph.input[0]
    assert len(graph_input.type.tensor_type.shape.dim) == 5  # (N, 1, k, j, i)
