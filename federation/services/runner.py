"""The runner: drive a queued task to its end on this machine. It starts the coordinator (SuperLink) and
every accepted hospital's SuperNode, submits the Flower run, ingests each round as it completes,
restarts a SuperNode that died and restarts the coordinator from the last completed round when it
dies, and stops when the task is paused or cancelled meanwhile."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.api_errors import ServiceError

from .. import selectors
from ..models import FederatedTask, Participant
from .lifecycle import _set_status
from .paths import task_dir, task_spec
from .recovery import run_pids_write, task_claim, task_heartbeat
from .rounds import round_ingest, round_restore
from .tasks_invitations import participant_data_dirs, task_keys_ensure

MAX_COORDINATOR_RESTARTS = 3


def _run_config(task: FederatedTask, *, outbox: Path, start_round: int, initial: Path | None, round_timeout_s: float) -> dict:
    from ..fl.flower_app import encode_json

    return {
        "task-id": str(task.pk), "num-rounds": task.rounds, "start-round": start_round, "local-epochs": task.local_epochs,
        "strategy": task.strategy, "mu": float(task.fedprox_mu), "min-clients": task.min_clients,
        "round-timeout-s": float(round_timeout_s), "outbox": str(outbox), "initial-weights": str(initial or ""),
        "validation-dir": task.validation_dir, "spec": encode_json(dataclasses.asdict(task_spec(task))),
        "dp-clipping-norm": float(task.dp_clipping_norm or 0.0) if task.differential_privacy else 0.0,
        "dp-epsilon": float(task.dp_epsilon or 0.0) if task.differential_privacy else 0.0,
        "dp-delta": float(task.dp_delta or 0.0) if task.differential_privacy else 0.0,
        "secure-aggregation": bool(task.secure_aggregation),
        "rejoin-grace-s": float(settings.FEDERATION_REJOIN_GRACE_S),
    }


NODE_STATUS_EVERY_S = 15.0  # how often the runner reads the SuperLink's node list (a ``flwr`` call)


def _node_statuses_store(fed, participants, site_participant_ids) -> None:
    """Store each participant's node status (registered, online, offline) on its row.

    A node the runner started itself is online while its process lives. A site-run node is known only to
    the SuperLink: its node list is read (one ``flwr`` call, so only when a task has such nodes); a failed
    read leaves those rows as they were, and the task page shows the last known status and its time."""
    from ..fl.launcher import FederationError

    statuses = {}
    if site_participant_ids:
        try:
            statuses = fed.node_statuses()
        except FederationError:
            statuses = {}
    now = timezone.now()
    for participant in participants:
        if participant.pk in site_participant_ids:
            node_id = fed.node_ids.get(participant.client_id)
            status = statuses.get(node_id) if node_id is not None else None
        else:
            process = fed.supernodes.get(participant.client_id)
            status = None if process is None else ("online" if process.poll() is None else "offline")
        if status:
            Participant.objects.filter(pk=participant.pk).update(node_status=status[:16], node_status_at=now)


def task_execute(*, task_id: int, port: int | None = None, round_timeout_s: float | None = None,
                 poll_s: float = 1.0, on_event=None) -> FederatedTask:
    """Run a queued task to its end on this machine: start the coordinator and every accepted hospital's
    SuperNode, submit the Flower run, ingest each round as it completes, restart a SuperNode that died
    once the round it was in has ended (it rejoins from the next round) and restart the coordinator from
    the last completed round when it dies.

    Only a queued task is claimed (:func:`.recovery.task_claim`); any other is returned unchanged.
    While it runs, the runner writes its heartbeat and the Flower process ids of each coordinator
    life (``run-*/pids.json``), which the sweeper uses when this runner is lost.

    A task paused or cancelled meanwhile stops its processes. ``on_event(kind, data)`` is called
    with ``("started", {"work_dir", "pids"})``, ``("round", record)``, ``("restart", {...})`` (tests and
    the command line use it).
    """
    from ..fl.ledger import load_private_key
    from ..fl.launcher import FederationError, LocalFederation, free_port

    # Only a queued task is executed, by the runner that moves it to running: a redelivered message
    # finds it running (or finished) and leaves it; a task whose runner was lost is queued again by
    # the sweeper (recovery.federated_tasks_sweep) and resumed here after its last completed round.
    claimed = task_claim(task_id=task_id)
    if claimed is None:
        return FederatedTask.objects.get(pk=task_id)
    task = claimed
    notify = on_event or (lambda kind, data: None)
    paths = task_keys_ensure(task=task)
    coordinator_key = load_private_key(paths.coordinator_signing_key.read_bytes())
    # A hospital that enrolled its own node (federation_node run) trains where its images are; the others
    # have their SuperNode run here over their datasets under FEDERATION_DATASETS_ROOT.
    site_nodes = selectors.site_nodes(task=task)
    participants = [
        p for p in task.participants.select_related("hospital").filter(status=Participant.Status.ACCEPTED)
        if p.datasets or p.pk in site_nodes
    ]
    if any(p.pk in site_nodes for p in participants) and not (port or settings.FEDERATION_PORT):
        # Sites dial the address they were given at enrolment: a port picked at random would strand them.
        with transaction.atomic():
            _set_status(task, FederatedTask.Status.FAILED,
                        error="hospitals run their own nodes: set FEDERATION_PORT (and FEDERATION_SUPERLINK_HOST) "
                              "to the SuperLink address they were given")
        return task
    timeout = float(round_timeout_s or settings.FEDERATION_ROUND_TIMEOUT_S)
    outbox = task_dir(task) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    restarts = 0
    beat_every = float(settings.RUNS_HEARTBEAT_INTERVAL_S)
    last_beat = time.monotonic()

    def ingest_new_rounds() -> None:
        for path in sorted(outbox.glob("round-*.json")):
            number = int(path.stem.split("-")[1])
            if number > task.current_round:
                record = json.loads(path.read_text(encoding="utf-8"))
                round_ingest(task=task, record=record, weights_path=path.with_suffix(".npz"), coordinator_key=coordinator_key)
                notify("round", record)

    while True:
        # One coordinator life: a fresh SuperLink (state database included), resuming after the last stored
        # round — rounds a previous life finished just before it stopped are stored first.
        ingest_new_rounds()
        for stale in ("done.json", "failed.json", "status.json"):
            (outbox / stale).unlink(missing_ok=True)
        work = task_dir(task) / f"run-{int(time.time() * 1000)}"
        fed = LocalFederation(paths=paths, work_dir=work, port=port or settings.FEDERATION_PORT or free_port(),
                              python_path=str(settings.BASE_DIR), threads_per_client=settings.FEDERATION_THREADS_PER_CLIENT,
                              superlink_host=settings.FEDERATION_SUPERLINK_HOST)
        coordinator_died = False
        crashed: dict[str, int] = {}  # client id → the round in progress when its SuperNode was found dead
        try:
            fed.start_superlink()
            for index, participant in enumerate(participants):
                site = site_nodes.get(participant.pk)
                if site is not None:
                    # The site's node dials in by itself; the SuperLink only learns the key it enrolled.
                    key_file = work / "site-keys" / f"{participant.client_id}.pub"
                    key_file.parent.mkdir(parents=True, exist_ok=True)
                    key_file.write_text(site.node_auth_public_key + "\n", encoding="ascii")
                    fed.register(participant.client_id, key_file)
                else:
                    fed.register(participant.client_id)
                    fed.start_supernode(participant.client_id, participant_data_dirs(participant), index)
            start_round = task.current_round + 1
            initial = None
            if task.current_round:
                initial = round_restore(task=task, round_number=task.current_round, dest=work / "resume.npz")
            if start_round <= task.rounds:
                fed.run(_run_config(task, outbox=outbox, start_round=start_round, initial=initial, round_timeout_s=timeout))
            def record_pids() -> None:
                run_pids_write(work, {"superlink": fed.superlink.pid,
                                      **{f"supernode:{c}": p.pid for c, p in fed.supernodes.items()}})

            record_pids()
            notify("started", {"work_dir": str(work), "superlink_pid": fed.superlink.pid,
                               "supernode_pids": {c: p.pid for c, p in fed.supernodes.items()}})
            last_nodes_read = 0.0
            while True:
                if time.monotonic() - last_beat >= beat_every:
                    task_heartbeat(task=task)
                    last_beat = time.monotonic()
                if time.monotonic() - last_nodes_read >= NODE_STATUS_EVERY_S:
                    _node_statuses_store(fed, participants, set(site_nodes))
                    last_nodes_read = time.monotonic()
                ingest_new_rounds()
                task.refresh_from_db(fields=["status", "current_round"])
                if task.status in (FederatedTask.Status.PAUSED, FederatedTask.Status.CANCELLED):
                    return task
                if task.current_round >= task.rounds:
                    break
                # A dead SuperLink first: its orphaned ServerApp may report a failure that is only the crash.
                if fed.superlink.poll() is not None:
                    coordinator_died = True
                    break
                if (outbox / "failed.json").exists():
                    error = json.loads((outbox / "failed.json").read_text()).get("error", "coordinator failed")
                    with transaction.atomic():
                        _set_status(task, FederatedTask.Status.FAILED, error=error[:2000])
                    return task
                for index, participant in enumerate(participants):
                    process = fed.supernodes.get(participant.client_id)
                    current = Participant.objects.filter(pk=participant.pk).values_list("status", flat=True).first()
                    if current == Participant.Status.REVOKED and participant.client_id in fed.node_ids:
                        fed.unregister(participant.client_id)
                        fed.stop_process(process)
                    elif process is not None and process.poll() is not None and current != Participant.Status.REVOKED:
                        # A crashed hospital rejoins: the same key and data, a new SuperNode process, as soon
                        # as the round it left has ended (aggregated without it, once that round timed out).
                        # Restarted at once, it would pick up that round's pending messages without the state
                        # it lost (a SecAgg+ client its keys), and whether it made the round would depend on
                        # how fast it restarts; restarted after a fixed delay, whether it rejoined before the
                        # task ended would depend on how fast the later rounds ran.
                        left_round = crashed.setdefault(participant.client_id, task.current_round + 1)
                        if task.current_round >= left_round:
                            del crashed[participant.client_id]
                            fed.start_supernode(participant.client_id, participant_data_dirs(participant), index)
                            record_pids()
                            notify("rejoin", {"client": participant.client_id,
                                              "pid": fed.supernodes[participant.client_id].pid})
                time.sleep(poll_s)
        except (FederationError, ServiceError) as exc:
            with transaction.atomic():
                _set_status(task, FederatedTask.Status.FAILED, error=str(exc)[:2000])
            return task
        finally:
            fed.stop()
        if not coordinator_died:
            break
        restarts += 1
        notify("restart", {"after_round": task.current_round, "restarts": restarts})
        if restarts > MAX_COORDINATOR_RESTARTS:
            with transaction.atomic():
                _set_status(task, FederatedTask.Status.FAILED, error="the coordinator died too often")
            return task
    with transaction.atomic():
        _set_status(task, FederatedTask.Status.COMPLETED)
    return task


def task_work_dir_cleanup(*, task: FederatedTask) -> None:
    """Remove a finished task's run folders (logs, Flower state); keys and outbox stay."""
    for path in task_dir(task).glob("run-*"):
        shutil.rmtree(path, ignore_errors=True)
