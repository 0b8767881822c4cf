"""Paths, specs: where a task keeps its keys, logs and coordinator outbox on the coordinator's machine,
and the :class:`federation.fl.local.ModelSpec` every participant of a task builds. Both are read by the
other service modules (invitations, rounds, the runner); nothing here writes to the database."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from ..models import FederatedTask


def task_dir(task: FederatedTask) -> Path:
    """Return the folder of a task's keys, logs and coordinator outbox (on the coordinator's machine)."""
    return Path(settings.FEDERATION_DIR) / f"task-{task.pk}"


def superlink_hosts() -> tuple[str, ...]:
    """Return the names the SuperLink's server certificate carries: loopback and FEDERATION_SUPERLINK_HOST."""
    return tuple(dict.fromkeys(("127.0.0.1", "localhost", settings.FEDERATION_SUPERLINK_HOST)))


def task_spec(task: FederatedTask):
    """Return the :class:`federation.fl.local.ModelSpec` every participant builds."""
    from ..fl.local import SMALL_UNET, ModelSpec

    config = dict(task.network_config) if task.network_config else (dict(SMALL_UNET) if task.architecture == "unet" else {})
    num_classes = max(int(e["index"]) for e in task.label_table) + 1
    return ModelSpec(
        architecture=task.architecture, network_config=config, num_classes=num_classes,
        patch_size=tuple(int(p) for p in task.patch_size),
    )
