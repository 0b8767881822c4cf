"""Federated tasks that never hang: claiming a task once, the runner's heartbeat, and the sweeper.

A federated task runs for minutes to hours inside one Celery worker (:func:`.runner.task_execute`),
which starts the Flower processes in sessions of their own. When that worker dies (OOM, a crash, a
host restart) nothing would ever end the task, and its Flower processes would run on as orphans.
Three pieces end every task in a clear state:

- :func:`task_claim`: a runner executes a task only by moving it from queued to running (one
  atomic update that also counts the attempt), so a redelivered Celery message never starts a second
  runner beside a live one;
- :func:`task_heartbeat`: the runner's sign of life, written every ``RUNS_HEARTBEAT_INTERVAL_S`` while
  it polls its processes, and ``pids.json`` in each run folder naming the Flower process groups;
- :func:`federated_tasks_sweep` (Celery beat): a running task silent for ``FEDERATION_STALE_AFTER_S``
  has its orphaned Flower processes killed and is queued again — the next runner resumes after the
  last completed round, as after a pause — or, after ``RUNS_MAX_ATTEMPTS`` executions, fails with the
  reason.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..models import FederatedTask
from .lifecycle import _set_status
from .paths import task_dir

logger = logging.getLogger(__name__)

#: Words one of which a Flower process's command line contains (checked before killing a recorded
#: process group, so that a recycled pid of another program is never killed).
FLOWER_COMMANDS = ("flower-superlink", "flower-supernode", "federation.fl.flower_supernode", "flwr-serverapp", "flwr-clientapp", "flwr", "flower")


def task_claim(*, task_id: int) -> FederatedTask | None:
    """Move a queued task to running for this runner, counting the attempt; None when it is not queued.

    A task already running belongs to a runner that is alive or that the sweeper will declare lost;
    a paused, cancelled or finished task is left as it is.
    """
    now = timezone.now()
    with transaction.atomic():
        task = FederatedTask.objects.select_for_update().filter(pk=task_id).first()
        if task is None or task.status != FederatedTask.Status.QUEUED:
            return None
        task.attempts += 1
        task.heartbeat_at = now
        task.save(update_fields=["attempts", "heartbeat_at", "updated_at"])
        _set_status(task, FederatedTask.Status.RUNNING, error=task.error)
    return task


def task_heartbeat(*, task: FederatedTask, now: datetime | None = None) -> None:
    """Record that the runner of ``task`` is alive (one UPDATE of ``heartbeat_at``)."""
    now = now or timezone.now()
    FederatedTask.objects.filter(pk=task.pk).update(heartbeat_at=now)
    task.heartbeat_at = now


def run_pids_write(work_dir: Path, pids: dict[str, int]) -> None:
    """Record the Flower process groups of one coordinator life (``{name: pid}``; each pid leads its
    own session, so its process group id equals it) in ``work_dir/pids.json``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = work_dir / "pids.json.tmp"
    tmp.write_text(json.dumps(pids), encoding="utf-8")
    tmp.replace(work_dir / "pids.json")


def _is_flower(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return any(word in cmdline for word in FLOWER_COMMANDS)


def orphans_kill(*, task: FederatedTask) -> list[int]:
    """Kill the Flower process groups that earlier runners of ``task`` recorded and left behind.

    Only groups whose leader is still a Flower process are killed (SIGKILL to the whole group).
    Returns the pids of the groups killed.
    """
    killed = []
    for record in sorted(task_dir(task).glob("run-*/pids.json")):
        try:
            pids = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for pid in pids.values():
            if isinstance(pid, int) and pid > 1 and _is_flower(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
                except PermissionError:
                    logger.warning("federated task %s: not allowed to kill process group %s", task.pk, pid)
    return killed


@dataclass
class FederationSweepResult:
    """What one sweep did, as lists of task ids (and the orphaned process groups it killed)."""

    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    killed_pids: list[int] = field(default_factory=list)


def federated_tasks_sweep(
    *, now: datetime | None = None, stale_after_s: float | None = None, enqueue: bool = True
) -> FederationSweepResult:
    """End or resume every running task whose runner has been silent for ``stale_after_s`` seconds.

    Its orphaned Flower processes are killed first. A task with fewer than ``RUNS_MAX_ATTEMPTS``
    executions goes back to queued (and, with ``enqueue``, is published to the worker), so the next
    runner resumes after the last completed round; otherwise it fails with the reason. Both are
    stored in ``error`` and announced to the task's page.
    """
    now = now or timezone.now()
    stale = timedelta(seconds=settings.FEDERATION_STALE_AFTER_S if stale_after_s is None else stale_after_s)
    result = FederationSweepResult()
    silent = FederatedTask.objects.filter(status=FederatedTask.Status.RUNNING).filter(
        Q(heartbeat_at__lt=now - stale) | Q(heartbeat_at__isnull=True, updated_at__lt=now - stale)
    )
    for task_id in list(silent.values_list("pk", flat=True)):
        with transaction.atomic():
            task = FederatedTask.objects.select_for_update().filter(pk=task_id).first()
            if task is None or task.status != FederatedTask.Status.RUNNING:
                continue
            last = task.heartbeat_at or task.updated_at
            if last >= now - stale:
                continue  # it spoke meanwhile
            result.killed_pids += orphans_kill(task=task)
            silent_s = int((now - last).total_seconds())
            reason = f"no heartbeat from the runner for {silent_s} s (its worker was lost)"
            if task.attempts >= settings.RUNS_MAX_ATTEMPTS:
                _set_status(task, FederatedTask.Status.FAILED,
                            error=f"{reason}; gave up after {task.attempts} attempts"[:2000])
                result.failed.append(task.pk)
                logger.warning("federated task %s failed: runner lost %s times", task.pk, task.attempts)
                continue
            _set_status(task, FederatedTask.Status.QUEUED, error=(
                f"{reason}; resuming after round {task.current_round} "
                f"(attempt {task.attempts + 1} of {settings.RUNS_MAX_ATTEMPTS})"
            )[:2000])
            result.requeued.append(task.pk)
            logger.info("federated task %s requeued after a lost runner (round %s)", task.pk, task.current_round)
            if enqueue:
                from ..tasks import federated_task_run

                transaction.on_commit(lambda pk=task.pk: federated_task_run.delay(pk))
    return result
