"""Reads of the reference ranges: a study's figures, the published range for the patient, the hospital's cohort.

A *figure* is one number the reference table knows (:class:`diagnosis.models.ReferenceRange.Measure`)
computed from a segmentation's stored measurements by segment name:

* CT, segments ``right lung`` and ``left lung`` (the built-in ``ct-lung`` model,
  :data:`annotation.ml.lung.LUNG_LABEL_TABLE`): each lung's volume, their sum, and each lung's share
  of the sum in %;
* MR, segments ``Anterior`` and ``Posterior`` (the Medical Segmentation Decathlon Task04 hippocampus
  convention: one hippocampus per crop, side unknown) or ``hippocampus``: one hippocampus' volume;
  ``right hippocampus`` / ``left hippocampus``: that side's volume.
"""

from __future__ import annotations

from collections import OrderedDict

from django.http import Http404

from annotation.selectors import study_visible_queryset
from portal.models import Role, User

from .measurements.reference import age_in_years, box_summary
from .models import Measurement, ReferenceRange

M = ReferenceRange.Measure


def _figures_of(rows: list[Measurement], modality: str) -> "OrderedDict[str, dict]":
    """Return ``{measure: {"value", "labels"}}`` for the measurement rows of one segmentation."""
    by_name = {r.label_name.strip().lower(): r for r in rows}
    out: OrderedDict[str, dict] = OrderedDict()
    if modality == "CT":
        right, left = by_name.get("right lung"), by_name.get("left lung")
        if right is not None and left is not None and right.volume_ml + left.volume_ml > 0:
            total = right.volume_ml + left.volume_ml
            out[M.LUNG_TOTAL_ML] = {"value": total, "labels": [right.label, left.label]}
            out[M.LUNG_RIGHT_ML] = {"value": right.volume_ml, "labels": [right.label]}
            out[M.LUNG_LEFT_ML] = {"value": left.volume_ml, "labels": [left.label]}
            out[M.LUNG_RIGHT_PCT] = {"value": 100.0 * right.volume_ml / total, "labels": [right.label]}
            out[M.LUNG_LEFT_PCT] = {"value": 100.0 * left.volume_ml / total, "labels": [left.label]}
    elif modality == "MR":
        anterior, posterior = by_name.get("anterior"), by_name.get("posterior")
        whole = by_name.get("hippocampus")
        if anterior is not None and posterior is not None:
            out[M.HIPPOCAMPUS_ML] = {"value": anterior.volume_ml + posterior.volume_ml,
                                     "labels": [anterior.label, posterior.label]}
        elif whole is not None:
            out[M.HIPPOCAMPUS_ML] = {"value": whole.volume_ml, "labels": [whole.label]}
        for side, measure in (("right", M.HIPPOCAMPUS_RIGHT_ML), ("left", M.HIPPOCAMPUS_LEFT_ML)):
            row = by_name.get(f"{side} hippocampus")
            if row is not None:
                out[measure] = {"value": row.volume_ml, "labels": [row.label]}
    return out


def _figures_by_segmentation(measurements) -> "OrderedDict[int, tuple]":
    """Group measurement rows (newest segmentation first) into ``{segmentation_id: (segmentation, figures)}``."""
    grouped: OrderedDict[int, list] = OrderedDict()
    for row in measurements:
        grouped.setdefault(row.segmentation_id, []).append(row)
    return OrderedDict(
        (seg_id, (rows[0].segmentation, _figures_of(rows, rows[0].segmentation.series.modality)))
        for seg_id, rows in grouped.items()
    )


def study_figures(*, study) -> list[dict]:
    """Return the study's reference figures, one per measure, from its newest segmentation that gives it.

    Each item: ``measure``, ``value``, ``labels`` (the segment labels it comes from), ``segmentation_id``,
    ``model_id`` and ``modality``.
    """
    rows = (Measurement.objects.filter(segmentation__series__study=study)
            .select_related("segmentation__series").order_by("-segmentation__created_at", "-segmentation_id", "label"))
    figures: OrderedDict[str, dict] = OrderedDict()
    for segmentation, found in _figures_by_segmentation(rows).values():
        for measure, figure in found.items():
            figures.setdefault(measure, {"measure": str(measure), **figure, "segmentation_id": segmentation.pk,
                                         "model_id": segmentation.model_id,
                                         "modality": segmentation.series.modality})
    order = list(M.values)
    return sorted(figures.values(), key=lambda f: order.index(f["measure"]))


def _fits(row: ReferenceRange, sex: str, age_years: int | None) -> bool:
    if row.sex and row.sex != sex:
        return False
    if age_years is None:
        return row.age_min_years is None and row.age_max_years is None
    return ((row.age_min_years is None or row.age_min_years <= age_years)
            and (row.age_max_years is None or age_years <= row.age_max_years))


def _rank(row: ReferenceRange):
    banded = row.age_min_years is not None or row.age_max_years is not None
    width = ((row.age_max_years if row.age_max_years is not None else 200)
             - (row.age_min_years if row.age_min_years is not None else 0))
    return (row.sex == "", not banded, width, row.pk)


def _choose(rows, *, sex: str, age_years: int | None) -> ReferenceRange | None:
    candidates = sorted((r for r in rows if _fits(r, sex, age_years)), key=_rank)
    return candidates[0] if candidates else None


def reference_range_for(*, measure: str, sex: str, age_years: int | None) -> ReferenceRange | None:
    """Return the active published range of ``measure`` that fits a patient's sex and age, or None.

    A row for the patient's own sex beats one for either sex; a row with an age band that holds
    ``age_years`` beats one without a band, and a narrower band a wider one. A row with an age band
    never fits a patient of unknown age, nor a sex-specific row a patient of unknown sex.
    """
    return _choose(ReferenceRange.objects.filter(measure=measure, is_active=True), sex=sex, age_years=age_years)


def reference_range_payload(row: ReferenceRange) -> dict:
    """Return the JSON form of a reference row: the box-plot percentiles and its provenance."""
    return {
        "id": row.pk, "measure": row.measure, "unit": row.unit, "sex": row.sex,
        "age_min_years": row.age_min_years, "age_max_years": row.age_max_years,
        "mean": row.mean, "sd": row.sd, "n": row.n,
        "p2_5": row.p2_5, "p25": row.p25, "p50": row.p50, "p75": row.p75, "p97_5": row.p97_5,
        "derivation": row.derivation, "population": row.population, "source": row.source,
        "source_locator": row.source_locator, "source_url": row.source_url, "note": row.note,
    }


def hospital_cohort_figures(*, study, model_id: int | None, modality: str) -> dict[str, list[float]]:
    """Return ``{measure: [one value per study]}`` of the same hospital's other patients (same model and modality).

    Only studies of ``study.hospital`` count, never the study's own patient; a study's value comes
    from its newest segmentation by that model that gives the figure. One query.
    """
    rows = (Measurement.objects
            .filter(segmentation__series__study__hospital_id=study.hospital_id, segmentation__model_id=model_id,
                    segmentation__series__modality=modality)
            .exclude(segmentation__series__study__patient_id=study.patient_id)
            .select_related("segmentation__series")
            .order_by("-segmentation__created_at", "-segmentation_id", "label"))
    per_study: dict[str, dict[int, float]] = {}
    for segmentation, found in _figures_by_segmentation(rows).values():
        for measure, figure in found.items():
            per_study.setdefault(str(measure), {}).setdefault(segmentation.series.study_id, figure["value"])
    return {measure: list(values.values()) for measure, values in per_study.items()}


def hospital_cohort_values(*, study, measure: str, model_id: int | None, modality: str) -> list[float]:
    """Return one value of ``measure`` per other patient's study of the same hospital (see :func:`hospital_cohort_figures`)."""
    return hospital_cohort_figures(study=study, model_id=model_id, modality=modality).get(str(measure), [])


def _label(measure: str) -> str:
    return str(M(measure).label)


def study_reference_comparison_for(*, study) -> list[dict]:
    """Compare each figure of ``study`` with the published range for its patient and the hospital's cohort.

    Internal: no access check (reports and the user-scoped selector below call it). Each item:
    ``measure``, ``name``, ``unit``, ``value``, ``labels``, ``segmentation_id``, ``reference`` (payload or
    None), ``outside`` (True/False, None without a reference), ``direction`` (``"low"``, ``"high"`` or
    ``""``), ``cohort`` (box summary of the other patients, or None), ``sex``, ``age_years``.
    """
    patient = study.patient
    age = age_in_years(patient.birth_date, study.study_date)
    figures = study_figures(study=study)
    published: dict[str, list[ReferenceRange]] = {}
    for row in ReferenceRange.objects.filter(measure__in=[f["measure"] for f in figures], is_active=True):
        published.setdefault(row.measure, []).append(row)
    cohorts: dict[tuple, dict[str, list[float]]] = {}
    items = []
    for figure in figures:
        measure = figure["measure"]
        row = _choose(published.get(measure, []), sex=patient.sex, age_years=age)
        unit = row.unit if row is not None else ("%" if measure.endswith("_pct") else "mL")
        value = figure["value"]
        direction = ""
        if row is not None:
            direction = "low" if value < row.p2_5 else "high" if value > row.p97_5 else ""
        key = (figure["model_id"], figure["modality"])
        if key not in cohorts:
            cohorts[key] = hospital_cohort_figures(study=study, model_id=key[0], modality=key[1])
        cohort = box_summary(cohorts[key].get(measure, []))
        items.append({
            "measure": measure, "name": _label(measure), "unit": unit, "value": round(value, 3),
            "labels": figure["labels"], "segmentation_id": figure["segmentation_id"],
            "reference": None if row is None else reference_range_payload(row),
            "outside": None if row is None else bool(direction), "direction": direction,
            "cohort": None if cohort is None else cohort.to_dict(),
            "sex": patient.sex, "age_years": age,
        })
    return items


def study_reference_comparison(*, user: User, study_id: int) -> list[dict]:
    """Return :func:`study_reference_comparison_for` of a study the user may see, for hospital staff only.

    Raises ``Http404`` for a study outside the user's hospital and for patients (the cohort summarises
    other patients' figures).
    """
    if not user.is_authenticated or user.role == Role.PATIENT:
        raise Http404
    study = study_visible_queryset(user).select_related("patient", "hospital").filter(pk=study_id).first()
    if study is None:
        raise Http404
    return study_reference_comparison_for(study=study)

