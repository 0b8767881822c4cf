"""``manage.py federated_run`` on real hippocampus MRIs: real Flower processes over TLS, rounds stored,
the model registered and deployed for one-click segmentation, the ledger verifiable and tamper-evident."""

import json
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from annotation.models import SegmentationModel
from annotation.selectors import segmentation_model_by_name
from federation import services
from federation.models import FederatedTask, LedgerEntry, Round

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_federated_run_trains_registers_deploys_and_the_ledger_catches_edits(
    hippocampus_split, federation_settings, free_port, tmp_path
):
    older = SegmentationModel.objects.create(
        name="hippo-fed", version=1, body_part="brain", modality="MR", architecture="unet",
        label_table=[{"index": 1, "name": "Anterior"}, {"index": 2, "name": "Posterior"}], is_active=True,
    )
    out = StringIO()
    call_command(
        "federated_run", "--data", *map(str, hippocampus_split.hospitals), "--rounds", "2", "--local-epochs", "1",
        "--strategy", "fedprox", "--validation", str(hippocampus_split.held_out), "--model-name", "hippo-fed",
        "--port", str(free_port), "--json", stdout=out,
    )
    result = json.loads(out.getvalue())
    task = FederatedTask.objects.get(pk=result["task_id"])
    assert task.status == "completed" and task.current_round == 2
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    for r in result["rounds"]:
        assert {c: v["status"] for c, v in r["clients"].items()} == {
            "fedsite-1": "answered", "fedsite-2": "answered", "fedsite-3": "answered"
        }
        # Each hospital trained on its own cases only: 5, 4 and 3.
        assert [r["clients"][c]["num_examples"] for c in ("fedsite-1", "fedsite-2", "fedsite-3")] == [5, 4, 3]
        assert 0.0 <= r["metrics"]["val_dice"] <= 1.0 and np.isfinite(r["metrics"]["loss"])
        assert r["timing"]["round_s"] >= r["timing"]["slowest_train_s"] > 0

    # Deployed: one-click picks the federated model, the older version is switched off.
    model = SegmentationModel.objects.get(pk=result["model_id"])
    assert segmentation_model_by_name(name="hippo-fed").pk == model.pk and model.version == 2
    older.refresh_from_db()
    assert not older.is_active
    assert model.provenance["federated_task"] == task.pk and model.weights_sha256

    # Any round can be restored from object storage, matching its hash.
    round1 = Round.objects.get(task=task, round_number=1)
    restored = services.round_restore(task=task, round_number=1, dest=tmp_path / "r1.npz")
    assert restored.exists() and round1.global_sha256 != Round.objects.get(task=task, round_number=2).global_sha256

    # Ledger: 2 rounds × (3 updates + 1 aggregation), all valid; credits follow examples × reputation.
    assert result["ledger"] == {"ok": True, "entries": 8}
    call_command("verify_ledger", str(task.pk), stdout=StringIO())
    credits = services.contribution_credits(task=task)
    assert credits["verified"] and credits["credits"]["fedsite-1"]["examples"] == 10
    assert credits["credits"]["fedsite-1"]["share"] > credits["credits"]["fedsite-3"]["share"]

    # An edit behind the application's back (queryset.update) is named by verify_ledger.
    LedgerEntry.objects.filter(task=task, index=5).update(num_examples=50)
    with pytest.raises(CommandError, match=r"entry 5 .*client signature"):
        call_command("verify_ledger", str(task.pk), stdout=StringIO())
    LedgerEntry.objects.filter(task=task, index=5).update(num_examples=4)
    call_command("verify_ledger", str(task.pk), stdout=StringIO())

    # ... and so is raw SQL changing a reputation (signed by the coordinator only).
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {LedgerEntry._meta.db_table} SET reputation = 0.99 WHERE task_id = %s AND \"index\" = 2", [task.pk]
        )
    with pytest.raises(CommandError, match=r"entry 2 .*coordinator signature"):
        call_command("verify_ledger", str(task.pk), stdout=StringIO())


def test_a_hospital_trains_on_its_two_datasets_together(hippocampus_split, federation_settings, free_port):
    """Real processes: hospital 1 contributes two folders (5 + 4 cases), its SuperNode gets both and
    trains on all 9; hospital 2 contributes one (3)."""
    hospitals = hippocampus_split.hospitals
    task = services.task_create_local(data_dirs=[hospitals[0], hospitals[2]], rounds=1, local_epochs=1, strategy="fedavg")
    first = task.participants.get(client_id="fedsite-1")
    first.datasets = [str(hospitals[0].resolve()), str(hospitals[1].resolve())]
    first.save()
    services.task_start(task=task, user=None, enqueue=False)
    task = services.task_execute(task_id=task.pk, port=free_port)
    assert task.status == FederatedTask.Status.COMPLETED, task.error
    counts = {u.participant.client_id: u.num_examples for u in Round.objects.get(task=task).updates.select_related("participant")}
    assert counts == {"fedsite-1": 9, "fedsite-2": 3}
    assert services.ledger_verify(task=task)["ok"]
