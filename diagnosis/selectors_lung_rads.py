"""Lung-RADS v2022 suggestion from a study's accepted nodules, read for :mod:`diagnosis.selectors`.

The engine is :mod:`diagnosis.measurements.lung_rads` (ACR Lung-RADS v2022). Here the nodules are
read from the findings, and, where the study was compared with its prior
(:class:`diagnosis.models.StudyRegistration`), each nodule's prior nodule is the one its
:class:`diagnosis.models.FindingMatch` row names, read by the selector RECIST shares
(:mod:`diagnosis.selectors_finding_chain`) (the registered matching, with the doctor's re-links
and unlinks); without a comparison the engine's centroid-distance rule decides. Each paired nodule
also gets its volume doubling time (Schwartz 1961) and growth category
(:mod:`diagnosis.longitudinal.growth`), shown beside its Lung-RADS category and changing none.
"""

from __future__ import annotations

import numpy as np
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from .longitudinal.registration import transform_points
from .models import Finding, StudyRegistration
from .selectors_finding_chain import registration_for, registration_pairings

# LIDC calcification ratings of a benign pattern: 1 popcorn, 2 laminated, 3 solid, 5 central (4 non-central
# and 6 absent are not).
_BENIGN_CALCIFICATION = {1, 2, 3, 5}


def _lung_rads_rule_texts() -> dict:
    return {
        "no_nodules": _("No lung nodules."),
        "benign_calcification": _("Nodule with a benign pattern of calcification (complete, central, popcorn, "
                                  "concentric rings) or fat."),
        "solid_baseline_lt6": _("Solid nodule < 6 mm at baseline."),
        "solid_new_lt4": _("New solid nodule < 4 mm."),
        "solid_baseline_6_8": _("Solid nodule ≥ 6 to < 8 mm at baseline."),
        "solid_new_4_6": _("New solid nodule 4 to < 6 mm."),
        "solid_baseline_8_15": _("Solid nodule ≥ 8 to < 15 mm at baseline."),
        "solid_new_6_8": _("New solid nodule 6 to < 8 mm."),
        "solid_growing_lt8": _("Growing solid nodule < 8 mm."),
        "solid_baseline_ge15": _("Solid nodule ≥ 15 mm at baseline."),
        "solid_new_or_growing_ge8": _("New or growing solid nodule ≥ 8 mm."),
        "part_solid_baseline_lt6": _("Part-solid nodule < 6 mm total diameter at baseline."),
        "part_solid_baseline_solid_lt6": _("Part-solid nodule ≥ 6 mm total diameter with a solid component < 6 mm "
                                           "at baseline."),
        "part_solid_new_lt6": _("New part-solid nodule < 6 mm total diameter."),
        "part_solid_baseline_solid_6_8": _("Part-solid nodule ≥ 6 mm with a solid component ≥ 6 to < 8 mm at "
                                           "baseline."),
        "part_solid_new_or_growing_solid_lt4": _("New or growing part-solid nodule with a solid component < 4 mm."),
        "part_solid_baseline_solid_ge8": _("Part-solid nodule with a solid component ≥ 8 mm at baseline."),
        "part_solid_new_or_growing_solid_ge4": _("New or growing part-solid nodule with a solid component ≥ 4 mm."),
        "part_solid_solid_unmeasured": _("Part-solid nodule ≥ 6 mm whose solid component is not measured: at least "
                                         "category 3; measure the solid component to decide 3, 4A or 4B."),
        "ground_glass_lt30": _("Non-solid (ground-glass) nodule < 30 mm at baseline, new or growing."),
        "ground_glass_ge30_stable": _("Non-solid (ground-glass) nodule ≥ 30 mm, unchanged."),
        "ground_glass_ge30": _("Non-solid (ground-glass) nodule ≥ 30 mm at baseline, new or growing (a slowly "
                               "growing one is category 2: the doctor judges the pace)."),
        "stable_3_months": _("Category 3 or 4 nodule unchanged for ≥ 3 months."),
    }


def _lung_rads_nodule(f: Finding, *, centre=None):
    """The engine's nodule for a finding, or the reason it cannot be assessed."""
    from .measurements.lung_rads import LungRadsNodule, mean_diameter_mm

    if not f.long_axis_mm:
        return "no_size"
    if not f.composition:
        return "no_composition"
    calcification = (f.characteristics or {}).get("calcification")
    return LungRadsNodule(
        mean_diameter_mm=mean_diameter_mm(f.long_axis_mm, f.short_axis_mm), composition=f.composition,
        solid_component_mm=f.solid_component_mm,
        centre_lps_mm=tuple(f.centroid_lps_mm if centre is None else centre),
        benign_calcification=calcification in _BENIGN_CALCIFICATION, key=f.pk,
        volume_ml=f.volume_ml,
    )


def _lung_rads_findings(findings: QuerySet[Finding], study) -> QuerySet[Finding]:
    return (findings
            .filter(study=study, kind=Finding.Kind.LUNG_NODULE,
                    status__in=[Finding.Status.ACCEPTED, Finding.Status.EDITED])
            .order_by("pk"))


def _lung_rads_nodules(findings: QuerySet[Finding], study) -> tuple[list, list[dict]]:
    nodules, unassessed = [], []
    for f in _lung_rads_findings(findings, study):
        nodule = _lung_rads_nodule(f)
        if isinstance(nodule, str):
            unassessed.append({"finding_id": f.pk, "reason": nodule})
        else:
            nodules.append(nodule)
    return nodules, unassessed


def _registration(study, prior_study) -> StudyRegistration | None:
    """The stored comparison with ``prior_study``, or without one the latest compared prior's (by date)."""
    return registration_for(study, prior_study)


def _registered_pairings(visible: QuerySet[Finding], registration: StudyRegistration, nodules: list):
    """Return (pairings, prior nodules) from the comparison's FindingMatch rows.

    A current nodule with a ``matched`` row is paired with its prior finding, one with a ``new`` row is
    new; a nodule with no row (accepted after the comparison) is left to the distance rule. The prior
    nodules are the prior's accepted nodules and every matched prior finding with a size (a prior
    finding the doctor paired need not have been accepted on the prior), their centres mapped into
    this study's frame by the registration, so that the distance rule compares registered centres.
    """
    from .measurements.lung_rads import LungRadsNodule, mean_diameter_mm

    matrix = np.asarray(registration.transform["matrix_lps_mm"], float)
    keys = {n.key for n in nodules}
    paired = registration_pairings(registration)  # the pairings RECIST follows too
    matched = {k: p for k, p in paired.prior_of.items() if k in keys}
    prior_ids = set(_lung_rads_findings(visible, registration.prior).values_list("pk", flat=True))
    prior = []
    for f in visible.filter(pk__in=prior_ids | set(matched.values())).order_by("pk"):
        centre = transform_points(matrix, np.asarray([f.centroid_lps_mm], float))[0]
        nodule = _lung_rads_nodule(f, centre=centre)
        if isinstance(nodule, str) and f.long_axis_mm:
            # Paired by the doctor or the rule, but without a composition: its size still tells growth.
            nodule = LungRadsNodule(mean_diameter_mm=mean_diameter_mm(f.long_axis_mm, f.short_axis_mm),
                                    composition=f.composition or "", solid_component_mm=f.solid_component_mm,
                                    centre_lps_mm=tuple(centre), key=f.pk, volume_ml=f.volume_ml)
        if not isinstance(nodule, str):
            prior.append(nodule)
    known = {p.key for p in prior}
    # A pair whose prior finding has no size (or is not visible) cannot say growth: distance rule.
    pairings = {k: p for k, p in matched.items() if p in known}
    pairings.update({k: None for k in paired.new if k in keys})
    return pairings, prior


def _round(value, digits: int):
    return None if value is None else round(float(value), digits)


def _lung_rads_suggestion(visible: QuerySet[Finding], study, prior_study) -> dict:
    """The Lung-RADS suggestion (see :func:`diagnosis.selectors.lung_rads_suggestion`)."""
    from portal.api_errors import ServiceError

    from .measurements.lung_rads import SOURCE, lung_rads_suggest

    def check(prior) -> None:
        if prior.patient_id != study.patient_id or prior.pk == study.pk:
            raise ServiceError(_("The prior study must be another study of the same patient."), code="prior_mismatch")
        if study.study_date and prior.study_date and prior.study_date >= study.study_date:
            raise ServiceError(_("The prior study must be earlier than this one."), code="prior_mismatch")

    nodules, unassessed = _lung_rads_nodules(visible, study)
    if prior_study is not None:
        check(prior_study)
    registration = _registration(study, prior_study)
    if registration is not None and prior_study is None:
        try:
            check(registration.prior)
            prior_study = registration.prior
        except ServiceError:  # a comparison whose dates were changed since: not a prior any more
            registration = None
    prior, interval, interval_days, pairings = None, None, None, None
    if prior_study is not None:
        if study.study_date and prior_study.study_date:
            interval_days = (study.study_date - prior_study.study_date).days
            interval = round(interval_days / 30.4375, 1)
        if registration is not None:
            pairings, prior = _registered_pairings(visible, registration, nodules)
        else:
            prior, _unused = _lung_rads_nodules(visible, prior_study)
    result = lung_rads_suggest(nodules, prior=prior, prior_interval_months=interval, matches=pairings,
                               prior_interval_days=interval_days)
    texts = _lung_rads_rule_texts()
    by_key = {x.key: x for x in nodules}
    return {
        "category": result.category,
        "rule_code": result.rule_code,
        "rule": str(texts[result.rule_code]),
        "source": SOURCE,
        "nodules": [{"finding_id": n.key, "category": n.category, "rule_code": n.rule_code,
                     "rule": str(texts[n.rule_code]), "course": n.course,
                     "mean_diameter_mm": by_key[n.key].mean_diameter_mm,
                     "matched_prior_finding_id": n.prior_key,
                     "matching": {"given": "registered"}.get(n.matching, n.matching),
                     "vdt_days": _round(n.vdt_days, 1), "growth_category": n.growth_category,
                     "volume_change_pct": _round(n.volume_change_pct, 2)}
                    for n in result.nodules],
        "unassessed": unassessed,
        "prior_study_id": prior_study.pk if prior_study is not None else None,
        "prior_interval_months": interval,
        "matching": None if prior_study is None else ("registered" if registration is not None else "distance"),
        "registration_id": registration.pk if registration is not None else None,
        "suggestion_only": True,
    }
