"""Questionnaire scores as FHIR Observations at ``/fhir/Observation`` (registered on diagnosis' endpoint).

Registered from ``FollowupConfig.ready`` through :mod:`diagnosis.fhir.registry`, so diagnosis never
imports follow-up. Only completed assignments with a total score are served; the patients and
assignments visible are follow-up's own (clinicians of the patient's hospital, platform admins).
"""

from __future__ import annotations

from django.http import Http404

from diagnosis.fhir.registry import ObservationSource, observation_source_register

from .questionnaires.fhir import score_observation
from .selectors import assignment_visible_queryset

PREFIX = "questionnaire-score-"


def _scored(user):
    from .models import QuestionnaireAssignment

    return (assignment_visible_queryset(user)
            .filter(status=QuestionnaireAssignment.Status.COMPLETED, score__total__isnull=False)
            .select_related("questionnaire"))


def assignment_score_observation(assignment) -> dict:
    """Return the score Observation of a completed, scored ``QuestionnaireAssignment``."""
    score = assignment.score
    return score_observation(
        observation_id=f"{PREFIX}{assignment.pk}", questionnaire_code=assignment.questionnaire.code,
        questionnaire_title=assignment.questionnaire.title, patient_id=assignment.patient_id,
        total=score["total"], max_total=score.get("max_total"),
        band_label=score.get("band_label_en") or score.get("band_label") or "",
        submitted_at=assignment.submitted_at.isoformat(timespec="seconds") if assignment.submitted_at else None)


def score_search(*, user, patient_id: int) -> list[dict]:
    """Return the score Observations of one patient that ``user`` may see, oldest first."""
    rows = _scored(user).filter(patient_id=patient_id).order_by("submitted_at", "pk")
    return [assignment_score_observation(a) for a in rows if a.score.get("total") is not None]


def score_read(*, user, key: str) -> dict:
    """Return the score Observation ``questionnaire-score-{key}``, or raise Http404."""
    if not key.isdigit() or len(key) > 18:
        raise Http404("No such observation.")
    assignment = _scored(user).filter(pk=int(key)).first()
    if assignment is None or assignment.score.get("total") is None:
        raise Http404("No such observation.")
    return assignment_score_observation(assignment)


def register() -> None:
    """Serve the score Observations at /fhir/Observation (called from ``FollowupConfig.ready``)."""
    observation_source_register(ObservationSource(prefix=PREFIX, search=score_search, read=score_read))
