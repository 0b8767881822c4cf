"""Secure aggregation with Flower's SecAgg+ on real hippocampus MRIs and real Flower processes over TLS.

The coordinator only receives masked vectors and unmasks their sum; what it gets must still be the
FedAvg of the hospitals' updates. Training is deterministic (same seeds, one thread per client), so a
plain FedAvg round and a SecAgg+ round from the same start must give the same global model up to
SecAgg+'s quantisation step.
"""

import json
import os
import signal
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from federation import services
from federation.fl.flower_app import load_arrays
from federation.fl.ledger import KIND_CLIENT_UPDATE
from federation.models import ClientUpdate, FederatedTask, LedgerEntry, Round
from tests.federation.conftest import coordinator_status, start_runner, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def _run(hospitals, port, *extra) -> dict:
    out = StringIO()
    call_command("federated_run", "--data", *map(str, hospitals), "--rounds", "1", "--local-epochs", "1",
                 "--no-deploy", "--port", str(port), "--json", *extra, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.slow
def test_secagg_round_gives_the_fedavg_model_and_a_verifiable_ledger(hippocampus_split, federation_settings, free_port, tmp_path):
    plain = _run(hippocampus_split.hospitals, free_port)
    secure = _run(hippocampus_split.hospitals, free_port, "--secure-aggregation")
    task = FederatedTask.objects.get(pk=secure["task_id"])
    assert task.secure_aggregation and task.status == "completed"

    start = services.task_spec(task)
    from federation.fl.local import initial_arrays

    initial = initial_arrays(start, seed=0)
    w_plain = load_arrays(services.round_restore(task=FederatedTask.objects.get(pk=plain["task_id"]), round_number=1,
                                                 dest=tmp_path / "plain.npz"))
    w_secure = load_arrays(services.round_restore(task=task, round_number=1, dest=tmp_path / "secure.npz"))
    moved = max(float(np.abs(p - i).max()) for p, i in zip(w_plain, initial))
    error = max(float(np.abs(p - s).max()) for p, s in zip(w_plain, w_secure))
    # The hospitals trained (the model moved) and SecAgg+ reproduced FedAvg within a few quantisation steps
    # (2·8/2²² ≈ 3.8e-6 per client and weight).
    assert moved > 1e-3
    assert error < 5e-5, f"SecAgg+ differs from FedAvg by {error}"

    # The coordinator saw no single update: each client's entry carries the hash it signed (of its own
    # unmasked update) and is marked masked; the round says which protocol ran.
    round_row = Round.objects.get(task=task, round_number=1)
    info = round_row.details["secure_aggregation"]
    assert info["protocol"] == "SecAgg+" and info["clients_aggregated"] == 3 and info["max_weight"] == 5
    updates = ClientUpdate.objects.filter(round=round_row).select_related("participant")
    assert sorted((u.participant.client_id, u.status, u.num_examples) for u in updates) == [
        ("fedsite-1", "answered", 5), ("fedsite-2", "answered", 4), ("fedsite-3", "answered", 3)]
    plain_hashes = {u.participant.client_id: u.update_sha256 for u in ClientUpdate.objects.filter(round__task_id=plain["task_id"])}
    for u in updates:
        assert len(u.update_sha256) == 64 and u.update_sha256 != plain_hashes[u.participant.client_id]
        assert u.reputation is None and u.shapley is None
    # Ledger: 3 client entries, each signed by its hospital over the hash it committed to (verified with
    # the hospital's stored key by ledger_verify), and the aggregation signed by the coordinator.
    assert secure["ledger"] == {"ok": True, "entries": 4}
    signed = {e.client: e.update_sha256 for e in LedgerEntry.objects.filter(task=task, kind=KIND_CLIENT_UPDATE)}
    assert signed == {u.participant.client_id: u.update_sha256 for u in updates}


def test_secure_aggregation_needs_three_clients(hippocampus_split, federation_settings):
    dirs = list(map(str, hippocampus_split.hospitals))
    with translation.override("en"), pytest.raises(CommandError, match="at least 3 clients"):
        call_command("federated_run", "--data", *dirs[:2], "--rounds", "1", "--secure-aggregation")
    with translation.override("zh-hans"), pytest.raises(CommandError, match="至少需要 3 个客户端"):
        call_command("federated_run", "--data", *dirs, "--min-clients", "2", "--rounds", "1", "--secure-aggregation")
    assert not FederatedTask.objects.exists()


_SURVIVORS_FEDAVG: dict = {}


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before_key_sharing", "while_training"])
def test_secagg_round_survives_a_hospital_killed_mid_round(when, federation_settings, free_port, tmp_path):
    """Four hospitals, at least three per round; hospital 4's SuperNode is killed during round 1, either
    as the round opens (before it shared its keys: it leaves the protocol) or while it trains (after
    sharing its keys: SecAgg+ removes its masks with the Shamir shares its neighbours hold). Either way
    the round completes and its model is the FedAvg of the three survivors."""
    from federation.fl.data import split_non_iid
    from tests.conftest import shared_data

    split = split_non_iid(shared_data("msd_task04_hippocampus"), tmp_path / "split4", sizes=[4, 3, 3, 3], held_out=2)
    task = services.task_create_local(data_dirs=list(split.hospitals), rounds=1, local_epochs=1, strategy="fedavg",
                                      min_clients=3, secure_aggregation=True)
    services.task_start(task=task, user=None, enqueue=False)
    outbox = services.task_dir(task) / "outbox"
    events = []
    runner = start_runner(task, free_port, events)
    wait_for(lambda: coordinator_status(outbox).get("state") == "training", 120, "round 1")
    started = [d for k, d in events if k == "started"][-1]
    if when == "while_training":
        log = Path(started["work_dir"]) / "logs" / "supernode-fedsite-4.log"
        wait_for(lambda: "fedsite-4: training round 1" in log.read_text(errors="replace"), 120, "hospital 4 training")
    os.killpg(started["supernode_pids"]["fedsite-4"], signal.SIGKILL)
    runner.join(timeout=480)
    assert not runner.is_alive()
    task.refresh_from_db()
    assert task.status == FederatedTask.Status.COMPLETED, task.error

    round_row = Round.objects.get(task=task, round_number=1)
    status = {u.participant.client_id: u.status for u in ClientUpdate.objects.filter(round=round_row).select_related("participant")}
    assert status == {"fedsite-1": "answered", "fedsite-2": "answered", "fedsite-3": "answered", "fedsite-4": "absent"}
    assert round_row.details["secure_aggregation"]["clients_aggregated"] == 3
    assert services.ledger_verify(task=task)["ok"]

    if "weights" not in _SURVIVORS_FEDAVG:  # the same for both cases: run it once
        plain = _run(split.hospitals[:3], free_port)
        _SURVIVORS_FEDAVG["weights"] = load_arrays(services.round_restore(
            task=FederatedTask.objects.get(pk=plain["task_id"]), round_number=1, dest=tmp_path / "plain.npz"))
    w_plain = _SURVIVORS_FEDAVG["weights"]
    w_secure = load_arrays(services.round_restore(task=task, round_number=1, dest=tmp_path / "secure.npz"))
    error = max(float(np.abs(p - s).max()) for p, s in zip(w_plain, w_secure))
    assert error < 5e-5, f"SecAgg+ after a dropout differs from the survivors' FedAvg by {error}"
