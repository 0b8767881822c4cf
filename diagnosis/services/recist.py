"""The doctor's RECIST 1.1 choice of target and non-target lesions on a baseline study, checked by the
plain-Python engine :mod:`diagnosis.longitudinal.recist` (Eisenhauer et al., Eur J Cancer 45:228–247, 2009,
§3.1 measurability, §3.3 at most 5 targets and 2 per organ) and audit-logged."""

from __future__ import annotations

from collections import Counter

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from annotation.models import Study
from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..longitudinal.recist import (
    NON_TARGET_RESPONSES,
    MAX_TARGETS,
    MAX_TARGETS_PER_ORGAN,
    RecistError,
    TargetLesion,
    lesion_measurable,
    organ_key,
    validate_targets,
)
from ..models import Finding, RecistLesion, RecistSelection

__all__ = ["default_organ", "recist_non_target_set", "recist_selection_set", "series_slice_thickness_mm"]

# The engine's refusals, by code, in words people read (translated); the engine's own text is English.
_REFUSALS = {
    "no_targets": _("Choose at least one target lesion."),
    "duplicate_target": _("A lesion is chosen twice."),
    "too_many_targets": _("%(count)s target lesions: RECIST 1.1 allows at most %(max)s."),
    "too_many_in_organ": _("More than %(max)s target lesions in one organ (%(organs)s): RECIST 1.1 allows %(max)s "
                           "per organ."),
    "not_measurable": _("Not measurable, so not a target (RECIST 1.1: a lesion ≥ 10 mm long axis, a lymph node "
                        "≥ 15 mm short axis): finding %(findings)s."),
}


def default_organ(finding: Finding) -> str:
    """Return the organ a finding counts against when the doctor names none: ``lung`` for a lung nodule
    (both lungs are one organ, EORTC RECIST clarification "paired organs"), else its region, else ``""``."""
    if finding.kind == Finding.Kind.LUNG_NODULE:
        return "lung"
    return " ".join(finding.region.lower().split())


def series_slice_thickness_mm(finding: Finding) -> float:
    """Return the slice spacing (mm) of the finding's series, the thickness RECIST 1.1 §3.1.1 measures against."""
    spacing = finding.series.spacing_mm or [5.0]
    return float(spacing[0])


def _refuse(code: str, params: dict) -> ServiceError:
    return ServiceError(_REFUSALS[code], params=params, code=code)


def _lesions(study: Study, rows: list[dict]) -> list[tuple[Finding, str, bool]]:
    ids = [int(r["finding"]) for r in rows]
    findings = {f.pk: f for f in Finding.objects.filter(pk__in=ids, study=study).select_related("series")}
    out = []
    for row in rows:
        finding = findings.get(int(row["finding"]))
        if finding is None:
            raise ServiceError(_("Finding %(finding)s is not a finding of this study."),
                               params={"finding": row["finding"]}, code="finding_not_in_study")
        if finding.status == Finding.Status.REJECTED:
            raise ServiceError(_("Finding %(finding)s was rejected and cannot be a RECIST lesion."),
                               params={"finding": finding.pk}, code="finding_rejected")
        lymph_node = bool(row.get("lymph_node", False))
        organ = " ".join(str(row.get("organ") or "").lower().split()) or default_organ(finding)
        if not organ and not lymph_node:
            raise ServiceError(_("Name the organ of finding %(finding)s."), params={"finding": finding.pk},
                               code="organ_required")
        out.append((finding, organ or "lymph node", lymph_node))
    return out


@transaction.atomic
def recist_selection_set(*, user: User, study: Study, targets: list[dict],
                         non_targets: list[dict] | None = None) -> RecistSelection:
    """Store the doctor's RECIST 1.1 lesions of ``study`` (the baseline), replacing an earlier choice.

    Parameters
    ----------
    targets, non_targets : list of dict
        ``{"finding": id, "organ": str (optional), "lymph_node": bool (optional)}``; the organ defaults to
        :func:`default_organ`. No target and at least one non-target is non-target disease only (its
        follow-ups are assessed by RECIST 1.1 Table 2). A different set of non-targets removes the doctor's
        non-target responses recorded at follow-ups (:func:`recist_non_target_set`).
        Targets are measured at baseline by the finding's long axis (mm), a lymph
        node's by its short axis (mm).

    Raises
    ------
    portal.api_errors.ServiceError
        (400, nothing stored changes) ``finding_not_in_study`` (a finding of another study, patient or
        hospital), ``finding_rejected``, ``organ_required``, ``duplicate_target`` (a finding twice, also as
        target and non-target), or the RECIST 1.1 rules of
        :func:`diagnosis.longitudinal.recist.validate_targets`: ``no_targets``, ``too_many_targets`` (> 5),
        ``too_many_in_organ`` (> 2 in an organ), ``not_measurable``.
    """
    non_targets = non_targets or []
    chosen = _lesions(study, targets)
    others = _lesions(study, non_targets)
    ids = [f.pk for f, _o, _n in chosen + others]
    if len(ids) != len(set(ids)):
        raise _refuse("duplicate_target", {})
    lesions = [TargetLesion(key=str(f.pk), organ=organ, long_axis_mm=f.long_axis_mm or 0.0,
                            short_axis_mm=f.short_axis_mm or 0.0, lymph_node=node) for f, organ, node in chosen]
    thickness = max([series_slice_thickness_mm(f) for f, _o, _n in chosen] or [5.0])
    try:
        if lesions or not others:  # non-target disease only (RECIST 1.1 Table 2) has no target to check
            validate_targets(lesions, slice_thickness_mm=thickness)
    except RecistError as exc:
        per_organ = Counter(organ_key(t) for t in lesions)
        limit = MAX_TARGETS if exc.code == "too_many_targets" else MAX_TARGETS_PER_ORGAN
        params = {"count": len(lesions), "max": limit,
                  "organs": ", ".join(sorted(o for o, n in per_organ.items() if n > MAX_TARGETS_PER_ORGAN)),
                  "findings": ", ".join(t.key for t in lesions
                                        if not lesion_measurable(t, slice_thickness_mm=thickness))}
        raise _refuse(exc.code, params) from None

    selection = RecistSelection.objects.select_for_update().filter(study=study).first()
    created = selection is None
    if created:
        selection = RecistSelection(study=study)
    selection.chosen_by, selection.chosen_at = user, timezone.now()
    # The doctor's non-target judgements were of the earlier non-target lesions: another set voids them.
    before = set() if created else set(selection.lesions.filter(role=RecistLesion.Role.NON_TARGET)
                                       .values_list("finding_id", flat=True))
    cleared = bool(selection.non_target_responses) and before != {f.pk for f, _o, _n in others}
    if cleared:
        selection.non_target_responses = {}
    selection.save()
    selection.lesions.all().delete()
    RecistLesion.objects.bulk_create(
        [RecistLesion(selection=selection, finding=f, role=RecistLesion.Role.TARGET, organ=organ, lymph_node=node)
         for f, organ, node in chosen]
        + [RecistLesion(selection=selection, finding=f, role=RecistLesion.Role.NON_TARGET, organ=organ,
                        lymph_node=node) for f, organ, node in others])
    audit_record(actor=user, action=AuditLog.Action.CREATE if created else AuditLog.Action.UPDATE,
                 target_type="recist_selection", target_id=selection.pk, hospital=study.hospital,
                 detail={"study": study.pk, "targets": [f.pk for f, _o, _n in chosen],
                         "non_targets": [f.pk for f, _o, _n in others],
                         **({"non_target_responses_cleared": True} if cleared else {})})
    return selection


@transaction.atomic
def recist_non_target_set(*, user: User, study: Study, response: str | None) -> RecistSelection:
    """Record the doctor's non-target response at the follow-up ``study`` (RECIST 1.1 §4.3.2), audited.

    The non-target response is a judgement, not a measurement: CR (every non-target lesion gone, every
    node < 10 mm short axis), ``non-CR/non-PD``, PD ("unequivocal progression" of the non-target disease
    as a whole) or NE (not all evaluated). It is stored on the selection that applies to ``study``
    (:func:`diagnosis.selectors.recist_selection_for`) under the study's id, and combined with the
    target response and new lesions by RECIST 1.1 Table 1, or Table 2 for non-target disease only
    (Eisenhauer et al., Eur J Cancer 45:228–247, 2009). ``response`` None or ``""`` removes the
    judgement: the response derived from the lesions followed applies again.

    Raises
    ------
    portal.api_errors.ServiceError
        (400, nothing changes) ``no_recist_selection`` (no baseline before this study),
        ``not_a_follow_up`` (``study`` is the baseline), ``no_non_targets`` (none chosen),
        ``bad_response`` (not one of CR, non-CR/non-PD, PD, NE).
    """
    from ..selectors import recist_selection_for

    if response and response not in NON_TARGET_RESPONSES:
        raise ServiceError(_("The non-target response must be CR, non-CR/non-PD, PD or NE."), code="bad_response")
    found = recist_selection_for(study=study)
    if found is None:
        raise ServiceError(_("No RECIST 1.1 baseline applies to this study: choose the lesions on the baseline "
                             "first."), code="no_recist_selection")
    selection = RecistSelection.objects.select_for_update().get(pk=found.pk)
    if selection.study_id == study.pk:
        raise ServiceError(_("This study is the RECIST 1.1 baseline: the non-target response is judged at a "
                             "follow-up."), code="not_a_follow_up")
    if not selection.lesions.filter(role=RecistLesion.Role.NON_TARGET).exists():
        raise ServiceError(_("No non-target lesion was chosen on the baseline."), code="no_non_targets")
    responses = dict(selection.non_target_responses or {})
    before = (responses.get(str(study.pk)) or {}).get("response")
    if response:
        responses[str(study.pk)] = {"response": response, "by": user.pk, "at": timezone.now().isoformat()}
    else:
        responses.pop(str(study.pk), None)
    selection.non_target_responses = responses
    selection.full_clean()
    selection.save(update_fields=["non_target_responses"])
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="recist_selection", target_id=selection.pk,
                 hospital=study.hospital,
                 detail={"study": study.pk, "non_target_response": response or None, "before": before})
    return selection
