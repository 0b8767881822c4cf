"""RECIST 1.1 response of solid tumours: target selection, sum of diameters, nadir and response. Imports no Django.

Source: Eisenhauer et al., "New response evaluation criteria in solid tumours: revised RECIST
guideline (version 1.1)", Eur. J. Cancer 45:228–247, 2009 (sections 3–4, Tables 1 and 2), with the
EORTC RECIST working group's published clarifications (recist.eortc.org, "Questions and
clarifications"):

- Measurable: a non-nodal lesion with a longest diameter ≥ 10 mm on CT of slice thickness ≤ 5 mm
  (≥ twice the slice thickness when thicker); a lymph node with a short axis ≥ 15 mm. Nodes of
  10 to < 15 mm short axis are pathological but not measurable (non-target); nodes < 10 mm are normal.
- Targets: at most 5 in all and 2 per organ; all lymph nodes together are one organ, as are both
  lungs (EORTC clarification "Paired organs").
- Sum of diameters: longest diameter of each non-nodal target plus the short axis of each nodal one.
  A target too small to measure counts 5 mm (:data:`TOO_SMALL_MM`), a vanished one 0 mm.
- Target response: CR — every non-nodal target gone and every nodal target < 10 mm short axis;
  PR — sum ≥ 30 % below the baseline sum; PD — sum ≥ 20 % above the nadir (the smallest sum on study,
  the baseline included) *and* ≥ 5 mm above it; SD — neither (the EORTC clarification: shrinkage
  against baseline, increase against the nadir); NE — a target not assessed.
- Overall response: Table 1 (patients with targets) and Table 2 (non-targets only); a new lesion is PD.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "CR", "PR", "SD", "PD", "NE", "NON_CR_NON_PD",
    "LYMPH_NODE_ORGAN", "MAX_TARGETS", "MAX_TARGETS_PER_ORGAN", "TOO_SMALL_MM",
    "Assessment", "RecistError", "TargetLesion", "TimePoint",
    "TABLE_1", "TABLE_2",
    "evaluate", "lesion_measurable", "organ_key", "overall_response", "sum_of_diameters", "table_1_overall",
    "table_2_overall", "target_response", "validate_targets",
]

CR, PR, SD, PD, NE = "CR", "PR", "SD", "PD", "NE"
NON_CR_NON_PD = "non-CR/non-PD"
NON_TARGET_RESPONSES = (CR, NON_CR_NON_PD, PD, NE)

MAX_TARGETS = 5
MAX_TARGETS_PER_ORGAN = 2
LYMPH_NODE_ORGAN = "lymph node"
TOO_SMALL_MM = 5.0
"""Diameter recorded for a target present but too small to measure (EORTC clarification)."""
MEASURABLE_MM = 10.0
MEASURABLE_NODE_MM = 15.0
NORMAL_NODE_MM = 10.0
PR_DECREASE_PCT = 30.0
PD_INCREASE_PCT = 20.0
PD_ABSOLUTE_MM = 5.0


class RecistError(ValueError):
    """A selection or a time point that breaks a RECIST 1.1 rule; ``code`` names the rule."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TargetLesion:
    """A lesion chosen as a RECIST target at baseline.

    Attributes
    ----------
    key : str
        Identifies the lesion across time points (a finding id, a match id).
    organ : str
        Its organ ("lung", "liver", …); ignored for lymph nodes, which are one organ.
    long_axis_mm, short_axis_mm : float
        Longest axial diameter and the longest diameter perpendicular to it (mm).
    lymph_node : bool
    """

    key: str
    organ: str
    long_axis_mm: float
    short_axis_mm: float = 0.0
    lymph_node: bool = False

    @property
    def diameter_mm(self) -> float:
        """Return the RECIST diameter: the short axis of a lymph node, else the long axis (mm)."""
        return float(self.short_axis_mm if self.lymph_node else self.long_axis_mm)


def organ_key(lesion: TargetLesion) -> str:
    """Return the organ a lesion counts against for the 2-per-organ limit (lymph nodes: one organ)."""
    return LYMPH_NODE_ORGAN if lesion.lymph_node else " ".join(lesion.organ.lower().split())


def lesion_measurable(lesion: TargetLesion, *, slice_thickness_mm: float = 5.0) -> bool:
    """Return whether a lesion is measurable at baseline (RECIST 1.1 §3.1.1).

    Non-nodal: long axis ≥ max(10 mm, 2 × slice thickness when the slices are thicker than 5 mm);
    lymph node: short axis ≥ 15 mm.
    """
    if lesion.lymph_node:
        return lesion.short_axis_mm >= MEASURABLE_NODE_MM
    minimum = MEASURABLE_MM if slice_thickness_mm <= 5.0 else max(MEASURABLE_MM, 2.0 * slice_thickness_mm)
    return lesion.long_axis_mm >= minimum


def validate_targets(targets: Sequence[TargetLesion], *, slice_thickness_mm: float = 5.0) -> None:
    """Check a baseline selection of target lesions against RECIST 1.1.

    Raises
    ------
    RecistError
        ``no_targets`` (empty), ``duplicate_target`` (a key twice), ``too_many_targets`` (> 5),
        ``too_many_in_organ`` (> 2 in one organ, lymph nodes counted together) or
        ``not_measurable`` (below the measurable size).
    """
    if not targets:
        raise RecistError("choose at least one target lesion", code="no_targets")
    keys = Counter(t.key for t in targets)
    twice = sorted(k for k, n in keys.items() if n > 1)
    if twice:
        raise RecistError(f"target lesions chosen twice: {', '.join(twice)}", code="duplicate_target")
    if len(targets) > MAX_TARGETS:
        raise RecistError(f"{len(targets)} target lesions; RECIST 1.1 allows at most {MAX_TARGETS}",
                          code="too_many_targets")
    per_organ = Counter(organ_key(t) for t in targets)
    crowded = sorted(o for o, n in per_organ.items() if n > MAX_TARGETS_PER_ORGAN)
    if crowded:
        raise RecistError(f"more than {MAX_TARGETS_PER_ORGAN} target lesions in: {', '.join(crowded)}",
                          code="too_many_in_organ")
    small = [t.key for t in targets if not lesion_measurable(t, slice_thickness_mm=slice_thickness_mm)]
    if small:
        raise RecistError(f"not measurable (non-nodal < 10 mm long axis, node < 15 mm short axis): {', '.join(small)}",
                          code="not_measurable")


def sum_of_diameters(diameters_mm: Sequence[float]) -> float:
    """Return the sum of the RECIST diameters (mm) of the target lesions.

    Raises
    ------
    ValueError
        A negative or missing diameter (a target not assessed makes the sum not evaluable).
    """
    total = 0.0
    for value in diameters_mm:
        if value is None or value < 0:
            raise ValueError(f"a target diameter must be a non-negative number, got {value!r}")
        total += float(value)
    return total


def target_response(*, baseline_sum_mm: float, nadir_sum_mm: float, current_sum_mm: float | None,
                    complete: bool) -> str:
    """Return the target-lesion response: CR, PR, SD, PD or NE (RECIST 1.1 §4.3.1).

    Parameters
    ----------
    baseline_sum_mm : float
        Sum of diameters at baseline (> 0).
    nadir_sum_mm : float
        Smallest sum recorded before this time point, the baseline included.
    current_sum_mm : float or None
        This time point's sum; None when a target was not assessed (→ NE).
    complete : bool
        Every non-nodal target gone and every nodal target < 10 mm short axis.

    Notes
    -----
    PD is tested first: a sum ≥ 30 % below baseline that is also ≥ 20 % and ≥ 5 mm above the nadir is PD.
    """
    if current_sum_mm is None:
        return NE
    if baseline_sum_mm <= 0:
        raise ValueError(f"the baseline sum must be positive, got {baseline_sum_mm}")
    increase = current_sum_mm - nadir_sum_mm
    if increase >= PD_ABSOLUTE_MM and increase >= PD_INCREASE_PCT / 100.0 * nadir_sum_mm:
        return PD
    if complete:
        return CR
    if current_sum_mm <= (1.0 - PR_DECREASE_PCT / 100.0) * baseline_sum_mm:
        return PR
    return SD


#: RECIST 1.1 Table 1 (patients with target and non-target disease), row by row:
#: (target, non-target, new lesions, overall). ``None`` in a pattern is "any"; rows are tried in order.
TABLE_1 = (
    (CR, CR, False, CR),
    (CR, NON_CR_NON_PD, False, PR),
    (CR, NE, False, PR),
    (PR, "non-PD or NE", False, PR),
    (SD, "non-PD or NE", False, SD),
    ("NE", "non-PD", False, NE),
    (PD, None, None, PD),
    (None, PD, None, PD),
    (None, None, True, PD),
)
#: RECIST 1.1 Table 2 (patients with non-target disease only): (non-target, new lesions, overall).
TABLE_2 = (
    (CR, False, CR),
    (NON_CR_NON_PD, False, NON_CR_NON_PD),
    (NE, False, NE),
    (PD, None, PD),
    (None, True, PD),
)


def _check_non_target(non_target: str) -> None:
    if non_target not in NON_TARGET_RESPONSES:
        raise RecistError(f"unknown non-target response {non_target!r}", code="bad_response")


def table_1_overall(*, target: str, non_target: str, new_lesions: bool) -> tuple[str, int]:
    """Return the overall response of a patient with target lesions and its row of RECIST 1.1 Table 1.

    Parameters
    ----------
    target : str
        Target response: CR, PR, SD, PD or NE (not all evaluated).
    non_target : str
        Non-target response: CR, ``non-CR/non-PD``, PD or NE (not all evaluated); the doctor's
        judgement of "unequivocal progression" (§4.3.2) decides PD.
    new_lesions : bool

    Returns
    -------
    (str, int)
        The overall response and the 1-based row of Table 1 (:data:`TABLE_1`) that gave it; a PD by
        several rows gives the first (target PD, then non-target PD, then a new lesion).

    Raises
    ------
    RecistError
        ``bad_response`` for an unknown response value.

    Notes
    -----
    Eisenhauer et al., Eur J Cancer 45:228–247, 2009, Table 1: CR/CR/no → CR; CR/non-CR/non-PD/no → PR;
    CR/not evaluated/no → PR; PR/non-PD or not all evaluated/no → PR; SD/non-PD or not all evaluated/no
    → SD; not all evaluated/non-PD/no → NE; PD/any/any → PD; any/PD/any → PD; any/any/yes → PD.
    """
    _check_non_target(non_target)
    if target not in (CR, PR, SD, PD, NE):
        raise RecistError(f"unknown target response {target!r}", code="bad_response")
    if target == PD:
        return PD, 7
    if non_target == PD:
        return PD, 8
    if new_lesions:
        return PD, 9
    if target == CR:
        return {CR: (CR, 1), NON_CR_NON_PD: (PR, 2), NE: (PR, 3)}[non_target]
    return {PR: (PR, 4), SD: (SD, 5), NE: (NE, 6)}[target]


def table_2_overall(*, non_target: str, new_lesions: bool) -> tuple[str, int]:
    """Return the overall response of a patient with non-target disease only and its row of RECIST 1.1 Table 2.

    Parameters
    ----------
    non_target : str
        CR, ``non-CR/non-PD``, PD (unequivocal progression) or NE (not all evaluated).
    new_lesions : bool

    Returns
    -------
    (str, int)
        CR, ``non-CR/non-PD``, PD or NE, and the 1-based row of Table 2 (:data:`TABLE_2`).

    Raises
    ------
    RecistError
        ``bad_response`` for an unknown response value.

    Notes
    -----
    Eisenhauer et al., Eur J Cancer 45:228–247, 2009, Table 2: CR/no → CR; non-CR/non-PD/no →
    non-CR/non-PD (preferred to SD, since SD is a measure of targets); not all evaluated/no → NE;
    unequivocal PD/any → PD; any/yes → PD.
    """
    _check_non_target(non_target)
    if non_target == PD:
        return PD, 4
    if new_lesions:
        return PD, 5
    return {CR: (CR, 1), NON_CR_NON_PD: (NON_CR_NON_PD, 2), NE: (NE, 3)}[non_target]


def overall_response(*, target: str | None, non_target: str, new_lesions: bool) -> str:
    """Return the overall response of a time point (RECIST 1.1 Table 1, or Table 2 when ``target`` is None).

    Parameters
    ----------
    target : str or None
        Target response (CR/PR/SD/PD/NE), or None for a patient with non-target disease only.
    non_target : str
        CR, ``non-CR/non-PD``, PD or NE (not all evaluated); the doctor's judgement.
    new_lesions : bool

    Raises
    ------
    RecistError
        ``bad_response`` for an unknown response value.
    """
    if target is None:
        return table_2_overall(non_target=non_target, new_lesions=new_lesions)[0]
    return table_1_overall(target=target, non_target=non_target, new_lesions=new_lesions)[0]


@dataclass(frozen=True)
class TimePoint:
    """One follow-up assessment.

    Attributes
    ----------
    label : str
        A date or visit name, returned unchanged.
    diameters_mm : mapping of str to float or None
        Per target key, this time point's RECIST diameter (short axis for nodes): 0 for a vanished
        lesion, :data:`TOO_SMALL_MM` for one too small to measure, None when not assessed.
    non_target : str
        Non-target response (:data:`NON_TARGET_RESPONSES`).
    new_lesions : bool
    """

    label: str
    diameters_mm: Mapping[str, float | None]
    non_target: str = NON_CR_NON_PD
    new_lesions: bool = False


@dataclass(frozen=True)
class Assessment:
    """The RECIST figures and responses of one time point (baseline included, with responses None)."""

    label: str
    sum_mm: float | None
    nadir_mm: float | None
    change_from_baseline_pct: float | None
    change_from_nadir_pct: float | None
    change_from_nadir_mm: float | None
    target_response: str | None
    non_target_response: str | None
    new_lesions: bool
    overall_response: str | None
    rule: str
    table: int | None = None
    table_row: int | None = None

    def to_dict(self) -> dict:
        def r(v, n=1):
            return None if v is None else round(v, n)
        return {"label": self.label, "sum_mm": r(self.sum_mm), "nadir_mm": r(self.nadir_mm),
                "change_from_baseline_pct": r(self.change_from_baseline_pct),
                "change_from_nadir_pct": r(self.change_from_nadir_pct),
                "change_from_nadir_mm": r(self.change_from_nadir_mm),
                "target_response": self.target_response, "non_target_response": self.non_target_response,
                "new_lesions": self.new_lesions, "overall_response": self.overall_response, "rule": self.rule,
                "table": self.table, "table_row": self.table_row}


_RULES = {
    CR: "CR: all non-nodal targets gone and every nodal target < 10 mm short axis",
    PR: "PR: sum of diameters ≥ 30 % below baseline",
    SD: "SD: neither ≥ 30 % below baseline nor ≥ 20 % and ≥ 5 mm above the nadir",
    PD: "PD: sum of diameters ≥ 20 % and ≥ 5 mm above the nadir",
    NE: "NE: a target lesion was not assessed",
}


def _evaluate_non_target_only(follow_ups: Sequence[TimePoint], baseline_label: str) -> list[Assessment]:
    result = [Assessment(label=baseline_label, sum_mm=None, nadir_mm=None, change_from_baseline_pct=None,
                         change_from_nadir_pct=None, change_from_nadir_mm=None, target_response=None,
                         non_target_response=None, new_lesions=False, overall_response=None,
                         rule="baseline: non-target disease only", table=2)]
    for point in follow_ups:
        if point.diameters_mm:
            raise RecistError(f"{point.label}: not a target lesion: {', '.join(sorted(point.diameters_mm))}",
                              code="unknown_target")
        overall, row = table_2_overall(non_target=point.non_target, new_lesions=point.new_lesions)
        result.append(Assessment(
            label=point.label, sum_mm=None, nadir_mm=None, change_from_baseline_pct=None, change_from_nadir_pct=None,
            change_from_nadir_mm=None, target_response=None, non_target_response=point.non_target,
            new_lesions=point.new_lesions, overall_response=overall,
            rule=f"overall {overall}: RECIST 1.1 Table 2, row {row}", table=2, table_row=row))
    return result


def evaluate(targets: Sequence[TargetLesion], follow_ups: Sequence[TimePoint], *,
             baseline_label: str = "baseline", slice_thickness_mm: float = 5.0,
             non_target_only: bool = False) -> list[Assessment]:
    """Assess every time point of a patient against the baseline targets, in order (RECIST 1.1).

    Parameters
    ----------
    targets : sequence of TargetLesion
        Baseline targets (checked with :func:`validate_targets`); empty with ``non_target_only``.
    non_target_only : bool
        The patient has non-target disease only (no target chosen): every time point's overall response
        is RECIST 1.1 Table 2's, from its non-target response and new lesions; sums are None.
    follow_ups : sequence of TimePoint
        In time order. The nadir of each is the smallest sum before it (baseline included; a time
        point with a target not assessed does not set the nadir).

    Returns
    -------
    list of Assessment
        The baseline first, then one per follow-up.

    Raises
    ------
    RecistError
        As :func:`validate_targets`; ``unknown_target`` when a time point measures a key that is not
        a target; ``missing_target`` when it leaves one out (give None for not assessed);
        ``bad_diameter`` for a negative diameter; ``bad_response`` for an unknown non-target response.
    """
    if non_target_only and not targets:
        return _evaluate_non_target_only(follow_ups, baseline_label)
    validate_targets(targets, slice_thickness_mm=slice_thickness_mm)
    by_key = {t.key: t for t in targets}
    baseline = sum_of_diameters([t.diameter_mm for t in targets])
    result = [Assessment(label=baseline_label, sum_mm=baseline, nadir_mm=baseline, change_from_baseline_pct=0.0,
                         change_from_nadir_pct=0.0, change_from_nadir_mm=0.0, target_response=None,
                         non_target_response=None, new_lesions=False, overall_response=None,
                         rule="baseline: sum of diameters of the target lesions", table=1)]
    nadir = baseline
    for point in follow_ups:
        unknown = sorted(set(point.diameters_mm) - set(by_key))
        if unknown:
            raise RecistError(f"{point.label}: not a target lesion: {', '.join(unknown)}", code="unknown_target")
        missing = sorted(set(by_key) - set(point.diameters_mm))
        if missing:
            raise RecistError(f"{point.label}: no measurement of target {', '.join(missing)}", code="missing_target")
        values = [point.diameters_mm[k] for k in by_key]
        if any(v is not None and v < 0 for v in values):
            raise RecistError(f"{point.label}: a diameter is negative", code="bad_diameter")
        assessed = all(v is not None for v in values)
        current = sum_of_diameters(values) if assessed else None
        complete = assessed and all(
            (point.diameters_mm[k] < NORMAL_NODE_MM) if t.lymph_node else (point.diameters_mm[k] == 0)
            for k, t in by_key.items())
        target = target_response(baseline_sum_mm=baseline, nadir_sum_mm=nadir, current_sum_mm=current,
                                 complete=complete)
        overall, row = table_1_overall(target=target, non_target=point.non_target, new_lesions=point.new_lesions)
        rule = _RULES[target]
        if overall != target:
            if point.new_lesions:
                rule += "; overall PD: a new lesion"
            elif point.non_target == PD:
                rule += "; overall PD: unequivocal progression of non-target lesions"
            else:
                rule += f"; overall {overall}: non-target response {point.non_target} (RECIST 1.1 Table 1)"
        result.append(Assessment(
            label=point.label, sum_mm=current, nadir_mm=nadir,
            change_from_baseline_pct=None if current is None else (current - baseline) / baseline * 100.0,
            change_from_nadir_pct=None if current is None or nadir == 0 else (current - nadir) / nadir * 100.0,
            change_from_nadir_mm=None if current is None else current - nadir,
            target_response=target, non_target_response=point.non_target, new_lesions=point.new_lesions,
            overall_response=overall, rule=rule, table=1, table_row=row))
        if current is not None:
            nadir = min(nadir, current)
    return result
