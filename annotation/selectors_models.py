"""Reads of the model pages: the models a series fits (one-click menu), the hospital's default model per
organ, and a registered model's card.

A card reads only what the registry stores (``network_config``, ``preprocessing``,
``validation_metrics``, ``provenance``, the weights' hash) and, for a model trained on a training
dataset of the user's hospital, that dataset's row; a field nothing recorded is ``None``, which the
page shows as "not recorded".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from portal.models import Role, User

from .models import OrganDefaultModel, SegmentationModel, Series, TrainingDataset
from .selectors import segmentation_model_get, segmentation_model_list

__all__ = [
    "ModelCard",
    "body_part_key",
    "model_fits_series",
    "organ_default_model_list",
    "segmentation_model_card",
    "segmentation_models_for_series",
]


def body_part_key(body_part: str) -> str:
    """Return the form a body part is compared and stored in (trimmed, lower-case)."""
    return (body_part or "").strip().lower()


def model_fits_series(model: SegmentationModel, series: Series) -> bool:
    """Return True when the model's modality and body part fit the series.

    An empty modality or body part on either side fits anything: a NIfTI import has no DICOM
    BodyPartExamined, and the shipped models of every body part say so.
    """
    modality_fits = not model.modality or not series.modality or model.modality.upper() == series.modality.upper()
    model_part, series_part = body_part_key(model.body_part), body_part_key(series.body_part)
    return modality_fits and (not model_part or not series_part or model_part == series_part)


def organ_default_model_list(*, user: User):
    """Return the user's hospital's default model per body part (none for a user without a hospital)."""
    if user.hospital_id is None:
        return OrganDefaultModel.objects.none()
    return (OrganDefaultModel.objects.filter(hospital_id=user.hospital_id)
            .select_related("segmentation_model", "set_by").order_by("body_part"))


def segmentation_models_for_series(*, user: User, series: Series) -> list[tuple[SegmentationModel, bool]]:
    """Return the one-click menu of a series: ``(model, is_default)`` pairs, the default first.

    Only active models offered to the user's hospital whose modality and body part fit the series
    (:func:`model_fits_series`); the hospital's default for the series' body part leads the list.
    """
    models = [m for m in segmentation_model_list(user=user) if model_fits_series(m, series)]
    default_id = None
    part = body_part_key(series.body_part)
    if part:
        default_id = (organ_default_model_list(user=user).filter(body_part=part)
                      .values_list("segmentation_model_id", flat=True).first())
    return sorted(((m, m.pk == default_id) for m in models), key=lambda pair: not pair[1])


@dataclass(frozen=True)
class ModelCard:
    """What the registry knows of one model, section by section; ``None`` where nothing was recorded.

    ``dice`` rows: ``{"index", "name", "dice", "cases", "min", "median", "max"}`` (the spread from
    ``validation_metrics["dice_per_case"]`` when recorded). ``source`` is ``"training_run"``,
    ``"local_training"``, ``"federated"``, ``"import"`` or ``"registered"`` (nothing says more).
    """

    model: SegmentationModel
    source: str
    dataset: dict | None
    training_dataset: TrainingDataset | None
    data_folder: str | None
    federated: dict | None
    imported: dict | None
    network_config: dict
    preprocessing: dict
    training_settings: dict | None
    dice: list[dict] = field(default_factory=list)
    # An imported bundle's own sections (preprocessing, inferer, postprocessing), each a list of
    # (class name, keywords) rows; None when the portal's preprocessing applies.
    bundle_pipeline: dict | None = None
    mean_dice: float | None = None
    num_val: int | None = None
    num_train: int | None = None
    device: str | None = None
    duration_s: float | None = None
    trained_at: str | None = None


def _bundle_pipeline_rows(model: SegmentationModel) -> dict | None:
    pipeline = (model.network_config or {}).get("bundle_pipeline")
    if not isinstance(pipeline, dict):
        return None

    def rows(items) -> list[dict]:
        return [{"target": str(item.get("_target_", "")),
                 "arguments": ", ".join(f"{k}={v}" for k, v in item.items() if k != "_target_")}
                for item in items if isinstance(item, dict)]

    inferer = pipeline.get("inferer")
    return {"preprocessing": rows(pipeline.get("preprocessing") or []),
            "inferer": rows([inferer] if isinstance(inferer, dict) else []),
            "postprocessing": rows(pipeline.get("postprocessing") or [])}


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN: a label absent from every validation case


def _dice_rows(model: SegmentationModel) -> list[dict]:
    metrics = model.validation_metrics or {}
    per_label = metrics.get("dice_per_label") or {}
    per_case = metrics.get("dice_per_case") or []
    rows = []
    for entry in sorted(model.label_table, key=lambda e: int(e["index"])):
        key = str(entry["index"])
        values = [v for v in (_number((case.get("dice_per_label") or {}).get(key)) for case in per_case
                              if isinstance(case, dict)) if v is not None]
        rows.append({
            "index": int(entry["index"]), "name": entry.get("name", ""), "color": entry.get("color", ""),
            "dice": _number(per_label.get(key)) if isinstance(per_label, dict) else None,
            "cases": len(values) or None,
            "min": min(values) if values else None,
            "median": statistics.median(values) if values else None,
            "max": max(values) if values else None,
        })
    return rows


def segmentation_model_card(*, user: User, model_id: int) -> ModelCard:
    """Return the card of a model offered to the user's hospital.

    Raises
    ------
    django.http.Http404
        A model the user's hospital may not list, or no such model.
    """
    model = segmentation_model_get(user=user, model_id=model_id)
    provenance = model.provenance or {}
    metrics = model.validation_metrics or {}
    dataset = provenance.get("dataset") if isinstance(provenance.get("dataset"), dict) else None
    training_dataset = None
    if dataset and isinstance(dataset.get("id"), int) and user.role != Role.PATIENT:
        rows = TrainingDataset.objects.select_related("label_set")
        if not user.is_platform_admin:
            rows = rows.filter(hospital_id=user.hospital_id)
        training_dataset = rows.filter(pk=dataset["id"]).first()
    if provenance.get("federated_task") is not None:
        source = "federated"
    elif provenance.get("source") == "import":
        source = "import"
    elif provenance.get("source") == "training_run":
        source = "training_run"
    elif provenance.get("data") or provenance.get("epochs"):
        source = "local_training"
    else:
        source = "registered"
    federated = ({"task": provenance.get("federated_task"), "round": provenance.get("round"),
                  "strategy": provenance.get("strategy"), "global_sha256": provenance.get("global_sha256"),
                  "ledger_head": provenance.get("ledger_head")} if source == "federated" else None)
    imported = ({"file": provenance.get("file"), "format": provenance.get("format"),
                 "backend": provenance.get("backend"), "quantized": provenance.get("quantized")}
                if source == "import" else None)
    settings_ = provenance.get("settings") if isinstance(provenance.get("settings"), dict) else None
    if settings_ is None and source == "local_training":
        settings_ = {k: provenance[k] for k in ("epochs", "seed") if k in provenance} or None
    num_val = metrics.get("num_val", provenance.get("num_val"))
    return ModelCard(
        model=model, source=source, dataset=dataset, training_dataset=training_dataset,
        data_folder=provenance.get("data") if isinstance(provenance.get("data"), str) else None,
        federated=federated, imported=imported,
        network_config={k: v for k, v in (model.network_config or {}).items() if k != "bundle_pipeline"},
        preprocessing=model.preprocessing or {}, bundle_pipeline=_bundle_pipeline_rows(model),
        training_settings=settings_, dice=_dice_rows(model), mean_dice=_number(metrics.get("mean_dice")),
        num_val=num_val if isinstance(num_val, int) else None,
        num_train=provenance.get("num_train") if isinstance(provenance.get("num_train"), int) else None,
        device=provenance.get("device") or None, duration_s=_number(provenance.get("duration_s")),
        trained_at=provenance.get("trained_at") or None,
    )
