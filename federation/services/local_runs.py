"""Local runs from the command line: create a task whose hospitals are local MSD folders (one hospital
``fedsite-<i>`` per folder), each accepting with its folder and sharing only its label statistics. The
``federated_run`` management command uses it to run a federation on one machine."""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital
from portal.services import audit_record

from ..models import FederatedTask, Participant
from .tasks_invitations import _check_options

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
    from annotation.interop.msd import dataset_read

    from ..fl.data import label_statistics
    from portal.services import hospital_create

    if not data_dirs:
        raise ServiceError(_("Give at least one hospital dataset."), code="dataset_required")
    try:
        datasets = [dataset_read(Path(d)) for d in data_dirs]
    except ValueError as exc:
        raise ServiceError(str(exc), code="invalid_dataset") from exc
    labels = datasets[0].label_names
    if any(d.label_names != labels for d in datasets):
        raise ServiceError(_("The hospital datasets have different label tables."), code="label_mismatch")
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
