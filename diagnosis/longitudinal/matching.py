"""Match findings or segments of a prior study to those of the current one. Imports no Django.

Rule (this product's, stated here and returned with every comparison as :data:`MATCH_RULE`): after
the prior's centroids are mapped into the current study's frame by the registration, a prior and a
current item may be paired when

- their segments overlap (intersection over union > 0, when both have a mask), or
- their centroids lie within ``max(MATCH_DISTANCE_MM, ½ · the larger diameter)``.

Among the candidate pairs, the one-to-one assignment of least total cost is taken (Hungarian method,
:func:`scipy.optimize.linear_sum_assignment`); the cost is the centroid distance in mm minus
``OVERLAP_WEIGHT_MM`` × IoU, so overlap wins over distance. A prior item left unpaired is
``"resolved"``, a current one ``"new"``.

Why 10 mm: after an affine registration of chest CT the residual misalignment of lung structures is
a few millimetres (EMPIRE10, Murphy et al., IEEE Trans. Med. Imaging 30:1901–1920, 2011, reports
landmark errors of 1–5 mm for affine-level methods), and nodules of screening interest are ≥ 4 mm
apart from each other only rarely within one lobe; a growing nodule's centroid moves by up to half
its diameter change, hence the diameter term. Segments that name an organ (a lung, a lobe) are
paired by name, not by position (:func:`match_by_name`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MATCH_DISTANCE_MM", "MATCH_RULE", "OVERLAP_WEIGHT_MM", "LesionMatch", "match_by_name", "match_lesions"]

MATCH_DISTANCE_MM = 10.0
"""Largest registered centroid distance (mm) for a pair, unless half the larger diameter is more."""
OVERLAP_WEIGHT_MM = 100.0
"""Cost bonus (mm) per unit of IoU, so that overlapping pairs are preferred over near ones."""
MATCH_RULE = ("A prior and a current finding are the same when their segments overlap after registration, or their "
              "registered centroids lie within max(10 mm, half the larger diameter); pairs are chosen one to one "
              "by least total distance. An unpaired prior finding is resolved, an unpaired current one new.")


@dataclass(frozen=True)
class LesionMatch:
    """The outcome of :func:`match_lesions`.

    Attributes
    ----------
    pairs : tuple of (int, int)
        (prior index, current index), ordered by prior index.
    distances_mm : tuple of float
        Registered centroid distance of each pair (mm).
    overlaps : tuple of float
        IoU of each pair (0.0 when no masks were given).
    resolved : tuple of int
        Prior indices with no pair.
    new : tuple of int
        Current indices with no pair.
    """

    pairs: tuple[tuple[int, int], ...]
    distances_mm: tuple[float, ...]
    overlaps: tuple[float, ...]
    resolved: tuple[int, ...]
    new: tuple[int, ...]


def match_lesions(
    prior_centroids_mm: np.ndarray,
    current_centroids_mm: np.ndarray,
    *,
    prior_diameters_mm: Sequence[float | None] | None = None,
    current_diameters_mm: Sequence[float | None] | None = None,
    overlaps: np.ndarray | None = None,
    max_distance_mm: float = MATCH_DISTANCE_MM,
) -> LesionMatch:
    """Pair prior findings with current ones by registered centroid distance and overlap.

    Parameters
    ----------
    prior_centroids_mm : array_like, shape (n, 3)
        Prior centroids already mapped into the current study's frame (LPS mm).
    current_centroids_mm : array_like, shape (m, 3)
        Current centroids (LPS mm).
    prior_diameters_mm, current_diameters_mm : sequence of float or None, lengths n and m, optional
        Long axes (mm); None entries count as 0.
    overlaps : array_like, shape (n, m), optional
        IoU of each prior segment (mapped into the current frame) with each current segment, in [0, 1].
    max_distance_mm : float
        The distance term of the rule (default :data:`MATCH_DISTANCE_MM`).

    Returns
    -------
    LesionMatch

    Raises
    ------
    ValueError
        Shapes that disagree, non-finite centroids, overlaps outside [0, 1] or a negative distance.
    """
    prior = np.asarray(prior_centroids_mm, dtype=float).reshape(-1, 3)
    current = np.asarray(current_centroids_mm, dtype=float).reshape(-1, 3)
    n, m = len(prior), len(current)
    if not (np.all(np.isfinite(prior)) and np.all(np.isfinite(current))):
        raise ValueError("centroids must be finite")
    if max_distance_mm < 0:
        raise ValueError(f"max_distance_mm must not be negative, got {max_distance_mm}")

    def diameters(values, count, name):
        if values is None:
            return np.zeros(count)
        if len(values) != count:
            raise ValueError(f"{name}: {len(values)} diameters for {count} centroids")
        return np.asarray([0.0 if v is None else float(v) for v in values])

    d_prior = diameters(prior_diameters_mm, n, "prior")
    d_current = diameters(current_diameters_mm, m, "current")
    iou = np.zeros((n, m)) if overlaps is None else np.asarray(overlaps, dtype=float).reshape(n, m)
    if iou.size and (np.any(iou < 0) or np.any(iou > 1) or not np.all(np.isfinite(iou))):
        raise ValueError("overlaps must lie in [0, 1]")
    if n == 0 or m == 0:
        return LesionMatch(pairs=(), distances_mm=(), overlaps=(), resolved=tuple(range(n)), new=tuple(range(m)))

    from scipy.optimize import linear_sum_assignment

    distance = np.linalg.norm(prior[:, None, :] - current[None, :, :], axis=2)
    limit = np.maximum(max_distance_mm, np.maximum(d_prior[:, None], d_current[None, :]) / 2.0)
    allowed = (iou > 0) | (distance <= limit)
    # Forbidden pairs cost more than any allowed assignment, and are dropped afterwards.
    big = float(distance.max() + OVERLAP_WEIGHT_MM + 1.0) * (n + m)
    cost = np.where(allowed, distance - OVERLAP_WEIGHT_MM * iou, big)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]
    pairs.sort()
    paired_prior = {p for p, _ in pairs}
    paired_current = {c for _, c in pairs}
    return LesionMatch(
        pairs=tuple(pairs),
        distances_mm=tuple(float(distance[p, c]) for p, c in pairs),
        overlaps=tuple(float(iou[p, c]) for p, c in pairs),
        resolved=tuple(i for i in range(n) if i not in paired_prior),
        new=tuple(j for j in range(m) if j not in paired_current),
    )


def match_by_name(prior_names: Sequence[str], current_names: Sequence[str]) -> LesionMatch:
    """Pair segments that name the same structure (case- and space-insensitive), first with first.

    For organ segments (``"right lung"``) whose identity is their name; lesion segments are matched
    by position with :func:`match_lesions`. ``distances_mm`` and ``overlaps`` are 0.0.
    """
    def key(name: str) -> str:
        return " ".join(str(name).lower().split())

    remaining: dict[str, list[int]] = {}
    for j, name in enumerate(current_names):
        remaining.setdefault(key(name), []).append(j)
    pairs = []
    for i, name in enumerate(prior_names):
        candidates = remaining.get(key(name))
        if candidates:
            pairs.append((i, candidates.pop(0)))
    paired_prior = {p for p, _ in pairs}
    paired_current = {c for _, c in pairs}
    return LesionMatch(
        pairs=tuple(pairs), distances_mm=tuple(0.0 for _ in pairs), overlaps=tuple(0.0 for _ in pairs),
        resolved=tuple(i for i in range(len(prior_names)) if i not in paired_prior),
        new=tuple(j for j in range(len(current_names)) if j not in paired_current),
    )
