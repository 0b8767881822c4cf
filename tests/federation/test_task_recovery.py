"""Federated tasks never hang: a runner killed mid-task (its worker lost) leaves Flower orphans and a
"running" task; the sweeper kills the orphans and queues the task, and the next runner resumes after
the last completed round. A task whose runners keep dying fails with the reason; a redelivered
message never starts a second runner beside a live one."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

from federation import services
from federation.models import FederatedTask
from tests.annotation.test_run_recovery import _database_url
from tests.federation.conftest import coordinator_status, start_runner, wait_for

REPO_DIR = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _runner_process(task, port: int, federation_settings, log: Path) -> subprocess.Popen:
    """``task_execute`` in its own process, as a Celery worker would run it (so that it can be killed)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", DATABASE_URL=_database_url(), PYTHONUNBUFFERED="1",
               FEDERATION_DIR=str(federation_settings.FEDERATION_DIR),
               FEDERATION_DATASETS_ROOT=str(federation_settings.FEDERATION_DATASETS_ROOT),
               FEDERATION_THREADS_PER_CLIENT="1", RUNS_HEARTBEAT_INTERVAL_S="0.5", TORCH_NUM_THREADS="1")
    script = ("import django; django.setup(); from federation.services import task_execute; "
              f"task_execute(task_id={task.pk}, port={port}, round_timeout_s=25, poll_s=0.5)")
    return subprocess.Popen([sys.executable, "-c", script], cwd=REPO_DIR, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_runner_is_swept_its_orphans_killed_and_the_task_resumed_after_its_last_round(
    hippocampus_split, federation_settings, free_port, tmp_path
):
    task = services.task_create_local(
        data_dirs=list(hippocampus_split.hospitals)[:2], rounds=2, local_epochs=1, strategy="fedavg", min_clients=2,
    )
    services.task_start(task=task, user=None, enqueue=False)
    outbox = services.task_dir(task) / "outbox"
    runner = _runner_process(task, free_port, federation_settings, tmp_path / "runner.log")
    try:
        wait_for(lambda: coordinator_status(outbox).get("round") == 1
                 and coordinator_status(outbox).get("state") == "training", 180, "round 1 training")
        records = sorted(services.task_dir(task).glob("run-*/pids.json"))
        assert records, "the runner records its Flower process groups"
        flower_pids = list(json.loads(records[-1].read_text()).values())
        assert flower_pids and all(_alive(pid) for pid in flower_pids)
        task.refresh_from_db()
        assert task.status == FederatedTask.Status.RUNNING and task.attempts == 1 and task.heartbeat_at is not None

        # The worker is lost: only the runner dies; its Flower processes (own sessions) live on as orphans.
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=30)
        time.sleep(1.0)
        assert all(_alive(pid) for pid in flower_pids)
        task.refresh_from_db()
        assert task.status == FederatedTask.Status.RUNNING  # stuck, until the sweeper looks

        swept = services.federated_tasks_sweep(stale_after_s=0.5, enqueue=False)
        assert swept.requeued == [task.pk] and not swept.failed
        assert set(flower_pids) <= set(swept.killed_pids)
        wait_for(lambda: not any(_alive(pid) for pid in flower_pids), 30, "the orphaned Flower processes to die")
        task.refresh_from_db()
        assert task.status == FederatedTask.Status.QUEUED
        assert "no heartbeat" in task.error and "attempt 2 of" in task.error
        completed_before = task.current_round

        # The next runner (the requeued Celery message) resumes after the last completed round.
        events: list = []
        resumed = start_runner(task, free_port, events)
        resumed.join(timeout=600)
        assert not resumed.is_alive()
        task.refresh_from_db()
        assert task.status == FederatedTask.Status.COMPLETED, task.error
        assert task.attempts == 2 and task.current_round == 2 and task.error == ""
        assert sorted(r.round_number for r in task.round_set.all()) == [1, 2]
        # The new runner stored only the rounds after the last one completed before the loss.
        assert [d["round_number"] for k, d in events if k == "round"] == list(range(completed_before + 1, 3))
        assert services.ledger_verify(task=task)["ok"]
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
        services.orphans_kill(task=task)


@pytest.mark.django_db
def test_a_task_whose_runners_keep_dying_fails_with_the_reason(hippocampus_split, federation_settings, settings):
    task = services.task_create_local(data_dirs=list(hippocampus_split.hospitals)[:2], rounds=2, local_epochs=1,
                                      strategy="fedavg", min_clients=2)
    services.task_start(task=task, user=None, enqueue=False)
    for attempt in range(1, settings.RUNS_MAX_ATTEMPTS + 1):
        claimed = services.task_claim(task_id=task.pk)
        assert claimed is not None and claimed.attempts == attempt
        FederatedTask.objects.filter(pk=task.pk).update(heartbeat_at=timezone.now() - dt.timedelta(hours=1))
        swept = services.federated_tasks_sweep(enqueue=False)
        task.refresh_from_db()
        if attempt < settings.RUNS_MAX_ATTEMPTS:
            assert swept.requeued == [task.pk] and task.status == FederatedTask.Status.QUEUED
    assert swept.failed == [task.pk]
    assert task.status == FederatedTask.Status.FAILED
    assert "no heartbeat from the runner" in task.error and f"gave up after {settings.RUNS_MAX_ATTEMPTS} attempts" in task.error


@pytest.mark.django_db
def test_a_live_runner_is_left_alone_and_a_redelivered_message_starts_nothing(hippocampus_split, federation_settings):
    task = services.task_create_local(data_dirs=list(hippocampus_split.hospitals)[:2], rounds=2, local_epochs=1,
                                      strategy="fedavg", min_clients=2)
    services.task_start(task=task, user=None, enqueue=False)
    assert services.task_claim(task_id=task.pk) is not None
    # The same message delivered again (visibility timeout, a requeue) finds the task running.
    assert services.task_claim(task_id=task.pk) is None
    again = services.task_execute(task_id=task.pk, port=1)  # returns at once: nothing is started on port 1
    assert again.status == FederatedTask.Status.RUNNING and again.attempts == 1
    swept = services.federated_tasks_sweep(enqueue=False)  # its heartbeat is fresh
    assert not swept.requeued and not swept.failed
    task.refresh_from_db()
    assert task.status == FederatedTask.Status.RUNNING
    # Paused, cancelled or finished tasks are never claimed.
    services.task_pause(task=task, user=None)
    assert services.task_claim(task_id=task.pk) is None
