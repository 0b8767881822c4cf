"""Real-time events of the annotation app: group names and payloads. Only services send them."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

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
