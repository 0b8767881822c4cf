"""The federated task page in a browser: a real two-hospital run (Flower processes, TLS) updates the
open page live over the websocket — status, per-round chart, client states, reputation-free FedAvg
participation and contribution credits — in Chinese; and a doctor creates a task with the page's form."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_DIR, shared_data
from tests.e2e.conftest import wait_for_js
from tests.e2e.test_followup import login

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _portal_env(portal_server) -> dict:
    # The same database, object storage bucket and Redis (channel layer) as the running portal.
    workdir = portal_server["logs"]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", YIXIN_VAR_DIR=str(workdir), S3_BUCKET="yixin-e2e",
               DATABASE_URL=portal_server["database_url"], REDIS_URL=portal_server["redis_url"],
               CELERY_TASK_DEFAULT_QUEUE=portal_server["celery_queue"],
               FEDERATION_THREADS_PER_CLIENT="1")
    return env


def test_live_task_page_follows_a_real_run(portal_server, browser_page, tmp_path):
    from federation.fl.data import split_non_iid

    split = split_non_iid(shared_data("msd_task04_hippocampus"), tmp_path / "split", sizes=[4, 3], held_out=3)
    env = _portal_env(portal_server)
    run = subprocess.Popen(
        [sys.executable, str(REPO_DIR / "manage.py"), "federated_run", "--data", *map(str, split.hospitals),
         "--rounds", "2", "--local-epochs", "1", "--validation", str(split.held_out), "--json"],
        env=env, cwd=REPO_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        task_id = None
        deadline = time.monotonic() + 120
        while task_id is None and time.monotonic() < deadline:
            probe = subprocess.run(
                [sys.executable, str(REPO_DIR / "manage.py"), "shell", "-c",
                 "from federation.models import FederatedTask as T; t = T.objects.order_by('-pk').first(); print(t.pk if t else '')"],
                env=env, cwd=REPO_DIR, capture_output=True, text=True)
            lines = probe.stdout.strip().splitlines()
            task_id = int(lines[-1]) if lines and lines[-1].isdigit() else None
            if task_id is None and run.poll() is not None:
                break
            time.sleep(1)
        if task_id is None:
            run.kill()
            out, err = run.communicate()
            pytest.fail(f"federated_run did not create its task: {probe.stdout[-500:]} {probe.stderr[-1500:]} {err[-3000:]}")

        page = browser_page
        base = portal_server["url"]
        login(page, base, "admin", portal_server["password"])
        page.goto(f"{base}/federation/tasks/{task_id}/")
        assert "安全聚合（SecAgg+）与 RTIFed 信誉机制互斥" in page.content()
        # Live: the page was opened before the rounds finished and follows them without a reload.
        wait_for_js(page, "document.getElementById('task-status').textContent.includes('已完成')", timeout=240_000)
        wait_for_js(page, "document.querySelector('#clients tbody tr .participation').textContent === '2 / 2'",
                               timeout=30_000)
        rows = page.locator("#clients tbody tr")
        assert rows.count() == 2
        assert rows.first.locator(".state").inner_text() == "已应答"
        shares = [float(r.replace("%", "").strip()) for r in page.locator("#clients .credit").all_inner_texts()]
        assert sum(shares) == pytest.approx(100.0, abs=0.2) and shares[0] > shares[1]  # 4 cases vs 3
        assert "账本校验通过" in page.locator("#ledger-state").inner_text()  # the script's string, from /jsi18n/
        # Chart.js drew both charts (a blank canvas encodes to a short PNG).
        for canvas in ("chart-loss", "chart-dice"):
            assert page.evaluate(f"() => document.getElementById('{canvas}').toDataURL().length") > 5000
    finally:
        if run.poll() is None:
            run.wait(timeout=300)
    out, err = run.communicate()
    assert run.returncode == 0, err[-3000:]
    result = json.loads(out)
    assert result["task_id"] == task_id and len(result["rounds"]) == 2 and result["model_id"]


def _portal_python(portal_server, code: str):
    """Run Python in a ``manage.py shell`` against the running portal's database; return its last line as JSON."""
    result = subprocess.run([sys.executable, str(REPO_DIR / "manage.py"), "shell", "-c", code],
                            env=_portal_env(portal_server), cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


_TASKS_NAMED = """
import json
from federation.models import FederatedTask
print(json.dumps([
    {"strategy": t.strategy, "architecture": t.architecture, "rounds": t.rounds, "local_epochs": t.local_epochs,
     "min_clients": t.min_clients, "secure_aggregation": t.secure_aggregation,
     "differential_privacy": t.differential_privacy, "dp": [t.dp_clipping_norm, t.dp_epsilon, t.dp_delta],
     "label_table": t.label_table, "validation_dir": t.validation_dir,
     "created_by": t.created_by.username, "owner": t.owner_hospital.code,
     "participants": {p.hospital.code: [p.status, p.datasets, p.label_statistics.get("cases")]
                      for p in t.participants.all()}}
    for t in FederatedTask.objects.filter(name=%r)]))
"""


def test_doctor_creates_a_task_with_the_form(portal_server, browser_page, tmp_path):
    from federation.fl.data import split_non_iid

    # The demo hospital holds a training set and a held-out set; a second hospital exists to be invited.
    split = split_non_iid(shared_data("msd_task04_hippocampus"), tmp_path / "split", sizes=[3], held_out=2)
    setup = _portal_python(portal_server, """
import json
from federation.services import dataset_root
from portal.models import Hospital
from portal.services import hospital_create
Hospital.objects.filter(code="e2e-partner").exists() or hospital_create(code="e2e-partner", name="协作医院 E2E Partner")
print(json.dumps({"root": str(dataset_root(Hospital.objects.get(code="demo")))}))
""")
    root = Path(setup["root"])
    root.mkdir(parents=True, exist_ok=True)
    for name, source in (("hippo", split.hospitals[0]), ("hippo-val", split.held_out)):
        if not (root / name).exists():
            (root / name).symlink_to(source)

    page = browser_page
    base = portal_server["url"]
    login(page, base, "doctor", portal_server["password"])
    page.goto(f"{base}/federation/")
    assert "新建联邦任务" in page.content()
    form = page.locator("#task-create-form")
    form.locator("#task-name").fill("海马体联邦（表单）")
    form.locator("#task-architecture").select_option("segresnet")
    form.locator("#label-rows .label-name").first.fill("海马体前部")
    form.locator("#label-add").click()
    assert form.locator("#label-rows .label-index").nth(1).input_value() == "2"
    form.locator("#label-rows .label-name").nth(1).fill("海马体后部")
    form.locator("#task-rounds").fill("2")
    form.locator("#task-local-epochs").fill("1")
    form.locator("#task-min-clients").fill("2")
    form.locator("#task-strategy").select_option("fedavg")
    assert form.locator("#dp-params").is_hidden()
    form.locator("#task-dp").check()
    form.locator("#task-dp-clipping-norm").fill("0.5")
    form.locator("#task-dp-epsilon").fill("4")
    form.locator("#task-dp-delta").fill("0.00001")
    form.locator("#task-dataset").select_option("hippo")
    form.locator("#task-validation-dataset").select_option("hippo-val")
    form.locator('#invite-list input[value="e2e-partner"]').check()
    form.locator("#task-create-submit").click()
    page.wait_for_url(re.compile(r".*/federation/tasks/\d+/$"))
    assert page.locator("h1").inner_text().startswith("海马体联邦（表单）")

    [task] = _portal_python(portal_server, _TASKS_NAMED % "海马体联邦（表单）")
    assert task == {
        "strategy": "fedavg", "architecture": "segresnet", "rounds": 2, "local_epochs": 1, "min_clients": 2,
        "secure_aggregation": False, "differential_privacy": True, "dp": [0.5, 4.0, 1e-5],
        "label_table": [{"index": 1, "name": "海马体前部"}, {"index": 2, "name": "海马体后部"}],
        "validation_dir": str(root / "hippo-val"), "created_by": "doctor", "owner": "demo",
        "participants": {"demo": ["accepted", ["hippo"], 3], "e2e-partner": ["invited", [], None]},
    }

    # RTIFed and secure aggregation exclude each other in the form ...
    page.goto(f"{base}/federation/")
    secagg = form.locator("#task-secure-aggregation")
    form.locator("#task-strategy").select_option("rtifed")
    assert secagg.is_disabled()
    form.locator("#task-strategy").select_option("fedavg")
    secagg.check()
    assert form.locator('#task-strategy option[value="rtifed"]').is_disabled()
    # ... and on the server, whose refusal the form shows in Chinese.
    form.locator("#task-name").fill("互斥任务")
    form.locator("#label-rows .label-name").first.fill("海马体")
    form.locator("#task-min-clients").fill("3")
    page.evaluate("""() => {
        const strategy = document.getElementById('task-strategy');
        strategy.querySelector('option[value="rtifed"]').disabled = false;
        strategy.value = 'rtifed';
    }""")
    form.locator("#task-create-submit").click()
    page.wait_for_selector("#task-create-error:not([hidden])")
    assert "安全聚合（SecAgg+）与 RTIFed 信誉机制互斥" in page.locator("#task-create-error").inner_text()

    # An invalid form: the API's error appears next to the field in Chinese and the values stay.
    page.goto(f"{base}/federation/")
    form.locator("#task-name").fill("无效任务")
    form.locator("#label-rows .label-name").first.fill("海马体")
    form.locator("#task-rounds").fill("51")
    form.locator("#task-create-submit").click()
    page.wait_for_selector("#task-create-error:not([hidden])")
    assert "请更正下方标出的内容" in page.locator("#task-create-error").inner_text()
    assert "请确保该值小于或者等于 50" in page.locator('[data-error-for="rounds"]').inner_text()
    assert form.locator("#task-rounds").input_value() == "51" and form.locator("#task-name").input_value() == "无效任务"
    assert page.url.endswith("/federation/")
    assert _portal_python(portal_server, _TASKS_NAMED % "无效任务") == []
    assert _portal_python(portal_server, _TASKS_NAMED % "互斥任务") == []
