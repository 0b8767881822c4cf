"""Real-time events of the annotation app: group names and payloads. Only services send them."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.urls import reverse

from .models import InferenceRun


def study_group(study_id: int) -> str:
    """Return the Channels group that a study page joins."""
    return f"study.{study_id}"


def inference_run_payload(run: InferenceRun) -> dict:
    """Return the JSON form of an inference run shared by the API and the websocket."""
    return {
        "id": run.pk,
        "series_id": run.series_id,
        "status": run.status,
        "progress_percent": round(run.progress_percent, 1),
        "stage": run.stage,
        "error_message": run.error_message,
        "segmentation_id": run.segmentation_id,
        "device": run.device,
        "model": {"id": run.model_id, "name": run.model.name, "version": run.model.version,
                  "display_name": run.model.display_name},
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def send_inference_progress(run: InferenceRun, study_id: int) -> None:
    """Notify the study page; the row is already committed, so a reader sees the same state."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(
        study_group(study_id), {"type": "inference.progress", "run": inference_run_payload(run)}
    )


def training_run_group(run_id: int) -> str:
    """Return the Channels group that a training-run page joins."""
    return f"training_run.{run_id}"


def training_run_payload(run) -> dict:
    """Return the JSON form of a training run shared by the API and the websocket."""
    model = run.segmentation_model
    return {
        "id": run.pk,
        "dataset": {"id": run.dataset_id, "name": run.dataset.name, "version": run.dataset.version},
        "architecture": run.architecture,
        "settings": run.settings,
        "status": run.status,
        "progress_percent": round(run.progress_percent, 1),
        "stage": run.stage,
        "epochs": list(run.progress),  # written finite-or-null by the service (JSON has no NaN)
        "split": {k: v for k, v in run.split.items()
                  if k in ("train_cases", "val_cases", "train_patients", "val_patients")},
        "error_message": run.error_message,
        "device": run.device,
        "attempts": run.attempts,
        "segmentation_model": (
            {"id": model.pk, "name": model.name, "version": model.version,
             "bundle_url": reverse("segmentation-model-bundle", args=[model.pk])} if model is not None else None
        ),
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def send_training_progress(run) -> None:
    """Notify the training-run page; the row is already written, so a reader sees the same state."""
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(
        training_run_group(run.pk), {"type": "training.progress", "run": training_run_payload(run)}
    )
