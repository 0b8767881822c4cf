"""Tasks and invitations: create a federated task (checking that its options can run together), invite
hospitals, record their answers with the label statistics of the datasets they contribute, revoke a
client, and create the task's keys. Dataset folders are resolved from names on the hospital's own node;
a path is never taken from a request."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.permissions import is_staff_of
from portal.services import audit_record

from ..models import FederatedTask, Participant
from .paths import superlink_hosts, task_dir


def _require_staff(user: User, hospital_id: int) -> None:
    if not is_staff_of(user, hospital_id):
        raise ServiceError(_("Only staff of this hospital may do this."), code="permission_denied", status_code=403)


SECAGG_MIN_CLIENTS = 3


def _check_options(*, strategy: str, secure_aggregation: bool, min_clients: int, differential_privacy: bool,
                   dp_clipping_norm: float | None, dp_epsilon: float | None, dp_delta: float | None,
                   has_validation: bool) -> None:
    """Refuse option combinations a task cannot run with (ServiceError, HTTP 400, with a code)."""
    if secure_aggregation and strategy == FederatedTask.Strategy.RTIFED:
        raise ServiceError(
            _("Secure aggregation (SecAgg+) and RTIFed reputation exclude each other: Shapley reputation needs "
              "each client's update, which secure aggregation hides."),
            code="secagg_excludes_reputation",
        )
    if secure_aggregation and min_clients < SECAGG_MIN_CLIENTS:
        # With two clients each one could subtract its own update from the sum and read the other's.
        raise ServiceError(
            _("Secure aggregation needs at least %(secagg_min_clients)s clients per round: with fewer, a client "
              "could recover another's update from the sum."), params={"secagg_min_clients": SECAGG_MIN_CLIENTS},
            code="secagg_min_clients",
        )
    if differential_privacy and not (
        dp_clipping_norm and dp_clipping_norm > 0 and dp_epsilon and dp_epsilon > 0 and dp_delta and 0 < dp_delta < 1
    ):
        raise ServiceError(_("Differential privacy needs a positive clipping norm, ε > 0 and 0 < δ < 1."),
                           code="dp_parameters")
    if strategy == FederatedTask.Strategy.RTIFED and not has_validation:
        raise ServiceError(_("RTIFed needs the coordinator's validation set for Shapley contributions (a "
                             "validation dataset in the portal, --validation on the command line)."),
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
        raise ServiceError(_("Only hospital staff may create a federated task."),
                           code="permission_denied", status_code=403)
    _require_staff(user, user.hospital_id)
    if validation_dataset:
        if validation_dataset in (datasets or []):
            raise ServiceError(_("The validation set must not be the dataset the hospital trains on."),
                               code="validation_is_training")
        validation_dir = str(_own_dataset_dir(user.hospital, validation_dataset))
    _check_options(strategy=strategy, secure_aggregation=secure_aggregation, min_clients=min_clients,
                   differential_privacy=differential_privacy, dp_clipping_norm=dp_clipping_norm, dp_epsilon=dp_epsilon,
                   dp_delta=dp_delta, has_validation=bool(validation_dir))
    if min_clients < 1:
        raise ValidationError({"min_clients": _("At least one client.")})
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
        raise ValidationError({"label_table": _("Labels need distinct positive integer indices.")})
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
        raise ServiceError(_("No such dataset in your hospital."), code="unknown_dataset")
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
        raise ServiceError(_("Hospitals can only be invited before the task starts."), code="task_started")
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
    from ..fl.data import label_statistics, merge_label_statistics

    _require_staff(user, participant.hospital_id)
    if participant.task.status != FederatedTask.Status.DRAFT:
        raise ServiceError(_("The task has started; invitations are closed."), code="task_started")
    if not accept:
        participant.status = Participant.Status.DECLINED
        participant.datasets = []
        participant.label_statistics = {}
    else:
        datasets = list(datasets or [])
        if not datasets or len(set(datasets)) != len(datasets):
            raise ServiceError(_("Choose one or more of your hospital's datasets, each once."), code="dataset_required")
        folders = [_own_dataset_dir(participant.hospital, name) for name in datasets]
        try:
            stats = merge_label_statistics([label_statistics(folder) for folder in folders])
        except ValueError as exc:
            raise ServiceError(_("The dataset cannot be read: %(exc)s"),
                               params={"exc": exc}, code="invalid_dataset") from exc
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
    """Revoke a client: the coordinator stops accepting its SuperNode (its key is unregistered) and its
    enrolled certificates are revoked."""
    if user is not None:
        _require_staff(user, participant.task.owner_hospital_id)
    from .enrolment import site_certificate_revoke

    participant.status = Participant.Status.REVOKED
    participant.save(update_fields=["status"])
    # Its node's enrolled certificates stop verifying its statements from now on.
    site_certificate_revoke(task=participant.task, hospital=participant.hospital, user=user)
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federated_participant", target_id=participant.pk,
                 detail={"revoked": True})
    return participant


def task_keys_ensure(*, task: FederatedTask):
    """Create the task's CA, server certificate and keys (once) and store the public keys on the rows.

    Returns
    -------
    federation.fl.certs.FederationPaths
    """
    from ..fl.certs import create_federation_material

    clients = list(task.participants.values_list("client_id", flat=True))
    paths = create_federation_material(task_dir(task) / "pki", clients, hosts=superlink_hosts())
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
