"""Real processes are killed mid-task: a hospital's SuperNode during a round, then the coordinator."""

import os
import signal

import pytest

from federation import services
from federation.models import ClientUpdate, FederatedTask
from tests.federation.conftest import coordinator_status, start_runner, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_round_survives_a_killed_client_which_rejoins_and_a_killed_coordinator_resumes(
    hippocampus_split, federation_settings, free_port
):
    task = services.task_create_local(
        data_dirs=list(hippocampus_split.hospitals), rounds=3, local_epochs=1, strategy="fedavg", min_clients=2,
    )
    services.task_start(task=task, user=None, enqueue=False)
    outbox = services.task_dir(task) / "outbox"
    events = []
    runner = start_runner(task, free_port, events)

    # Round 1 in progress: crash hospital 3 (its SuperNode and ClientApp processes).
    wait_for(lambda: coordinator_status(outbox).get("state") == "training" and coordinator_status(outbox).get("round") == 1, 120, "round 1")
    started = [d for k, d in events if k == "started"][-1]
    os.killpg(started["supernode_pids"]["fedsite-3"], signal.SIGKILL)

    # Round 3 in progress: crash the coordinator (SuperLink and the ServerApp it runs).
    wait_for(lambda: coordinator_status(outbox).get("state") == "training" and coordinator_status(outbox).get("round") == 3, 480, "round 3")
    started = [d for k, d in events if k == "started"][-1]
    os.killpg(started["superlink_pid"], signal.SIGKILL)

    runner.join(timeout=480)
    assert not runner.is_alive()
    task.refresh_from_db()
    assert task.status == FederatedTask.Status.COMPLETED, task.error
    assert task.current_round == 3

    status = {
        (u.round.round_number, u.participant.client_id): u.status
        for u in ClientUpdate.objects.filter(round__task=task).select_related("round", "participant")
    }
    # Round 1 completed with the two hospitals that answered; the crashed one is marked absent.
    assert status[(1, "fedsite-1")] == status[(1, "fedsite-2")] == "answered"
    assert status[(1, "fedsite-3")] == "absent"
    # It rejoined (a new SuperNode with the same key) as soon as round 1 had ended, before round 3 began,
    # and answered again later: in round 2 when its SuperNode was back before that round sampled, else in 3.
    rejoin = next(i for i, (k, d) in enumerate(events) if k == "rejoin" and d["client"] == "fedsite-3")
    assert rejoin < next(i for i, (k, d) in enumerate(events) if k == "round" and d["round_number"] == 2)
    assert "answered" in {status.get((2, "fedsite-3")), status.get((3, "fedsite-3"))}
    # The coordinator restarted once, from the last completed round (2), not from scratch.
    restarts = [d for k, d in events if k == "restart"]
    assert restarts and restarts[0]["after_round"] == 2
    assert sorted(r.round_number for r in task.round_set.all()) == [1, 2, 3]
    assert services.ledger_verify(task=task)["ok"]
