"""Reads of similar cases (issue 14): the earlier cases of a study's hospital most like it.

A *case* is a study of the hospital with a signed (final) report. Its features
(:class:`diagnosis.similarity.CaseFeatures`) are read from the database:

- findings: the study's accepted or edited findings (what the signed report lists); a study none of
  whose findings was decided on contributes its suggested ones; rejected findings never count;
- measurements: the measured segments (name → volume, mL) of the signed report's segmentation;
- age at the study (from the patient's date of birth and the study date) and sex;
- the coded impression: the Lung-RADS category the doctor confirmed on the signed report;
- questionnaire scores: from the apps above diagnosis, through :data:`similar_case_score_sources`
  (followup registers the latest completed score of each instrument as a fraction of its maximum).

The candidates of a study are the other patients' studies of the *same hospital* (never another's)
acquired before it (an earlier ``study_date``; for a study without a date, stored before it) with a
signed report. The patient's own earlier studies are left out: they are priors (the comparison
section), not similar cases. The ranking is :func:`diagnosis.similarity.rank_similar` with the
hospital's weights (:class:`diagnosis.models.SimilarityWeights`, defaults when it set none).
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Prefetch, Q
from django.utils.translation import gettext_lazy
from django.utils.translation import gettext_lazy as _

from annotation.hooks import Hook
from annotation.models import Study
from portal.api_errors import ServiceError

from .models import Finding, Report, SimilarityWeights
from .similarity import DEFAULT_WEIGHTS, FEATURES, CaseFeatures, FindingFeatures, feature_similarities, rank_similar

__all__ = [
    "K_MAX",
    "LUNG_RADS_MANAGEMENT",
    "MAX_CANDIDATES",
    "similar_case_score_sources",
    "similar_cases",
    "similar_cases_available",
    "similarity_weights_for",
]

K_MAX = 20
"""The most cases one request may ask for."""

MAX_CANDIDATES = 2000
"""At most this many earlier studies (the most recent) are compared with a study."""

_same = gettext_lazy("Continue annual screening with low-dose CT in 12 months.")
_refer = gettext_lazy("Diagnostic chest CT with or without contrast; PET/CT may be considered if there is a solid "
                      "nodule or solid component ≥ 8 mm; tissue sampling and/or referral for further clinical "
                      "evaluation.")
LUNG_RADS_MANAGEMENT = {
    "0": gettext_lazy("Additional lung cancer screening CT images or comparison with prior chest CT are needed."),
    "1": _same,
    "2": _same,
    "3": gettext_lazy("Low-dose CT in 6 months."),
    "4A": gettext_lazy("Low-dose CT in 3 months; PET/CT may be considered if there is a solid nodule or solid "
                       "component ≥ 8 mm."),
    "4B": _refer,
    "4X": _refer,
}
"""The management of each Lung-RADS v2022 category (ACR Lung-RADS v2022, "Management" column), shown as the
recommendation of a similar case whose signed report carries a confirmed category."""

similar_case_score_sources = Hook(
    "similar_case_score_sources",
    """Questionnaire scores of the apps above diagnosis, as a feature of similar cases.

    Each function is called as ``f(hospital_id=int, patient_ids=list[int])`` and returns
    ``{patient_id: {instrument_code: fraction}}``: each instrument's latest completed total score as a
    fraction of its maximum, in [0, 1].
    """,
)

_DECIDED = (Finding.Status.ACCEPTED, Finding.Status.EDITED)


def similarity_weights_for(*, hospital_id: int) -> dict[str, float]:
    """Return the hospital's similar-cases weights (feature → weight), the defaults when it set none."""
    row = SimilarityWeights.objects.filter(hospital_id=hospital_id).first()
    if row is None:
        return dict(DEFAULT_WEIGHTS)
    return {name: float(getattr(row, name)) for name in FEATURES}


def _signed_reports() -> Prefetch:
    return Prefetch("reports", to_attr="signed_reports",
                    queryset=Report.objects.filter(status=Report.Status.FINAL)
                    .select_related("segmentation").prefetch_related("segmentation__measurements")
                    .order_by("-version"))


def _case_findings() -> Prefetch:
    return Prefetch("findings", to_attr="case_findings",
                    queryset=Finding.objects.exclude(status=Finding.Status.REJECTED).order_by("pk"))


def _findings_of(study: Study) -> list[Finding]:
    decided = [f for f in study.case_findings if f.status in _DECIDED]
    return decided or list(study.case_findings)


def _age_years(study: Study) -> float | None:
    birth = study.patient.birth_date
    if birth is None or study.study_date is None:
        return None
    return (study.study_date - birth).days / 365.25


def _case_features(study: Study, report: Report, scores: dict[str, float]) -> CaseFeatures:
    findings = tuple(
        FindingFeatures(kind=f.kind, long_axis_mm=f.long_axis_mm, short_axis_mm=f.short_axis_mm,
                        volume_ml=f.volume_ml, composition=f.composition, side=f.side, region=f.region)
        for f in _findings_of(study))
    volumes = {}
    if report.segmentation is not None:
        volumes = {m.label_name: m.volume_ml for m in report.segmentation.measurements.all()}
    return CaseFeatures(case_id=study.pk, findings=findings, segment_volumes_ml=volumes, age_years=_age_years(study),
                        sex=study.patient.sex or "", impression_code=report.lung_rads_category or "",
                        questionnaire_scores=scores)


def _scores(hospital_id: int, patient_ids: list[int]) -> dict[int, dict[str, float]]:
    merged: dict[int, dict[str, float]] = {}
    for _key, source in similar_case_score_sources.items():
        for patient_id, scores in source(hospital_id=hospital_id, patient_ids=patient_ids).items():
            merged.setdefault(patient_id, {}).update(scores)
    return merged


def _with_case_data(queryset):
    return queryset.select_related("patient").prefetch_related(_signed_reports(), _case_findings())


def similar_cases_available(*, study: Study) -> bool:
    """Return True when the study can be compared: it has a signed report and a finding not rejected."""
    return (Report.objects.filter(study=study, status=Report.Status.FINAL).exists()
            and Finding.objects.filter(study=study).exclude(status=Finding.Status.REJECTED).exists())


def _candidates(study: Study):
    earlier = (Q(study_date__lt=study.study_date) if study.study_date is not None
               else Q(created_at__lt=study.created_at))
    return (_with_case_data(Study.objects.filter(earlier, hospital_id=study.hospital_id,
                                                 reports__status=Report.Status.FINAL)
                            .exclude(patient_id=study.patient_id).exclude(pk=study.pk).distinct())
            .order_by("-study_date", "-created_at", "-pk")[:MAX_CANDIDATES])


def _finding_row(f: Finding) -> dict:
    return {"kind": f.kind, "kind_label": str(f.get_kind_display()), "side": f.side, "region": f.region,
            "long_axis_mm": None if f.long_axis_mm is None else round(f.long_axis_mm, 1),
            "volume_ml": None if f.volume_ml is None else round(f.volume_ml, 3),
            "composition": f.composition,
            "composition_label": str(f.get_composition_display()) if f.composition else ""}


def similar_cases(*, study: Study, k: int = 5) -> dict:
    """Return the ``k`` earlier cases of the study's hospital most similar to ``study``.

    The caller has checked that the user may see ``study`` (``annotation.selectors.study_get``); every
    case returned is of the same hospital.

    Returns
    -------
    dict
        ``study_id``, ``k``, ``weights`` (feature → weight used), ``features`` (of the study: the
        per-feature presence), ``candidate_count`` and ``cases``: most similar first, each with
        ``study_id``, ``study_date``, ``similarity`` in [0, 1], ``parts`` (feature → similarity),
        ``report_id``, ``report_version``, ``impression``, ``lung_rads_category``, ``recommendation``
        (the category's Lung-RADS v2022 management, empty without a category), ``signed_at`` and
        ``findings``.

    Raises
    ------
    ServiceError
        ``bad_k`` (400): k outside 1 … :data:`K_MAX`; ``report_not_signed`` (409): the study has no
        signed report; ``no_findings`` (409): it has no finding (rejected ones do not count).
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= K_MAX:
        raise ServiceError(_("k must be a whole number from 1 to %(max)d."), params={"max": K_MAX}, code="bad_k")
    study = _with_case_data(Study.objects.filter(pk=study.pk)).get()
    if not study.signed_reports:
        raise ServiceError(_("Similar cases need a signed report of this study."), code="report_not_signed",
                           status_code=409)
    if not study.case_findings:
        raise ServiceError(_("Similar cases need a finding on this study."), code="no_findings", status_code=409)
    candidates = list(_candidates(study))
    scores = _scores(study.hospital_id, sorted({study.patient_id} | {c.patient_id for c in candidates}))
    weights = similarity_weights_for(hospital_id=study.hospital_id)
    query = _case_features(study, study.signed_reports[0], scores.get(study.patient_id, {}))
    by_id = {c.pk: c for c in candidates}
    ranked = rank_similar(query, [_case_features(c, c.signed_reports[0], scores.get(c.patient_id, {}))
                                  for c in candidates], k=k, weights=weights)
    cases = []
    for row in ranked:
        case = by_id[row.case_id]
        report = case.signed_reports[0]
        category = report.lung_rads_category or ""
        cases.append({
            "study_id": case.pk,
            "study_date": case.study_date.isoformat() if isinstance(case.study_date, dt.date) else None,
            "similarity": round(row.score, 3),
            "parts": {name: round(value, 3) for name, value in row.parts.items()},
            "report_id": report.pk,
            "report_version": report.version,
            "impression": report.impression,
            "lung_rads_category": category,
            "recommendation": str(LUNG_RADS_MANAGEMENT.get(category, "")),
            "signed_at": report.signed_at.isoformat() if report.signed_at else None,
            "findings": [_finding_row(f) for f in _findings_of(case)],
        })
    # A feature the study has is one it shares with itself.
    own = feature_similarities(query, query)
    present = {name: name in own for name in FEATURES}
    return {"study_id": study.pk, "k": k, "weights": weights, "candidate_count": len(candidates),
            "features": present, "cases": cases}
