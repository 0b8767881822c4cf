"""Active learning: ranking unlabelled series by a model's uncertainty."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..models import Series, SegmentationModel
from ..storage import series_volume_load
from .registry import segmenter_for_model


def uncertainty_rank_start(*, user: User, model: SegmentationModel, method: str = "entropy", limit: int = 20) -> list[int]:
    """Queue uncertainty scoring of the user's hospital's unlabelled series (after commit); return their ids.

    Raises ServiceError ``bad_method`` or ``not_scorable`` for the classical method.
    """
    from ..ml.uncertainty import METHODS
    from ..selectors import unlabelled_series
    from ..tasks import uncertainty_score_task

    if method not in METHODS:
        raise ServiceError(_("Choose the uncertainty method among %(methods)s."),
                           params={"methods": ', '.join(METHODS)}, code="bad_method")
    if model.architecture in (SegmentationModel.Architecture.CLASSICAL_LUNG,
                              SegmentationModel.Architecture.CLASSICAL_LUNG_NODULE):
        raise ServiceError(_("The classical method gives no probabilities to score."), code="not_scorable")
    series_ids = [s.pk for s in unlabelled_series(user=user, modality=model.modality)[:limit]]
    model_id = model.pk
    for series_id in series_ids:
        transaction.on_commit(lambda sid=series_id: uncertainty_score_task.delay(sid, model_id, method))
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="uncertainty_ranking", target_id=model.pk,
                 detail={"series": len(series_ids), "method": method})
    return series_ids


def uncertainty_score_compute(*, series_id: int, model_id: int, method: str = "entropy", samples: int = 6):
    """Score one series with one model and store the result (called by the Celery task; idempotent).

    Raises ValueError from ``annotation.ml.uncertainty`` for a model it cannot score.
    """
    from ..ml.uncertainty import segmenter_uncertainty
    from ..models import UncertaintyScore

    series = Series.objects.get(pk=series_id)
    model = SegmentationModel.objects.get(pk=model_id)
    segmenter, _device = segmenter_for_model(model)
    result = segmenter_uncertainty(segmenter, series_volume_load(series), method=method, samples=samples)
    score, _created = UncertaintyScore.objects.update_or_create(
        series=series, model=model, method=method, defaults={"score": result.score, "details": result.to_dict()})
    return score
