"""The federated task page in a browser: a real two-hospital run (Flower processes, TLS) updates the
open page live over the websocket — status, per-round chart, client states, reputation-free FedAvg
participation and contribution credits — in Chinese."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_DIR, shared_data
from tests.e2e.test_followup import login

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _portal_env(portal_server) -> dict:
    # The same database, object storage bucket and Redis (channel layer) as the running portal.
    workdir = portal_server["logs"]
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", YIXIN_VAR_DIR=str(workdir), S3_BUCKET="yixin-e2e",
               DATABASE_URL=portal_server["database_url"], REDIS_URL=portal_server["redis_url"],
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
        page.wait_for_function("document.getElementById('task-status').textContent.includes('已完成')", timeout=240_000)
        page.wait_for_function("document.querySelector('#clients tbody tr .participation').textContent === '2 / 2'",
                               timeout=30_000)
        rows = page.locator("#clients tbody tr")
        assert rows.count() == 2
        assert rows.first.locator(".state").inner_text() == "已应答"
        shares = [float(r.replace("%", "").strip()) for r in page.locator("#clients .credit").all_inner_texts()]
        assert sum(shares) == pytest.approx(100.0, abs=0.2) and shares[0] > shares[1]  # 4 cases vs 3
        assert "ledger verified" in page.locator("#ledger-state").inner_text()
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
