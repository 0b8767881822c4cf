"""Matching detections to reference nodules with the LUNA16 rule, and the FROC read from it. Imports no Django.

One function serves both the benchmark (``benchmarks/nodule_froc.py``) and the comparison the
study page and the API show (:func:`diagnosis.selectors.finding_comparison`), so both count hits,
misses and false positives the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LUNA16_RULE", "POINT_RADIUS_MM", "Match", "Reference", "froc_sensitivities", "luna16_match"]

LUNA16_RULE = ("A detection hits a reference nodule when its centre lies within the nodule's radius (half its "
               "diameter); a detection that hits no nodule is a false positive, except one on a nodule outside the "
               "scored set, a nodule < 3 mm or a non-nodule, which is ignored (LUNA16, Setio et al., Med. Image "
               "Anal. 42:1-13, 2017).")
POINT_RADIUS_MM = 3.0
"""Radius around a point mark (nodule < 3 mm, non-nodule) within which a detection is ignored."""
_MIN_RADIUS_MM = 1.5


@dataclass(frozen=True)
class Reference:
    """A reference nodule: its centre (LPS mm), diameter (mm) and whether it is scored (else only ignored)."""

    centre_lps_mm: Sequence[float]
    diameter_mm: float
    scored: bool = True


@dataclass(frozen=True)
class Match:
    """The outcome of :func:`luna16_match`.

    Attributes
    ----------
    outcomes : tuple of str, one per detection
        ``"hit"`` (within a scored nodule's radius), ``"ignored"`` (near only an unscored nodule or a
        point mark) or ``"extra"`` (a false positive).
    hit_references : tuple of tuple of int, one per detection
        The scored references each detection hits.
    hits_per_reference : tuple of tuple of int, one per reference
        The detections that hit each scored reference (empty for a miss and for unscored ones).
    scored : tuple of bool, one per reference
    """

    outcomes: tuple[str, ...]
    hit_references: tuple[tuple[int, ...], ...]
    hits_per_reference: tuple[tuple[int, ...], ...]
    scored: tuple[bool, ...]

    @property
    def missed(self) -> tuple[int, ...]:
        """Scored references no detection hits."""
        return tuple(n for n, hits in enumerate(self.hits_per_reference) if self.scored[n] and not hits)


def luna16_match(
    detections_lps_mm: np.ndarray,
    references: Sequence[Reference],
    ignored_points_lps_mm: np.ndarray | None = None,
    *,
    point_radius_mm: float = POINT_RADIUS_MM,
) -> Match:
    """Classify each detection as hit, ignored or extra, and each reference as hit or missed.

    Parameters
    ----------
    detections_lps_mm : ndarray, shape (n, 3)
        Detection centres, LPS mm (any common Cartesian frame in mm).
    references : sequence of Reference
        Reference nodules; an unscored one (``scored=False``) only makes detections on it ignored,
        within ``max(diameter / 2, 1.5 mm)``.
    ignored_points_lps_mm : ndarray, shape (m, 3), optional
        Point marks (nodules < 3 mm, non-nodules): a detection within ``point_radius_mm`` of one that
        hits no scored nodule is ignored.

    Returns
    -------
    Match

    Notes
    -----
    LUNA16 (Setio et al., Med. Image Anal. 42:1–13, 2017): "a candidate is considered a true positive
    if it is located within a distance R from the nodule centre, where R is the radius of the
    reference nodule"; candidates on irrelevant findings are neither true nor false positives.
    """
    detections = np.asarray(detections_lps_mm, dtype=float).reshape(-1, 3)
    points = np.zeros((0, 3)) if ignored_points_lps_mm is None else np.asarray(ignored_points_lps_mm, float).reshape(-1, 3)
    centres = np.asarray([r.centre_lps_mm for r in references], dtype=float).reshape(-1, 3)
    radii = np.asarray([r.diameter_mm / 2.0 for r in references], dtype=float)
    scored = np.asarray([r.scored for r in references], dtype=bool)
    outcomes, hit_refs = [], []
    per_reference: list[list[int]] = [[] for _ in references]
    for n, centre in enumerate(detections):
        distance = np.linalg.norm(centres - centre, axis=1) if len(centres) else np.zeros(0)
        hits = np.flatnonzero(scored & (distance <= radii))
        if hits.size:
            outcomes.append("hit")
            for r in hits:
                per_reference[int(r)].append(n)
        elif np.any(~scored & (distance <= np.maximum(radii, _MIN_RADIUS_MM))) or (
                len(points) and np.min(np.linalg.norm(points - centre, axis=1)) <= point_radius_mm):
            outcomes.append("ignored")
        else:
            outcomes.append("extra")
        hit_refs.append(tuple(int(r) for r in hits))
    return Match(outcomes=tuple(outcomes), hit_references=tuple(hit_refs),
                 hits_per_reference=tuple(tuple(h) for h in per_reference),
                 scored=tuple(bool(v) for v in scored))


def froc_sensitivities(match: Match, *, scans: int = 1, rates: Sequence[float] = (1, 2, 4, 8)) -> dict[float, float]:
    """Read the sensitivity at given false positives per scan from a match of detections ranked by confidence.

    Parameters
    ----------
    match : Match
        From :func:`luna16_match` with the detections most confident first.
    scans : int
        Number of scans the detections come from.
    rates : sequence of float
        False positives per scan.

    Returns
    -------
    dict
        rate → share of scored references hit by the detections ranked above the first false positive
        beyond ``rate × scans`` (all detections when there are not that many false positives).
    """
    scored_count = sum(match.scored)
    found: set[int] = set()
    false_positives = 0
    result: dict[float, float] = {}
    for outcome, refs in zip(match.outcomes, match.hit_references):
        if outcome == "hit":
            found.update(refs)
        elif outcome == "extra":
            false_positives += 1
            for rate in rates:
                if rate not in result and false_positives > rate * scans:
                    result[rate] = len(found) / max(1, scored_count)
    for rate in rates:
        result.setdefault(rate, len(found) / max(1, scored_count))
    return result
