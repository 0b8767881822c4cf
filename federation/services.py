"""Writes of the federation app: tasks, invitations, keys, rounds, the ledger, model registration and
the runner that drives a federation's processes. Plain-Python work lives in :mod:`federation.fl`."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.permissions import is_staff_of
from portal.services import audit_record

from . import events
from .fl import ledger as fl_ledger
from .models import ClientUpdate, FederatedTask, LedgerEntry, Participant, Round

logger = logging.getLogger(__name__)

MAX_COORDINATOR_RESTARTS = 3


# --------------------------------------------------------------------------------------------------
# Paths, specs
# --------------------------------------------------------------------------------------------------


def task_dir(task: FederatedTask) -> Path:
    """Return the folder of a task's keys, logs and coordinator outbox (on the coordinator's machine)."""
    return Path(settings.FEDERATION_DIR) / f"task-{task.pk}"


def task_spec(task: FederatedTask):
    """Return the :class:`federation.fl.local.ModelSpec` every participant builds."""
    from .fl.local import SMALL_UNET, ModelSpec

    config = dict(task.network_config) if task.network_config else (dict(SMALL_UNET) if task.architecture == "unet" else {})
    num_classes = max(int(e["index"]) for e in task.label_table) + 1
    return ModelSpec(
        architecture=task.architecture, network_config=config, num_classes=num_classes,
        patch_size=tuple(int(p) for p in task.patch_size),
    )


# --------------------------------------------------------------------------------------------------
# Tasks and invitations
# --------------------------------------------------------------------------------------------------


def _require_staff(user: User, hospital_id: int) -> None:
    if not is_staff_of(user, hospital_id):
        raise ServiceError("Only staff of this hospital may do this.", code="permission_denied", status_code=403)


SECAGG_MIN_CLIENTS = 3


def _check_options(*, strategy: str, secure_aggregation: bool, min_clients: int, differential_privacy: bool,
                   dp_clipping_norm: float | None, dp_epsilon: float | None, dp_delta: float | None,
                   has_validation: bool) -> None:
    """Refuse option combinations a task cannot run with (ServiceError, HTTP 400, with a code)."""
    if secure_aggregation and strategy == FederatedTask.Strategy.RTIFED:
        raise ServiceError(
            "Secure aggregation and RTIFed cannot be combined: Shapley reputation needs each client's update, "
            "which SecAgg+ hides from the coordinator.",
            code="secagg_excludes_reputation",
        )
    if secure_aggregation and min_clients < SECAGG_MIN_CLIENTS:
        # With two clients each one could subtract its own update from the sum and read the other's.
        raise ServiceError(
            f"Secure aggregation needs at least {SECAGG_MIN_CLIENTS} clients per round: with fewer, a client could "
            "recover another's update from the sum.",
            code="secagg_min_clients",
        )
    if differential_privacy and not (
        dp_clipping_norm and dp_clipping_norm > 0 and dp_epsilon and dp_epsilon > 0 and dp_delta and 0 < dp_delta < 1
    ):
        raise ServiceError("Differential privacy needs a positive clipping norm, ε > 0 and 0 < δ < 1.", code="dp_parameters")
    if strategy == FederatedTask.Strategy.RTIFED and not has_validation:
        raise ServiceError("RTIFed needs the coordinator's validation set for Shapley contributions "
                           "(a validation dataset in the portal, --validation on the command line).",
                           code="validation_required")


@transaction.atomic
def task_create(
    *,
    user: User,
    name: str,
    label_table: list[dict],
    rounds: int,
    local_epochs: int,
    min_clients: int = 2,
    strategy: str = FederatedTask.Strategy.FEDAVG,
    architecture: str = FederatedTask.Architecture.UNET,
    network_config: dict | None = None,
    patch_size: tuple[int, int, int] = (48, 64, 48),
    secure_aggregation: bool = False,
    differential_privacy: bool = False,
    dp_clipping_norm: float | None = None,
    dp_epsilon: float | None = None,
    dp_delta: float | None = None,
    fedprox_mu: float = 0.01,
    validation_dir: str = "",
    body_part: str = "brain",
    modality: str = "MR",
    invite: list[Hospital] | None = None,
    datasets: list[str] | None = None,
    validation_dataset: str = "",
) -> FederatedTask:
    """Create a task owned by the user's hospital (which takes part as a client) and invite hospitals.

    ``datasets`` names the owner hospital's datasets (:func:`dataset_choices`) it trains on (without any
    it only coordinates); ``validation_dataset`` names another, held out as the coordinator's
    validation set (it sets ``validation_dir``). Names only: a path is never taken from a request.

    Raises
    ------
    ServiceError
        Not hospital staff (403); a dataset name that is not the hospital's (``unknown_dataset``) or the
        same set for training and validation (``validation_is_training``); secure aggregation with RTIFed (Shapley reputation needs individual
        updates, SecAgg+ hides them) or with fewer than 3 clients per round; DP without its parameters;
        RTIFed without a validation set.
    django.core.exceptions.ValidationError
        A field out of range (rounds 1–50, local epochs 1–10, ...).
    """
    if user.hospital_id is None:
        raise ServiceError("Only hospital staff may create a federated task.", code="permission_denied", status_code=403)
    _require_staff(user, user.hospital_id)
    if validation_dataset:
        if validation_dataset in (datasets or []):
            raise ServiceError("The validation set must not be the dataset the hospital trains on.",
                               code="validation_is_training")
        validation_dir = str(_own_dataset_dir(user.hospital, validation_dataset))
    _check_options(strategy=strategy, secure_aggregation=secure_aggregation, min_clients=min_clients,
                   differential_privacy=differential_privacy, dp_clipping_norm=dp_clipping_norm, dp_epsilon=dp_epsilon,
                   dp_delta=dp_delta, has_validation=bool(validation_dir))
    if min_clients < 1:
        raise ValidationError({"min_clients": "At least one client."})
    task = FederatedTask(
        name=name, owner_hospital_id=user.hospital_id, created_by=user, architecture=architecture,
        network_config=network_config or {}, label_table=label_table, patch_size=list(patch_size),
        rounds=rounds, local_epochs=local_epochs, min_clients=min_clients, strategy=strategy,
        secure_aggregation=secure_aggregation, differential_privacy=differential_privacy,
        dp_clipping_norm=dp_clipping_norm if differential_privacy else None,
        dp_epsilon=dp_epsilon if differential_privacy else None, dp_delta=dp_delta if differential_privacy else None,
        fedprox_mu=fedprox_mu,
        validation_dir=validation_dir, body_part=body_part, modality=modality,
    )
    indices = [e.get("index") for e in label_table or []]
    if not indices or any(not isinstance(i, int) or i < 1 for i in indices) or len(set(indices)) != len(indices):
        raise ValidationError({"label_table": "Labels need distinct positive integer indices."})
    task.full_clean()
    task.save()
    owner = Participant(task=task, hospital_id=user.hospital_id, client_id=user.hospital.code, status=Participant.Status.ACCEPTED,
                        responded_by=user, responded_at=timezone.now())
    owner.full_clean()
    owner.save()
    for hospital in invite or []:
        participant_invite(task=task, hospital=hospital, user=user)
    if datasets:
        # The owner takes part like an invited hospital: only its datasets' label statistics are stored.
        invitation_respond(user=user, participant=owner, accept=True, datasets=list(datasets))
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="federated_task", target_id=task.pk)
    return task


def _own_dataset_dir(hospital: Hospital, name: str) -> Path:
    """Return the folder of one of ``hospital``'s datasets given its name, or raise ``unknown_dataset``."""
    if name not in dataset_choices(hospital=hospital):
        raise ServiceError("No such dataset in your hospital.", code="unknown_dataset")
    return dataset_root(hospital) / name


@transaction.atomic
def participant_invite(*, task: FederatedTask, hospital: Hospital, user: User | None) -> Participant:
    """Invite a hospital to a task (idempotent for a hospital already invited).

    Raises
    ------
    ServiceError
        The user is not staff of the owner hospital, or the task has started.
    """
    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    existing = Participant.objects.filter(task=task, hospital=hospital).first()
    if existing:
        return existing
    if task.status not in (FederatedTask.Status.DRAFT,):
        raise ServiceError("Hospitals can only be invited before the task starts.", code="task_started")
    participant = Participant(task=task, hospital=hospital, client_id=hospital.code)
    participant.full_clean()
    participant.save()
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="federated_participant", target_id=participant.pk,
                 detail={"task": task.pk, "hospital": hospital.pk})
    return participant


def dataset_root(hospital: Hospital) -> Path:
    """Return the folder holding a hospital's own labelled datasets (MSD folders), on its own node."""
    return Path(settings.FEDERATION_DATASETS_ROOT) / hospital.code


def dataset_choices(*, hospital: Hospital) -> list[str]:
    """Return the names of the MSD datasets a hospital may contribute."""
    root = dataset_root(hospital)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "dataset.json").is_file())


@transaction.atomic
def invitation_respond(*, user: User, participant: Participant, accept: bool, datasets: list[str] | None = None) -> Participant:
    """Accept (with one or more of the hospital's own datasets) or decline an invitation.

    On acceptance only the label statistics of the chosen datasets, added up (case and voxel counts per
    label), are stored; images and file names stay on the hospital's node, which trains on all of them.

    Raises
    ------
    ServiceError
        Not staff of the invited hospital (403); the task has started; no dataset, one named twice, or a
        name that is not one of the hospital's datasets; a dataset that cannot be read.
    """
    from .fl.data import label_statistics, merge_label_statistics

    _require_staff(user, participant.hospital_id)
    if participant.task.status != FederatedTask.Status.DRAFT:
        raise ServiceError("The task has started; invitations are closed.", code="task_started")
    if not accept:
        participant.status = Participant.Status.DECLINED
        participant.datasets = []
        participant.label_statistics = {}
    else:
        datasets = list(datasets or [])
        if not datasets or len(set(datasets)) != len(datasets):
            raise ServiceError("Choose one or more of your hospital's datasets, each once.", code="dataset_required")
        folders = [_own_dataset_dir(participant.hospital, name) for name in datasets]
        try:
            stats = merge_label_statistics([label_statistics(folder) for folder in folders])
        except ValueError as exc:
            raise ServiceError(f"The dataset cannot be read: {exc}", code="invalid_dataset") from exc
        participant.status = Participant.Status.ACCEPTED
        participant.datasets = datasets
        participant.label_statistics = stats
    participant.responded_by = user
    participant.responded_at = timezone.now()
    participant.full_clean()
    participant.save()
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_participant", target_id=participant.pk,
                 detail={"accepted": bool(accept)})
    return participant


def participant_data_dirs(participant: Participant) -> list[Path]:
    """Return the participant's chosen dataset folders (resolved on the hospital's node)."""
    return [Path(name) if Path(name).is_absolute() else dataset_root(participant.hospital) / name
            for name in participant.datasets or []]


@transaction.atomic
def participant_revoke(*, participant: Participant, user: User | None) -> Participant:
    """Revoke a client: the coordinator stops accepting its SuperNode (its key is unregistered)."""
    if user is not None:
        _require_staff(user, participant.task.owner_hospital_id)
    participant.status = Participant.Status.REVOKED
    participant.save(update_fields=["status"])
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_participant", target_id=participant.pk,
                 detail={"revoked": True})
    return participant


def task_keys_ensure(*, task: FederatedTask):
    """Create the task's CA, server certificate and keys (once) and store the public keys on the rows.

    Returns
    -------
    federation.fl.certs.FederationPaths
    """
    from .fl.certs import create_federation_material

    clients = list(task.participants.values_list("client_id", flat=True))
    paths = create_federation_material(task_dir(task) / "pki", clients)
    with transaction.atomic():
        coordinator_pub = paths.coordinator_signing_key.with_suffix(".pub").read_text()
        if task.coordinator_public_key != coordinator_pub:
            FederatedTask.objects.filter(pk=task.pk).update(coordinator_public_key=coordinator_pub)
            task.coordinator_public_key = coordinator_pub
        for participant in task.participants.all():
            pub = paths.signing_public_key(participant.client_id).read_text()
            if participant.signing_public_key != pub:
                Participant.objects.filter(pk=participant.pk).update(signing_public_key=pub)
    return paths


# --------------------------------------------------------------------------------------------------
# Life cycle
# --------------------------------------------------------------------------------------------------


def _set_status(task: FederatedTask, status: str, *, error: str = "") -> None:
    FederatedTask.objects.filter(pk=task.pk).update(status=status, error=error, updated_at=timezone.now())
    task.status, task.error = status, error
    transaction.on_commit(lambda: events.send_task_event(task.pk, "status", {"status": status, "error": error}))


@transaction.atomic
def task_start(*, task: FederatedTask, user: User | None, enqueue: bool = True) -> FederatedTask:
    """Queue a draft or paused task for the worker (resume continues after the last completed round).

    Raises
    ------
    ServiceError
        Not staff of the owner hospital, the task is not draft/paused, or fewer clients accepted than
        the minimum per round.
    """
    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    task = FederatedTask.objects.select_for_update().get(pk=task.pk)
    if task.status not in (FederatedTask.Status.DRAFT, FederatedTask.Status.PAUSED, FederatedTask.Status.FAILED):
        raise ServiceError(f"A {task.get_status_display()} task cannot be started.", code="invalid_state", status_code=409)
    accepted = task.participants.filter(status=Participant.Status.ACCEPTED).exclude(datasets=[]).count()
    if accepted < task.min_clients:
        raise ServiceError(
            f"{accepted} hospital(s) accepted with a dataset; the task needs at least {task.min_clients}.",
            code="too_few_clients",
        )
    _set_status(task, FederatedTask.Status.QUEUED)
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_task", target_id=task.pk,
                 detail={"status": "queued"})
    if enqueue:
        from .tasks import federated_task_run

        task_id = task.pk
        transaction.on_commit(lambda: federated_task_run.delay(task_id))
    return task


@transaction.atomic
def task_pause(*, task: FederatedTask, user: User | None) -> FederatedTask:
    """Ask the runner to stop after the round in progress; resume with :func:`task_start`."""
    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    task = FederatedTask.objects.select_for_update().get(pk=task.pk)
    if task.status not in (FederatedTask.Status.QUEUED, FederatedTask.Status.RUNNING):
        raise ServiceError("Only a queued or running task can be paused.", code="invalid_state", status_code=409)
    _set_status(task, FederatedTask.Status.PAUSED)
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_task", target_id=task.pk,
                 detail={"status": "paused"})
    return task


@transaction.atomic
def task_cancel(*, task: FederatedTask, user: User | None) -> FederatedTask:
    """Cancel a task for good (completed rounds and the ledger stay)."""
    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    task = FederatedTask.objects.select_for_update().get(pk=task.pk)
    if task.status in (FederatedTask.Status.COMPLETED, FederatedTask.Status.CANCELLED):
        raise ServiceError("The task has already ended.", code="invalid_state", status_code=409)
    _set_status(task, FederatedTask.Status.CANCELLED)
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_task", target_id=task.pk,
                 detail={"status": "cancelled"})
    return task


# --------------------------------------------------------------------------------------------------
# Ledger
# --------------------------------------------------------------------------------------------------


def _entry_of(row: LedgerEntry) -> fl_ledger.LedgerEntry:
    return fl_ledger.LedgerEntry(
        task_id=str(row.task_id), index=row.index, round_number=row.round_number, kind=row.kind, client=row.client,
        update_sha256=row.update_sha256, num_examples=row.num_examples, metrics=row.metrics,
        reputation=row.reputation, prev_hash=row.prev_hash, client_signature=row.client_signature,
        coordinator_signature=row.coordinator_signature, entry_hash=row.entry_hash,
    )


def _ledger_append(task: FederatedTask, entry: fl_ledger.LedgerEntry, *, coordinator_key, client_signature: str | None) -> LedgerEntry:
    last = LedgerEntry.objects.filter(task=task).order_by("-index").first()
    entry = dataclasses.replace(
        entry, index=0 if last is None else last.index + 1, prev_hash=fl_ledger.GENESIS_HASH if last is None else last.entry_hash
    )
    signed = fl_ledger.sign_entry(entry, coordinator_key=coordinator_key, client_signature=client_signature)
    return LedgerEntry.objects.create(
        task=task, index=signed.index, round_number=signed.round_number, kind=signed.kind, client=signed.client,
        update_sha256=signed.update_sha256, num_examples=signed.num_examples, metrics=signed.metrics,
        reputation=signed.reputation, prev_hash=signed.prev_hash, client_signature=signed.client_signature,
        coordinator_signature=signed.coordinator_signature, entry_hash=signed.entry_hash,
    )


def ledger_verify(*, task: FederatedTask) -> dict:
    """Check a task's whole ledger.

    Returns
    -------
    dict
        ``{"ok": True, "entries": n}`` or ``{"ok": False, "entries": n, "first_bad_index": i,
        "entry_id": pk, "reason": str}``.
    """
    rows = list(LedgerEntry.objects.filter(task=task).order_by("index"))
    if not task.coordinator_public_key:
        return {"ok": not rows, "entries": len(rows), **({} if not rows else {"first_bad_index": 0, "entry_id": rows[0].pk, "reason": "no coordinator key"})}
    client_keys = {
        p.client_id: fl_ledger.load_public_key(p.signing_public_key.encode())
        for p in task.participants.exclude(signing_public_key="")
    }
    try:
        fl_ledger.verify_chain(
            [_entry_of(r) for r in rows],
            coordinator_public_key=fl_ledger.load_public_key(task.coordinator_public_key.encode()),
            client_public_keys=client_keys,
        )
    except fl_ledger.LedgerError as exc:
        row = rows[exc.index] if exc.index < len(rows) else None
        return {"ok": False, "entries": len(rows), "first_bad_index": exc.index,
                "entry_id": row.pk if row else None, "reason": exc.reason}
    return {"ok": True, "entries": len(rows)}


def contribution_credits(*, task: FederatedTask) -> dict:
    """Return contribution credits per client derived from the task's ledger (only when it verifies)."""
    check = ledger_verify(task=task)
    if not check["ok"]:
        return {"verified": False, "credits": {}, "check": check}
    entries = [_entry_of(r) for r in LedgerEntry.objects.filter(task=task).order_by("index")]
    return {"verified": True, "credits": fl_ledger.credits_from_entries(entries), "check": check}


# --------------------------------------------------------------------------------------------------
# Rounds
# --------------------------------------------------------------------------------------------------


def _round_key(task: FederatedTask, round_number: int) -> str:
    return f"federation/task-{task.pk}/round-{round_number:04d}.npz"


def round_ingest(*, task: FederatedTask, record: dict, weights_path: Path, coordinator_key) -> Round:
    """Store a completed round: the global weights in S3, the round and client rows, and the ledger
    entries (each answering client's update with its own signature, then the aggregation).

    Idempotent: a round already stored is returned unchanged.

    Raises
    ------
    ServiceError
        The weights file does not match the round's SHA-256, or a client's signature does not verify.
    """
    from portal.storage import s3_client

    from .fl.flower_app import load_arrays
    from .fl.local import arrays_sha256

    round_number = int(record["round_number"])
    existing = Round.objects.filter(task=task, round_number=round_number).first()
    if existing:
        return existing
    if arrays_sha256(load_arrays(weights_path)) != record["global_sha256"]:
        raise ServiceError(f"round {round_number}: the weights do not match their SHA-256", code="weights_mismatch")
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
                    coordinator_key=coordinator_key, client_signature=info["signature"],
                )
            except ValueError as exc:
                raise ServiceError(f"round {round_number}: bad update of {client_id}: {exc}", code="bad_signature") from exc
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
        raise ServiceError(f"round {round_number}: ledger check failed at entry {check['first_bad_index']}: {check['reason']}",
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

    from .fl.flower_app import load_arrays
    from .fl.local import arrays_sha256

    row = Round.objects.filter(task=task, round_number=round_number).first()
    if row is None:
        raise ServiceError(f"Task {task.pk} has no round {round_number}.", code="not_found", status_code=404)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    s3_client().download_file(settings.S3_BUCKET, row.global_model_key, str(dest))
    if arrays_sha256(load_arrays(dest)) != row.global_sha256:
        raise ServiceError(f"Stored weights of round {round_number} do not match their hash.", code="weights_mismatch")
    return dest


def model_register(*, task: FederatedTask, round_number: int | None = None, user: User | None = None,
                   name: str | None = None, deploy: bool = False):
    """Register a round's global model in the segmentation model registry (optionally deploy it).

    Raises
    ------
    ServiceError
        No completed round.
    """
    import torch

    from annotation.ml.inference import Preprocessing
    from annotation.services import segmentation_model_register

    from .fl.aggregation import arrays_to_state
    from .fl.flower_app import load_arrays
    from .fl.local import build_model

    if user is not None:
        _require_staff(user, task.owner_hospital_id)
    round_number = round_number or task.current_round
    if not round_number:
        raise ServiceError("The task has no completed round to register.", code="no_round")
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
            hospital=None, user=user,
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


# --------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------


def _run_config(task: FederatedTask, *, outbox: Path, start_round: int, initial: Path | None, round_timeout_s: float) -> dict:
    from .fl.flower_app import encode_json

    return {
        "task-id": str(task.pk), "num-rounds": task.rounds, "start-round": start_round, "local-epochs": task.local_epochs,
        "strategy": task.strategy, "mu": float(task.fedprox_mu), "min-clients": task.min_clients,
        "round-timeout-s": float(round_timeout_s), "outbox": str(outbox), "initial-weights": str(initial or ""),
        "validation-dir": task.validation_dir, "spec": encode_json(dataclasses.asdict(task_spec(task))),
        "dp-clipping-norm": float(task.dp_clipping_norm or 0.0) if task.differential_privacy else 0.0,
        "dp-epsilon": float(task.dp_epsilon or 0.0) if task.differential_privacy else 0.0,
        "dp-delta": float(task.dp_delta or 0.0) if task.differential_privacy else 0.0,
        "secure-aggregation": bool(task.secure_aggregation),
    }


def task_execute(*, task_id: int, port: int | None = None, round_timeout_s: float | None = None,
                 poll_s: float = 1.0, on_event=None) -> FederatedTask:
    """Run a queued task to its end on this machine: start the coordinator and every accepted hospital's
    SuperNode, submit the Flower run, ingest each round as it completes, restart a SuperNode that died
    (it rejoins) and restart the coordinator from the last completed round when it dies.

    A task paused or cancelled meanwhile stops its processes. ``on_event(kind, data)`` is called
    with ``("started", {"work_dir", "pids"})``, ``("round", record)``, ``("restart", {...})`` (tests and
    the command line use it).
    """
    from .fl.ledger import load_private_key
    from .fl.launcher import FederationError, LocalFederation, free_port

    task = FederatedTask.objects.get(pk=task_id)
    if task.status not in (FederatedTask.Status.QUEUED, FederatedTask.Status.RUNNING):
        return task
    notify = on_event or (lambda kind, data: None)
    paths = task_keys_ensure(task=task)
    coordinator_key = load_private_key(paths.coordinator_signing_key.read_bytes())
    participants = [
        p for p in task.participants.select_related("hospital").filter(status=Participant.Status.ACCEPTED) if p.datasets
    ]
    timeout = float(round_timeout_s or settings.FEDERATION_ROUND_TIMEOUT_S)
    outbox = task_dir(task) / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    restarts = 0
    with transaction.atomic():
        _set_status(task, FederatedTask.Status.RUNNING)
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
                              python_path=str(settings.BASE_DIR), threads_per_client=settings.FEDERATION_THREADS_PER_CLIENT)
        coordinator_died = False
        try:
            fed.start_superlink()
            for index, participant in enumerate(participants):
                fed.register(participant.client_id)
                fed.start_supernode(participant.client_id, participant_data_dirs(participant), index)
            start_round = task.current_round + 1
            initial = None
            if task.current_round:
                initial = round_restore(task=task, round_number=task.current_round, dest=work / "resume.npz")
            if start_round <= task.rounds:
                fed.run(_run_config(task, outbox=outbox, start_round=start_round, initial=initial, round_timeout_s=timeout))
            notify("started", {"work_dir": str(work), "superlink_pid": fed.superlink.pid,
                               "supernode_pids": {c: p.pid for c, p in fed.supernodes.items()}})
            while True:
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
                        # A crashed hospital rejoins: the same key and data, a new SuperNode process.
                        fed.start_supernode(participant.client_id, participant_data_dirs(participant), index)
                        notify("rejoin", {"client": participant.client_id, "pid": fed.supernodes[participant.client_id].pid})
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


# --------------------------------------------------------------------------------------------------
# Local runs from the command line
# --------------------------------------------------------------------------------------------------

_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0"]


@transaction.atomic
def task_create_local(
    *,
    data_dirs: list[Path],
    rounds: int,
    local_epochs: int,
    strategy: str,
    min_clients: int | None = None,
    validation_dir: Path | None = None,
    secure_aggregation: bool = False,
    name: str = "",
    network_config: dict | None = None,
    patch_size: tuple[int, int, int] = (48, 64, 48),
    dp_clipping_norm: float | None = None,
    dp_epsilon: float | None = None,
    dp_delta: float | None = None,
) -> FederatedTask:
    """Create a task whose hospitals are local MSD folders (one hospital ``fedsite-<i>`` per folder).

    The label table comes from the first folder's ``dataset.json``; each hospital accepts with its
    folder and shares only its label statistics.

    Raises
    ------
    ServiceError
        A folder is not an MSD dataset, the folders disagree on labels, or the options conflict
        (see :func:`task_create`).
    """
    from annotation.ml.training import read_msd_dataset

    from .fl.data import label_statistics
    from portal.services import hospital_create

    if not data_dirs:
        raise ServiceError("Give at least one hospital dataset.", code="dataset_required")
    try:
        datasets = [read_msd_dataset(Path(d)) for d in data_dirs]
    except ValueError as exc:
        raise ServiceError(str(exc), code="invalid_dataset") from exc
    labels = datasets[0].labels
    if any(d.labels != labels for d in datasets):
        raise ServiceError("The hospital datasets have different label tables.", code="label_mismatch")
    label_table = [{"index": i, "name": n, "color": _COLORS[(i - 1) % len(_COLORS)]} for i, n in sorted(labels.items())]
    hospitals = []
    for i in range(len(data_dirs)):
        code = f"fedsite-{i + 1}"
        hospital = Hospital.objects.filter(code=code).first() or hospital_create(code=code, name=f"Federated site {i + 1}")
        hospitals.append(hospital)
    differential_privacy = dp_clipping_norm is not None
    _check_options(strategy=strategy, secure_aggregation=secure_aggregation, min_clients=min_clients or len(data_dirs),
                   differential_privacy=differential_privacy, dp_clipping_norm=dp_clipping_norm, dp_epsilon=dp_epsilon,
                   dp_delta=dp_delta, has_validation=validation_dir is not None)
    task = FederatedTask(
        name=name or f"{datasets[0].name} × {len(data_dirs)}", owner_hospital=hospitals[0], label_table=label_table,
        patch_size=list(patch_size), rounds=rounds, local_epochs=local_epochs,
        min_clients=min_clients or len(data_dirs), strategy=strategy, network_config=network_config or {},
        validation_dir=str(Path(validation_dir).resolve()) if validation_dir else "", modality="MR" if "MR" in datasets[0].modality.upper() else "CT",
        differential_privacy=differential_privacy, dp_clipping_norm=dp_clipping_norm, dp_epsilon=dp_epsilon, dp_delta=dp_delta,
        secure_aggregation=secure_aggregation,
    )
    task.full_clean()
    task.save()
    for hospital, directory in zip(hospitals, data_dirs):
        Participant.objects.create(
            task=task, hospital=hospital, client_id=hospital.code, status=Participant.Status.ACCEPTED,
            datasets=[str(Path(directory).resolve())], label_statistics=label_statistics(Path(directory)),
            responded_at=timezone.now(),
        )
    audit_record(actor=None, action=AuditLog.Action.CREATE, target_type="federated_task", target_id=task.pk, channel="cli")
    return task
