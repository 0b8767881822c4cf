"""Similarity of two cases over structured features, ranking of earlier cases, and precision@k.

A case is one study with its signed report: the findings (kind, size, composition, side and lobe),
the measured segments' volumes, the patient's age and sex at the study, the report's coded
impression (the doctor's confirmed Lung-RADS category) and the patient's questionnaire scores.

The similarity of cases *i* and *j* is the weighted mean of the per-feature similarities

    Sim(i, j) = Σₚ wₚ · Simₚ(i, j) / Σₚ wₚ,

each Simₚ in [0, 1], where the sums run only over the features *p* present on both cases (a feature
missing on either side drops its weight from both sums). With no feature in common the cases are not
compared (no score). Per-feature similarities (:func:`feature_similarities`):

``kinds``
    Jaccard index |A ∩ B| / |A ∪ B| of the sets of finding kinds (Jaccard, Bull. Soc. Vaud. Sci. Nat.
    37:547–579, 1901).
``size``
    1 − min(|dᵢ − dⱼ| / 30 mm, 1) of the dominant finding's size d (mm): its long axis, or else the
    diameter of the sphere of its volume, d = (6 V / π)^(1/3) with V in mm³. The scale 30 mm is the
    upper bound of a lung nodule (Fleischner Society glossary, Hansell et al., Radiology 246:697–722,
    2008: a larger opacity is a mass), so two sizes 30 mm or more apart count as unalike.
``composition``
    1 − |sᵢ − sⱼ| of the dominant finding's solidity s: ground-glass 0, part-solid 0.5, solid 1 (the
    order of Lung-RADS v2022's composition classes).
``location``
    Jaccard index of the sets of location tokens of the findings: ``side:right``/``side:left`` and
    ``region:<lobe>`` (lower-cased as stored).
``measurements``
    Mean over the segment names measured on both cases of min(Vᵢ, Vⱼ) / max(Vᵢ, Vⱼ) (= 1 − |Vᵢ − Vⱼ| /
    max(Vᵢ, Vⱼ)) of the volumes in mL (1 when both are 0).
``age``
    exp(−|aᵢ − aⱼ| / 10 y) of the ages in years at the study: 1 for the same age, 0.37 ten years apart.
``sex``
    1 for the same sex code, 0 otherwise.
``impression``
    The coded impression, a Lung-RADS v2022 category: 1 − |rᵢ − rⱼ| / 5 of the ranks in
    (1, 2, 3, 4A, 4B, 4X); a category outside that order (0) matches only itself (1 or 0).
``questionnaire``
    Mean over the instruments scored on both cases of 1 − |fᵢ − fⱼ| of the total scores as fractions
    of each instrument's maximum (PHQ-9 out of 27, GAD-7 out of 21, …).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "AGE_SCALE_YEARS",
    "COMPOSITION_SOLIDITY",
    "DEFAULT_WEIGHTS",
    "FEATURES",
    "IMPRESSION_ORDER",
    "SIZE_SCALE_MM",
    "CaseFeatures",
    "FindingFeatures",
    "RankedCase",
    "Similarity",
    "WeightsError",
    "case_similarity",
    "feature_similarities",
    "finding_size_mm",
    "leave_one_out_precision",
    "precision_at_k",
    "random_precision_at_k",
    "rank_similar",
    "validate_weights",
]

FEATURES = ("kinds", "size", "composition", "location", "measurements", "age", "sex", "impression",
            "questionnaire")
"""The features compared, in the order they are shown."""

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "kinds": 2.0, "size": 2.0, "composition": 1.0, "location": 1.0, "measurements": 1.0,
    "age": 0.5, "sex": 0.5, "impression": 2.0, "questionnaire": 0.5,
}
"""Weights used where a hospital set none: what was seen (kinds, size) and what was concluded (the coded
impression) weigh most; who the patient is weighs least."""

SIZE_SCALE_MM = 30.0
"""Sizes this far apart (mm) or more have size similarity 0 (the nodule/mass boundary, Hansell 2008)."""

AGE_SCALE_YEARS = 10.0
"""The age similarity falls by a factor e for every this many years (y) apart."""

COMPOSITION_SOLIDITY: Mapping[str, float] = {"ground_glass": 0.0, "part_solid": 0.5, "solid": 1.0}
"""Solidity of each composition code (Lung-RADS v2022's classes in order)."""

IMPRESSION_ORDER = ("1", "2", "3", "4A", "4B", "4X")
"""Lung-RADS v2022 categories, least to most suspicious (0, an incomplete exam, is outside the order)."""


class WeightsError(ValueError):
    """Weights that cannot be used; ``code`` says why (``weight_unknown``, ``weight_negative``,
    ``weight_not_finite``, ``weights_all_zero``)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FindingFeatures:
    """One finding of a case.

    Attributes
    ----------
    kind : str
        The finding's kind code (``lung_nodule``, ``lesion``, …).
    long_axis_mm, short_axis_mm : float or None
        RECIST 1.1 axial diameters, mm.
    volume_ml : float or None
        Segmented volume, mL.
    composition : str
        ``solid``, ``part_solid``, ``ground_glass`` or empty.
    side : str
        ``right``, ``left`` or empty.
    region : str
        Lobe or region as stored (``RUL``, …) or empty.
    """

    kind: str
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    volume_ml: float | None = None
    composition: str = ""
    side: str = ""
    region: str = ""


@dataclass(frozen=True)
class CaseFeatures:
    """The structured features of one case (a study with its signed report).

    Attributes
    ----------
    case_id : object
        The caller's id (a study id).
    findings : tuple of FindingFeatures
        The findings of the signed report (may be empty: then kinds, size, composition and location
        are missing).
    segment_volumes_ml : mapping of str to float
        Measured segment name → volume in mL.
    age_years : float or None
        The patient's age at the study, years.
    sex : str
        ``M``, ``F``, ``O`` or empty (unknown).
    impression_code : str
        The report's coded impression (a confirmed Lung-RADS category) or empty.
    questionnaire_scores : mapping of str to float
        Instrument code → total score as a fraction of its maximum, in [0, 1].
    """

    case_id: object
    findings: tuple[FindingFeatures, ...] = ()
    segment_volumes_ml: Mapping[str, float] = field(default_factory=dict)
    age_years: float | None = None
    sex: str = ""
    impression_code: str = ""
    questionnaire_scores: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Similarity:
    """The similarity of two cases: ``score`` (None when no feature is present on both) and the
    per-feature similarities ``parts`` of the features that counted (weight > 0, present on both)."""

    score: float | None
    parts: Mapping[str, float]


@dataclass(frozen=True)
class RankedCase:
    """One retrieved case: its id, similarity score in [0, 1] and per-feature similarities."""

    case_id: object
    score: float
    parts: Mapping[str, float]


# --- features ----------------------------------------------------------------------------------------

def finding_size_mm(finding: FindingFeatures) -> float | None:
    """Return a finding's size in mm: its long axis, else the diameter of the sphere of its volume.

    Parameters
    ----------
    finding : FindingFeatures

    Returns
    -------
    float or None
        ``long_axis_mm``; else d = (6 V / π)^(1/3) with V = 1000 · ``volume_ml`` mm³; None when neither
        is known.
    """
    if finding.long_axis_mm is not None and math.isfinite(finding.long_axis_mm):
        return float(finding.long_axis_mm)
    if finding.volume_ml is not None and math.isfinite(finding.volume_ml) and finding.volume_ml >= 0:
        return (6.0 * finding.volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0)
    return None


def _dominant(case: CaseFeatures) -> FindingFeatures | None:
    """The largest finding with a size (the first finding when none has one)."""
    sized = [(finding_size_mm(f), n, f) for n, f in enumerate(case.findings) if finding_size_mm(f) is not None]
    if sized:
        return max(sized, key=lambda t: (t[0], -t[1]))[2]
    return case.findings[0] if case.findings else None


def _composition(case: CaseFeatures) -> str:
    """The dominant finding's composition, else that of the largest finding which has one."""
    dominant = _dominant(case)
    if dominant is not None and dominant.composition in COMPOSITION_SOLIDITY:
        return dominant.composition
    with_composition = [f for f in case.findings if f.composition in COMPOSITION_SOLIDITY]
    if not with_composition:
        return ""
    return max(with_composition, key=lambda f: finding_size_mm(f) or 0.0).composition


def _jaccard(a: set, b: set) -> float | None:
    if not a or not b:
        return None
    return len(a & b) / len(a | b)


def _locations(case: CaseFeatures) -> set[str]:
    tokens = set()
    for f in case.findings:
        if f.side:
            tokens.add(f"side:{f.side.lower()}")
        if f.region:
            tokens.add(f"region:{f.region.strip().lower()}")
    return tokens


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def feature_similarities(a: CaseFeatures, b: CaseFeatures) -> dict[str, float]:
    """Return each feature's similarity Simₚ(a, b) in [0, 1], for the features present on both cases.

    Parameters
    ----------
    a, b : CaseFeatures

    Returns
    -------
    dict of str to float
        Feature name (one of :data:`FEATURES`) → similarity; a feature missing on either case is
        absent. The formulas are those of the module docstring.
    """
    parts: dict[str, float] = {}
    kinds = _jaccard({f.kind for f in a.findings if f.kind}, {f.kind for f in b.findings if f.kind})
    if kinds is not None:
        parts["kinds"] = kinds
    da, db = _dominant(a), _dominant(b)
    size_a = finding_size_mm(da) if da is not None else None
    size_b = finding_size_mm(db) if db is not None else None
    if size_a is not None and size_b is not None:
        parts["size"] = 1.0 - min(abs(size_a - size_b) / SIZE_SCALE_MM, 1.0)
    comp_a, comp_b = _composition(a), _composition(b)
    if comp_a and comp_b:
        parts["composition"] = 1.0 - abs(COMPOSITION_SOLIDITY[comp_a] - COMPOSITION_SOLIDITY[comp_b])
    location = _jaccard(_locations(a), _locations(b))
    if location is not None:
        parts["location"] = location
    shared = {}
    volumes_a = {k.strip().lower(): v for k, v in a.segment_volumes_ml.items() if _finite(v) and v >= 0}
    volumes_b = {k.strip().lower(): v for k, v in b.segment_volumes_ml.items() if _finite(v) and v >= 0}
    for name in volumes_a.keys() & volumes_b.keys():
        va, vb = volumes_a[name], volumes_b[name]
        shared[name] = 1.0 if max(va, vb) == 0 else min(va, vb) / max(va, vb)
    if shared:
        parts["measurements"] = sum(shared.values()) / len(shared)
    if _finite(a.age_years) and _finite(b.age_years):
        parts["age"] = math.exp(-abs(a.age_years - b.age_years) / AGE_SCALE_YEARS)
    if a.sex and b.sex:
        parts["sex"] = 1.0 if a.sex == b.sex else 0.0
    if a.impression_code and b.impression_code:
        ca, cb = a.impression_code.upper(), b.impression_code.upper()
        if ca in IMPRESSION_ORDER and cb in IMPRESSION_ORDER:
            gap = abs(IMPRESSION_ORDER.index(ca) - IMPRESSION_ORDER.index(cb))
            parts["impression"] = 1.0 - gap / (len(IMPRESSION_ORDER) - 1)
        else:
            parts["impression"] = 1.0 if ca == cb else 0.0
    scores = [1.0 - abs(min(max(a.questionnaire_scores[c], 0.0), 1.0) - min(max(b.questionnaire_scores[c], 0.0), 1.0))
              for c in sorted(a.questionnaire_scores.keys() & b.questionnaire_scores.keys())
              if _finite(a.questionnaire_scores[c]) and _finite(b.questionnaire_scores[c])]
    if scores:
        parts["questionnaire"] = sum(scores) / len(scores)
    return parts


# --- weights and the weighted similarity ---------------------------------------------------------------

def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Return the full weight table: ``weights`` over :data:`DEFAULT_WEIGHTS`.

    Parameters
    ----------
    weights : mapping of str to float
        Some or all of the features' weights (dimensionless; only their ratios matter).

    Raises
    ------
    WeightsError
        An unknown feature (``weight_unknown``), a non-finite (``weight_not_finite``) or negative
        (``weight_negative``) weight, or all weights zero (``weights_all_zero``).
    """
    unknown = sorted(set(weights) - set(FEATURES))
    if unknown:
        raise WeightsError(f"Unknown features: {', '.join(unknown)}.", code="weight_unknown")
    table = dict(DEFAULT_WEIGHTS)
    for name, value in weights.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise WeightsError(f"The weight of {name} is not a number.", code="weight_not_finite") from None
        if not math.isfinite(value):
            raise WeightsError(f"The weight of {name} is not a number.", code="weight_not_finite")
        if value < 0:
            raise WeightsError(f"The weight of {name} is negative.", code="weight_negative")
        table[name] = value
    if not any(table[name] > 0 for name in FEATURES):
        raise WeightsError("At least one weight must be above zero.", code="weights_all_zero")
    return table


def case_similarity(a: CaseFeatures, b: CaseFeatures, weights: Mapping[str, float] | None = None) -> Similarity:
    """Return Sim(a, b) = Σₚ wₚ · Simₚ(a, b) / Σₚ wₚ over the features present on both cases.

    Parameters
    ----------
    a, b : CaseFeatures
    weights : mapping of str to float, optional
        Feature → weight ≥ 0 (:func:`validate_weights`); default :data:`DEFAULT_WEIGHTS`.

    Returns
    -------
    Similarity
        ``score`` in [0, 1], or None when no feature with a positive weight is present on both cases;
        ``parts`` the per-feature similarities that entered the sums.
    """
    table = validate_weights(weights or {})
    parts = {name: value for name, value in feature_similarities(a, b).items() if table[name] > 0}
    total = sum(table[name] for name in parts)
    if total <= 0:
        return Similarity(score=None, parts={})
    score = sum(table[name] * value for name, value in parts.items()) / total
    return Similarity(score=min(max(score, 0.0), 1.0), parts=parts)


def rank_similar(query: CaseFeatures, candidates: Sequence[CaseFeatures], *, k: int | None = None,
                 weights: Mapping[str, float] | None = None) -> list[RankedCase]:
    """Return the ``k`` candidates most similar to ``query``, most similar first.

    Candidates that share no feature with the query (no score) are left out; ties keep the order of
    ``candidates`` (pass them newest first to prefer recent cases). ``k`` None returns all.
    """
    table = validate_weights(weights or {})
    ranked = []
    for position, candidate in enumerate(candidates):
        similarity = case_similarity(query, candidate, table)
        if similarity.score is not None:
            case = RankedCase(candidate.case_id, similarity.score, similarity.parts)
            ranked.append((-similarity.score, position, case))
    ranked.sort(key=lambda t: (t[0], t[1]))
    result = [t[2] for t in ranked]
    return result if k is None else result[:k]


# --- evaluation ------------------------------------------------------------------------------------------

def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Return precision@k: the share of the first ``k`` retrieved items that are relevant.

    Parameters
    ----------
    relevant : sequence of bool
        Relevance of the retrieved items in rank order.
    k : int
        Cut-off, ≥ 1. Fewer than ``k`` retrieved items count the missing ones as not relevant (the
        denominator stays ``k``; Manning, Raghavan & Schütze, Introduction to Information Retrieval,
        2008, §8.4).

    Raises
    ------
    ValueError
        ``k`` < 1.
    """
    if k < 1:
        raise ValueError("k must be at least 1.")
    return sum(1 for flag in list(relevant)[:k] if flag) / k


def leave_one_out_precision(cases: Sequence[CaseFeatures], is_relevant: Callable[[CaseFeatures, CaseFeatures], bool],
                            *, ks: Sequence[int] = (1, 3, 5),
                            weights: Mapping[str, float] | None = None,
                            queries: Callable[[CaseFeatures], bool] | None = None) -> dict[int, float]:
    """Return mean precision@k of leave-one-out retrieval over ``cases``.

    Each case in turn is the query and all the other cases the candidates (:func:`rank_similar`);
    its precision@k uses ``is_relevant(query, retrieved)``. The ``case_id`` values must be unique.
    Queries with no relevant case among the others are left out of the mean (no retrieval can succeed
    on them), and so are cases for which ``queries(case)`` is false when ``queries`` is given (they
    remain candidates).

    Returns
    -------
    dict of int to float
        k → mean precision@k over the queries, in [0, 1] (NaN when no query has a relevant case).
    """
    sums = {k: 0.0 for k in ks}
    counted = 0
    for index, query in enumerate(cases):
        if queries is not None and not queries(query):
            continue
        others = [c for n, c in enumerate(cases) if n != index]
        if not any(is_relevant(query, c) for c in others):
            continue
        counted += 1
        by_id = {c.case_id: c for c in others}
        flags = [is_relevant(query, by_id[r.case_id]) for r in rank_similar(query, others, weights=weights)]
        for k in ks:
            sums[k] += precision_at_k(flags, k)
    return {k: (sums[k] / counted if counted else float("nan")) for k in ks}


def random_precision_at_k(cases: Sequence[CaseFeatures],
                          is_relevant: Callable[[CaseFeatures, CaseFeatures], bool]) -> float:
    """Return the expected precision@k of a random ranking in the same leave-one-out protocol.

    For a query with R relevant cases among the N − 1 others, a uniformly random order puts on average
    R / (N − 1) relevant cases in each rank, so its expected precision@k is R / (N − 1) for every k ≤ N − 1;
    averaged over the queries that have a relevant case, as :func:`leave_one_out_precision` does.
    """
    shares = []
    for index, query in enumerate(cases):
        others = [c for n, c in enumerate(cases) if n != index]
        relevant = sum(1 for c in others if is_relevant(query, c))
        if relevant:
            shares.append(relevant / len(others))
    return sum(shares) / len(shares) if shares else float("nan")
