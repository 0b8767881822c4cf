"""Lung-RADS v2022 category suggested from lung nodules' size and composition. Imports no Django.

Source: American College of Radiology, Lung CT Screening Reporting & Data System (Lung-RADS®)
v2022, released November 2022 (https://www.acr.org/Clinical-Resources/Reporting-and-Data-Systems/Lung-Rads).
The rules applied here are the category table's size and composition criteria for solid, part-solid
and non-solid (ground-glass) nodules at baseline, new and growing, with the v2022 conventions:

- size is the mean diameter, the average of the long and the perpendicular short axis, rounded to
  one decimal place (v2022; v1.1 rounded to whole millimetres);
- growth is an increase in mean diameter of more than 1.5 mm (for a part-solid nodule, of the whole
  nodule or its solid component);
- the exam's category is that of its most suspicious nodule.

Which prior nodule a nodule is (and so whether it is new) is decided either by the caller, from
pairings made elsewhere (the registered comparison of :mod:`diagnosis.longitudinal` with the
doctor's re-links, ``matches``), or here, by centroid distance (the fallback). The course
"growing" is always Lung-RADS v2022's diameter rule above; beside it each paired nodule with
volumes at both time points gets its volume doubling time, VDT = Δt · ln 2 / ln(V₂ / V₁) (Schwartz,
Cancer 14:1272–1294, 1961), and the growth category it implies
(:func:`diagnosis.longitudinal.growth.growth_category`: NELSON / BTS 2015). The VDT is shown to
the doctor; it changes no Lung-RADS category (v2022 has no VDT threshold).

Not decided here (the doctor's judgement): category 0 (incomplete exam, or a possibly infectious or
inflammatory finding), 4X (a category 3 or 4 nodule with additional features suspicious for cancer),
the S modifier, airway and atypical-cyst findings, and perifissural nodules. The result is a
suggestion that the doctor confirms or changes; it is never a diagnosis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..longitudinal.growth import growth

__all__ = [
    "CATEGORIES",
    "GROWTH_MM",
    "RULES",
    "SOURCE",
    "LungRadsNodule",
    "LungRadsSuggestion",
    "NoduleCategory",
    "lung_rads_suggest",
    "mean_diameter_mm",
]

SOURCE = ("American College of Radiology. Lung CT Screening Reporting & Data System (Lung-RADS) v2022. "
          "https://www.acr.org/Clinical-Resources/Reporting-and-Data-Systems/Lung-Rads")
CATEGORIES = ("1", "2", "3", "4A", "4B")
"""The categories suggested here, least to most suspicious (0, 4X and S are the doctor's)."""
GROWTH_MM = 1.5
"""Lung-RADS v2022: growth is an increase in mean diameter of more than 1.5 mm."""

RULES = {
    "no_nodules": ("1", "No lung nodules."),
    "benign_calcification": ("1", "Nodule with a benign pattern of calcification (complete, central, popcorn, "
                                  "concentric rings) or fat."),
    "solid_baseline_lt6": ("2", "Solid nodule < 6 mm at baseline."),
    "solid_new_lt4": ("2", "New solid nodule < 4 mm."),
    "solid_baseline_6_8": ("3", "Solid nodule ≥ 6 to < 8 mm at baseline."),
    "solid_new_4_6": ("3", "New solid nodule 4 to < 6 mm."),
    "solid_baseline_8_15": ("4A", "Solid nodule ≥ 8 to < 15 mm at baseline."),
    "solid_new_6_8": ("4A", "New solid nodule 6 to < 8 mm."),
    "solid_growing_lt8": ("4A", "Growing solid nodule < 8 mm."),
    "solid_baseline_ge15": ("4B", "Solid nodule ≥ 15 mm at baseline."),
    "solid_new_or_growing_ge8": ("4B", "New or growing solid nodule ≥ 8 mm."),
    "part_solid_baseline_lt6": ("2", "Part-solid nodule < 6 mm total diameter at baseline."),
    "part_solid_baseline_solid_lt6": ("3", "Part-solid nodule ≥ 6 mm total diameter with a solid component "
                                           "< 6 mm at baseline."),
    "part_solid_new_lt6": ("3", "New part-solid nodule < 6 mm total diameter."),
    "part_solid_baseline_solid_6_8": ("4A", "Part-solid nodule ≥ 6 mm with a solid component ≥ 6 to < 8 mm "
                                            "at baseline."),
    "part_solid_new_or_growing_solid_lt4": ("4A", "New or growing part-solid nodule with a solid component "
                                                  "< 4 mm."),
    "part_solid_baseline_solid_ge8": ("4B", "Part-solid nodule with a solid component ≥ 8 mm at baseline."),
    "part_solid_new_or_growing_solid_ge4": ("4B", "New or growing part-solid nodule with a solid component "
                                                  "≥ 4 mm."),
    "part_solid_solid_unmeasured": ("3", "Part-solid nodule ≥ 6 mm whose solid component is not measured: at "
                                         "least category 3; measure the solid component to decide 3, 4A or 4B."),
    "ground_glass_lt30": ("2", "Non-solid (ground-glass) nodule < 30 mm at baseline, new or growing."),
    "ground_glass_ge30_stable": ("2", "Non-solid (ground-glass) nodule ≥ 30 mm, unchanged."),
    "ground_glass_ge30": ("3", "Non-solid (ground-glass) nodule ≥ 30 mm at baseline, new or growing (a slowly "
                               "growing one is category 2: the doctor judges the pace)."),
    "stable_3_months": ("2", "Category 3 or 4 nodule unchanged for ≥ 3 months."),
}
"""Rule code → (category, the rule in Lung-RADS v2022's words)."""


def mean_diameter_mm(long_axis_mm: float, short_axis_mm: float | None = None) -> float:
    """Return the Lung-RADS v2022 mean diameter: (long + short) / 2, rounded to one decimal place.

    Parameters
    ----------
    long_axis_mm, short_axis_mm : float
        The longest axial diameter and the perpendicular one, in mm; without a short axis the long
        axis alone is used.

    Raises
    ------
    ValueError
        A negative or non-finite size.
    """
    short = long_axis_mm if short_axis_mm is None else short_axis_mm
    if not (math.isfinite(long_axis_mm) and math.isfinite(short) and long_axis_mm >= 0 and short >= 0):
        raise ValueError("nodule sizes are finite, non-negative millimetres")
    # Half-way values round up (Python's round() would round half to even).
    return math.floor((long_axis_mm + short) / 2 * 10 + 0.5) / 10


@dataclass(frozen=True)
class LungRadsNodule:
    """One accepted nodule.

    Attributes
    ----------
    mean_diameter_mm : float
        See :func:`mean_diameter_mm`.
    composition : str
        ``"solid"``, ``"part_solid"`` or ``"ground_glass"``.
    solid_component_mm : float or None
        Mean diameter of a part-solid nodule's solid component.
    centre_lps_mm : sequence of 3 float or None
        Position, to find the same nodule on the prior exam.
    benign_calcification : bool
        A benign pattern of calcification (complete, central, popcorn, concentric rings) or fat.
    key : any
        The caller's id for the nodule (a finding id), returned with its category.
    volume_ml : float or None
        The nodule's segmented volume, for the volume doubling time against its prior nodule.
    """

    mean_diameter_mm: float
    composition: str
    solid_component_mm: float | None = None
    centre_lps_mm: Sequence[float] | None = None
    benign_calcification: bool = False
    key: object = None
    volume_ml: float | None = None


@dataclass(frozen=True)
class NoduleCategory:
    """A nodule's category, the rule that gave it and its course (``baseline``, ``new``, ``growing``, ``stable``).

    Attributes
    ----------
    prior_key : any
        The key of the prior nodule it was paired with (None when new, or without a prior).
    matching : str or None
        How the prior nodule was found: ``"given"`` (the caller's ``matches``), ``"distance"``
        (centroid distance), None without a prior.
    vdt_days : float or None
        Volume doubling time in days (Schwartz 1961), when both volumes and the interval are known
        and the volume changed; negative when the nodule shrank.
    growth_category : str or None
        :func:`diagnosis.longitudinal.growth.growth_category` (``"stable"``, ``"shrinking"``,
        ``"slow"``, ``"intermediate"``, ``"fast"``), with the same inputs as ``vdt_days``.
    volume_change_pct : float or None
        Volume change from the prior nodule, percent of its volume.
    """

    key: object
    category: str
    rule_code: str
    rule: str
    course: str
    prior_key: object = None
    matching: str | None = None
    vdt_days: float | None = None
    growth_category: str | None = None
    volume_change_pct: float | None = None


@dataclass(frozen=True)
class LungRadsSuggestion:
    """The exam's suggested category (its most suspicious nodule's) with that rule and the source."""

    category: str
    rule_code: str
    rule: str
    nodules: tuple[NoduleCategory, ...]
    source: str = SOURCE


def _solid(d: float, course: str) -> str:
    if course == "growing":
        return "solid_growing_lt8" if d < 8 else "solid_new_or_growing_ge8"
    if course == "new":
        if d < 4:
            return "solid_new_lt4"
        if d < 6:
            return "solid_new_4_6"
        return "solid_new_6_8" if d < 8 else "solid_new_or_growing_ge8"
    if d < 6:
        return "solid_baseline_lt6"
    if d < 8:
        return "solid_baseline_6_8"
    return "solid_baseline_8_15" if d < 15 else "solid_baseline_ge15"


def _part_solid(d: float, solid: float | None, course: str) -> str:
    if course in ("new", "growing"):
        if course == "new" and d < 6:
            return "part_solid_new_lt6"
        if solid is None:
            return "part_solid_solid_unmeasured"
        return "part_solid_new_or_growing_solid_lt4" if solid < 4 else "part_solid_new_or_growing_solid_ge4"
    if d < 6:
        return "part_solid_baseline_lt6"
    if solid is None:
        return "part_solid_solid_unmeasured"
    if solid < 6:
        return "part_solid_baseline_solid_lt6"
    return "part_solid_baseline_solid_6_8" if solid < 8 else "part_solid_baseline_solid_ge8"


def _ground_glass(d: float, course: str) -> str:
    if d < 30:
        return "ground_glass_lt30"
    return "ground_glass_ge30_stable" if course == "stable" else "ground_glass_ge30"


def _nearest(nodule: LungRadsNodule, prior: Sequence[LungRadsNodule], match_distance_mm: float):
    if nodule.centre_lps_mm is None:
        raise ValueError("comparing with a prior exam needs each nodule's centre_lps_mm")
    centre = np.asarray(nodule.centre_lps_mm, float)
    candidates = [(float(np.linalg.norm(np.asarray(p.centre_lps_mm, float) - centre)), p)
                  for p in prior if p.centre_lps_mm is not None]
    near = [(dist, p) for dist, p in candidates if dist <= max(match_distance_mm, nodule.mean_diameter_mm)]
    return min(near, key=lambda item: item[0])[1] if near else None


def _grew(nodule: LungRadsNodule, before: LungRadsNodule) -> bool:
    grew = nodule.mean_diameter_mm - before.mean_diameter_mm > GROWTH_MM
    if nodule.solid_component_mm is not None and before.solid_component_mm is not None:
        grew = grew or nodule.solid_component_mm - before.solid_component_mm > GROWTH_MM
    elif nodule.composition == "part_solid" and before.composition == "ground_glass":
        grew = True  # a new solid component in a formerly non-solid nodule
    return grew


def _course(nodule: LungRadsNodule, prior: Sequence[LungRadsNodule] | None, match_distance_mm: float,
            matches: Mapping | None) -> tuple[str, LungRadsNodule | None, str | None]:
    """Return (course, the prior nodule or None, how it was found)."""
    if prior is None:
        return "baseline", None, None
    if matches is not None and nodule.key in matches:
        prior_key = matches[nodule.key]
        if prior_key is None:
            return "new", None, "given"
        before = next((p for p in prior if p.key == prior_key), None)
        if before is None:
            raise ValueError(f"the pairing of nodule {nodule.key!r} names prior nodule {prior_key!r}, "
                             "which is not among the prior nodules")
        matching = "given"
    else:
        before, matching = _nearest(nodule, prior, match_distance_mm), "distance"
        if before is None:
            return "new", None, matching
    return ("growing" if _grew(nodule, before) else "stable"), before, matching


def _growth(nodule: LungRadsNodule, before: LungRadsNodule | None, interval_days: float | None) -> dict:
    if (before is None or interval_days is None or not interval_days > 0 or not nodule.volume_ml
            or not before.volume_ml or nodule.volume_ml <= 0 or before.volume_ml <= 0):
        return {}
    g = growth(before.volume_ml, nodule.volume_ml, interval_days)
    return {"vdt_days": g.vdt_days, "growth_category": g.category, "volume_change_pct": g.volume_change_pct}


def lung_rads_suggest(
    nodules: Sequence[LungRadsNodule],
    *,
    prior: Sequence[LungRadsNodule] | None = None,
    prior_interval_months: float | None = None,
    match_distance_mm: float = 10.0,
    matches: Mapping[object, object] | None = None,
    prior_interval_days: float | None = None,
) -> LungRadsSuggestion:
    """Suggest the Lung-RADS v2022 category of a lung screening CT from its accepted nodules.

    Parameters
    ----------
    nodules : sequence of LungRadsNodule
        The exam's accepted nodules.
    prior : sequence of LungRadsNodule, optional
        The prior exam's nodules. With it, each nodule is paired with a prior nodule or is new
        (``matches`` first, else centroid distance); a paired nodule whose mean diameter (or solid
        component) grew by more than 1.5 mm is growing (Lung-RADS v2022), any other is stable.
    prior_interval_months : float, optional
        Months since the prior exam: a stable nodule of category 3 or 4 after ≥ 3 months is category 2.
    match_distance_mm : float
        The distance rule, used for a nodule that ``matches`` does not name: the nearest prior nodule
        within ``max(match_distance_mm, its mean diameter)`` mm of its centre, or none (new). The
        centres must be in one frame (the same frame of reference, or registered).
    matches : mapping, optional
        Pairings decided elsewhere (a registered comparison, the doctor's re-links): nodule key →
        prior nodule key, or None for a new nodule. They replace the distance rule for the nodules
        they name, however far apart the centres are.
    prior_interval_days : float, optional
        Days since the prior exam, for each paired nodule's volume doubling time (Schwartz 1961) and
        its growth category (:mod:`diagnosis.longitudinal.growth`); both nodules need ``volume_ml``.
        Reported only: the category follows the diameter rule.

    Returns
    -------
    LungRadsSuggestion
        The highest category over the nodules (category 1 without nodules), its rule, and each
        nodule's category and rule.

    Raises
    ------
    ValueError
        An unknown composition, a negative size, a prior given without nodule centres (for the
        distance rule), or a pairing that names a prior key not among ``prior``.
    """
    results = []
    for nodule in nodules:
        if nodule.composition not in ("solid", "part_solid", "ground_glass"):
            raise ValueError(f"unknown nodule composition {nodule.composition!r}")
        d = nodule.mean_diameter_mm
        if not math.isfinite(d) or d < 0:
            raise ValueError("nodule sizes are finite, non-negative millimetres")
        course, before, matching = _course(nodule, prior, match_distance_mm, matches)
        if nodule.benign_calcification:
            code = "benign_calcification"
        elif nodule.composition == "solid":
            code = _solid(d, "baseline" if course == "stable" else course)
        elif nodule.composition == "part_solid":
            code = _part_solid(d, nodule.solid_component_mm, "baseline" if course == "stable" else course)
        else:
            code = _ground_glass(d, course)
        category = RULES[code][0]
        if (course == "stable" and category in ("3", "4A", "4B") and prior_interval_months is not None
                and prior_interval_months >= 3):
            code, category = "stable_3_months", "2"
        results.append(NoduleCategory(key=nodule.key, category=category, rule_code=code, rule=RULES[code][1],
                                      course=course, prior_key=None if before is None else before.key,
                                      matching=matching, **_growth(nodule, before, prior_interval_days)))
    if not results:
        return LungRadsSuggestion(category="1", rule_code="no_nodules", rule=RULES["no_nodules"][1], nodules=())
    worst = max(results, key=lambda r: CATEGORIES.index(r.category))
    return LungRadsSuggestion(category=worst.category, rule_code=worst.rule_code, rule=worst.rule,
                              nodules=tuple(results))
