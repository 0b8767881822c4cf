"""Rounds: store a completed round (global weights in S3, round and client-update rows, ledger entries),
restore a round's weights with their SHA-256 checked, and register a round's global model in the
segmentation model registry, optionally deploying it for one-click segmentation."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from .. import events
from ..fl import ledger as fl_ledger
from ..models import ClientUpdate, FederatedTask, LedgerEntry, Participant, Round
from .ledger import _ledger_append, ledger_refusal_record, ledger_verify
from .paths import task_spec
from .tasks_invitations import _require_staff


def _round_key(task: FederatedTask, round_number: int) -> str:
    return f"federation/task-{task.pk}/round-{round_number:04d}.npz"


def round_ingest(*, task: FederatedTask, record: dict, weights_path: Path, coordinator_key) -> Round:
    """Store a completed round (see :func:`_round_ingest`); a refused client statement is audit-logged."""
    try:
        return _round_ingest(task=task, record=record, weights_path=weights_path, coordinator_key=coordinator_key)
    except ServiceError as exc:
        if getattr(exc, "client_id", None):
            ledger_refusal_record(task=task, client_id=exc.client_id, round_number=int(record["round_number"]),
                                  code=exc.code)
        raise


def _round_ingest(*, task: FederatedTask, record: dict, weights_path: Path, coordinator_key) -> Round:
    """Store a completed round: the global weights in S3, the round and client rows, and the ledger
    entries (each answering client's update with its own signature, then the aggregation).

    Idempotent: a round already stored is returned unchanged.

    Raises
    ------
    ServiceError
        The weights file does not match the round's SHA-256, or a client's signature does not verify.
    """
    from portal.storage import s3_client

    from ..fl.flower_app import load_arrays
    from ..fl.local import arrays_sha256

    round_number = int(record["round_number"])
    existing = Round.objects.filter(task=task, round_number=round_number).first()
    if existing:
        return existing
    if arrays_sha256(load_arrays(weights_path)) != record["global_sha256"]:
        raise ServiceError(_("round %(round_number)s: the weights do not match their SHA-256"),
                           params={"round_number": round_number}, code="weights_mismatch")
    key = _round_key(task, round_number)
    s3_client().upload_file(str(weights_path), settings.S3_BUCKET, key)
    participants = {p.client_id: p for p in task.participants.all()}
    with transaction.atomic():
        row = Round.objects.create(
            task=task, round_number=round_number, global_model_key=key, global_sha256=record["global_sha256"],
            num_examples=int(record["num_examples"]), metrics=record.get("metrics", {}), timing=record.get("timing", {}),
            details={"shapley": record.get("shapley", {}), "otds": record.get("otds", {}),
                     "contributions": record.get("contributions", {}), "strategy": record.get("strategy"),
                     "secure_aggregation": record.get("secure_aggregation"), "dp": record.get("dp")},
        )
        for client_id in sorted(record["clients"]):
            info = record["clients"][client_id]
            participant = participants.get(client_id)
            if participant is None:
                continue
            ClientUpdate.objects.create(
                round=row, participant=participant, status=info["status"], num_examples=int(info.get("num_examples", 0)),
                metrics=info.get("metrics", {}), update_sha256=info.get("sha256", ""), reputation=info.get("reputation"),
                shapley=info.get("shapley"), epochs=info.get("epochs_assigned"),
            )
            if info["status"] != "answered":
                continue
            try:
                _ledger_append(
                    task,
                    fl_ledger.LedgerEntry(
                        task_id=str(task.pk), index=0, round_number=round_number, kind=fl_ledger.KIND_CLIENT_UPDATE,
                        client=client_id, update_sha256=info["sha256"], num_examples=int(info["num_examples"]),
                        metrics=info["metrics"], reputation=info.get("reputation"),
                    ),
                    coordinator_key=coordinator_key, client_signature=info.get("signature"),
                )
            except ValueError as exc:
                raise ServiceError(_("round %(round_number)s: bad update of %(client_id)s: %(exc)s"),
                                   params={"round_number": round_number, "client_id": client_id,
                                           "exc": exc}, code="bad_signature") from exc
            except ServiceError as exc:
                exc.client_id = client_id  # audit-logged by round_ingest once the round is rolled back
                raise
        _ledger_append(
            task,
            fl_ledger.LedgerEntry(
                task_id=str(task.pk), index=0, round_number=round_number, kind=fl_ledger.KIND_AGGREGATION,
                client=fl_ledger.COORDINATOR, update_sha256=record["global_sha256"], num_examples=int(record["num_examples"]),
                metrics={k: v for k, v in record.get("metrics", {}).items() if not isinstance(v, dict)},
            ),
            coordinator_key=coordinator_key, client_signature=None,
        )
        FederatedTask.objects.filter(pk=task.pk, current_round__lt=round_number).update(current_round=round_number)
        task.current_round = max(task.current_round, round_number)
        payload = {"round_number": round_number, "metrics": row.metrics, "timing": row.timing,
                   "clients": {c: {k: v for k, v in i.items() if k != "signature"} for c, i in record["clients"].items()}}
        transaction.on_commit(lambda: events.send_task_event(task.pk, "round", payload))
    # Client signatures are checked against the stored keys right away, so a forged update is caught early.
    check = ledger_verify(task=task)
    if not check["ok"]:
        raise ServiceError(_("round %(round_number)s: ledger check failed at entry %(first_bad_index)s: "
                             "%(reason)s"),
                           params={"round_number": round_number, "first_bad_index": check['first_bad_index'],
                                   "reason": check['reason']},
                           code="bad_signature")
    return row


def round_restore(*, task: FederatedTask, round_number: int, dest: Path) -> Path:
    """Download a round's global weights (``.npz``) to ``dest`` and check their SHA-256.

    Raises
    ------
    ServiceError
        No such round (404) or a stored file that does not match its hash.
    """
    from portal.storage import s3_client

    from ..fl.flower_app import load_arrays
    from ..fl.local import arrays_sha256

    row = Round.objects.filter(task=task, round_number=round_number).first()
    if row is None:
        raise ServiceError(_("Task %(task_pk)s has no round %(round_number)s."),
                           params={"task_pk": task.pk, "round_number": round_number}, code="not_found", status_code=404)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    s3_client().download_file(settings.S3_BUCKET, row.global_model_key, str(dest))
    if arrays_sha256(load_arrays(dest)) != row.global_sha256:
        raise ServiceError(_("Stored weights of round %(round_number)s do not match their hash."),
                           params={"round_number": round_number}, code="weights_mismatch")
    return dest


def task_hospitals(task: FederatedTask) -> list:
    """Return the hospitals other than the owner that took part in ``task``: the clients that accepted."""
    accepted = [p.hospital for p in Participant.objects.filter(task=task, status=Participant.Status.ACCEPTED)
                .select_related("hospital").order_by("hospital_id")]
    return [h for h in accepted if h.pk != task.owner_hospital_id]


def model_register(*, task: FederatedTask, round_number: int | None = None, user: User | None = None,
                   name: str | None = None, deploy: bool = False):
    """Register a round's global model in the segmentation model registry (optionally deploy it).

    The model belongs to the task's owner hospital and is shared with the clients that accepted
    (:func:`task_hospitals`): other hospitals neither list nor run it.

    Raises
    ------
    ServiceError
        No completed round.
    """
    import torch

    from annotation.ml.inference import Preprocessing
    from annotation.services import segmentation_model_register

    from ..fl.aggregation import arrays_to_state
    from ..fl.flower_app import load_arrays
    from ..fl.local import build_model

    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    round_number = round_number or task.current_round
    if not round_number:
        raise ServiceError(_("The task has no completed round to register."), code="no_round")
    spec = task_spec(task)
    row = Round.objects.get(task=task, round_number=round_number)
    with tempfile.TemporaryDirectory(prefix="fed-model-") as tmp:
        npz = round_restore(task=task, round_number=round_number, dest=Path(tmp) / "round.npz")
        network = build_model(spec)
        state = arrays_to_state(network.state_dict(), load_arrays(npz))
        from annotation.ml.networks import default_network_config

        full_config = default_network_config(spec.architecture)
        full_config.update(spec.network_config)
        full_config = json.loads(json.dumps(full_config))
        preprocessing = Preprocessing(target_spacing_mm=None, intensity="zscore", patch_size=spec.patch_size).to_dict()
        labels = {int(e["index"]): str(e["name"]) for e in task.label_table}
        checkpoint = Path(tmp) / "model.pt"
        torch.save({"state_dict": state, "architecture": spec.architecture, "network_config": full_config,
                    "preprocessing": preprocessing, "labels": labels,
                    "val_dice_per_label": row.metrics.get("val_dice_per_label") or {}}, checkpoint)
        head = LedgerEntry.objects.filter(task=task).order_by("-index").first()
        model = segmentation_model_register(
            name=name or f"federated-{task.pk}", body_part=task.body_part, modality=task.modality,
            architecture=spec.architecture, label_table=task.label_table, display_name=f"{task.name} (round {round_number})",
            network_config=full_config, preprocessing=preprocessing, weights_path=checkpoint,
            validation_metrics={"mean_dice": row.metrics.get("val_dice"), "dice_per_label": row.metrics.get("val_dice_per_label"),
                                "round": round_number},
            provenance={"federated_task": task.pk, "round": round_number, "strategy": task.strategy,
                        "global_sha256": row.global_sha256, "ledger_head": head.entry_hash if head else None},
            hospital=task.owner_hospital, shared_with=task_hospitals(task), user=user,
        )
    with transaction.atomic():
        FederatedTask.objects.filter(pk=task.pk).update(registered_model=model)
        task.registered_model = model
        if deploy:
            model_deploy(model=model, user=user)
        else:
            type(model).objects.filter(pk=model.pk).update(is_active=False)
            model.is_active = False
    return model


@transaction.atomic
def model_deploy(*, model, user: User | None = None):
    """Make ``model`` the version one-click segmentation uses: activate it, deactivate older versions."""
    type(model).objects.filter(name=model.name).exclude(pk=model.pk).update(is_active=False)
    type(model).objects.filter(pk=model.pk).update(is_active=True)
    model.is_active = True
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="segmentation_model", target_id=model.pk,
                 detail={"deployed": True})
    return model
