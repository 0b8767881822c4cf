"""Questionnaire scores as a feature of diagnosis' similar cases (registered from ``FollowupConfig.ready``).

Registered in :data:`diagnosis.selectors_similar.similar_case_score_sources`, so diagnosis never imports
follow-up. Only the given patients of the given hospital are read.
"""

from __future__ import annotations

from .questionnaires.scoring import scale_max


def similar_case_scores(*, hospital_id: int, patient_ids: list[int]) -> dict[int, dict[str, float]]:
    """Return ``{patient_id: {questionnaire_code: fraction}}``: each patient's latest completed total score
    of each questionnaire as a fraction of the questionnaire's highest total (PHQ-9 / 27, GAD-7 / 21), in
    [0, 1]. Questionnaires scored as a mean or without a maximum are left out."""
    from .models import QuestionnaireAssignment

    rows = (QuestionnaireAssignment.objects
            .filter(patient_id__in=patient_ids, patient__hospital_id=hospital_id,
                    status=QuestionnaireAssignment.Status.COMPLETED, submitted_at__isnull=False)
            .select_related("questionnaire").order_by("patient_id", "-submitted_at", "-pk"))
    scores: dict[int, dict[str, float]] = {}
    highest_by_questionnaire: dict[int, float | None] = {}
    for row in rows:
        code = row.questionnaire.code
        if code in scores.get(row.patient_id, {}):
            continue  # an older score of the same questionnaire
        total = row.score.get("total") if isinstance(row.score, dict) else None
        if row.questionnaire_id not in highest_by_questionnaire:
            highest_by_questionnaire[row.questionnaire_id] = scale_max(row.questionnaire.definition or {})
        highest = highest_by_questionnaire[row.questionnaire_id]
        if not isinstance(total, (int, float)) or not highest:
            continue
        scores.setdefault(row.patient_id, {})[code] = min(max(float(total) / highest, 0.0), 1.0)
    return scores


def register() -> None:
    """Add the scores to diagnosis' similar cases (called from ``FollowupConfig.ready``)."""
    from diagnosis.selectors_similar import similar_case_score_sources

    similar_case_score_sources.register("questionnaires", similar_case_scores)
