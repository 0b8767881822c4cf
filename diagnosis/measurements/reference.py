"""Reference-range arithmetic: percentiles from a published mean and SD, box-plot summaries, age. Imports no Django.

The five figures a box plot of a reference range needs are the 2.5th, 25th, 50th, 75th and 97.5th
percentiles; the central 95 % (2.5th–97.5th) is "the reference range" (CLSI EP28-A3c). Most papers
publish a mean and a standard deviation instead: under a normal distribution the percentiles are
``mean + z·sd`` with the standard normal quantiles below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

__all__ = ["Z_P75", "Z_P975", "BoxSummary", "age_in_years", "box_summary", "normal_percentiles"]

# Standard normal quantiles: Φ⁻¹(0.975) and Φ⁻¹(0.75) (Abramowitz & Stegun, Table 26.5).
Z_P975 = 1.959963984540054
Z_P75 = 0.6744897501960817


def normal_percentiles(mean: float, sd: float) -> dict[str, float]:
    """Return the 2.5th, 25th, 50th, 75th and 97.5th percentiles of a normal distribution.

    Parameters
    ----------
    mean, sd : float
        The published mean and standard deviation, in the figure's unit (mL, %); ``sd`` > 0.

    Returns
    -------
    dict
        ``{"p2_5", "p25", "p50", "p75", "p97_5"}`` in the same unit: ``mean ± 1.960·sd`` and
        ``mean ± 0.674·sd``; the median equals the mean.

    Raises
    ------
    ValueError
        When ``sd`` is not a positive finite number or ``mean`` is not finite.
    """
    if not (math.isfinite(mean) and math.isfinite(sd)) or sd <= 0:
        raise ValueError("mean must be finite and sd a positive number")
    return {
        "p2_5": mean - Z_P975 * sd,
        "p25": mean - Z_P75 * sd,
        "p50": mean,
        "p75": mean + Z_P75 * sd,
        "p97_5": mean + Z_P975 * sd,
    }


@dataclass(frozen=True)
class BoxSummary:
    """Tukey's five-number summary of a sample, with the points beyond the whiskers.

    ``whisker_low``/``whisker_high`` are the most extreme values within 1.5 IQR of the quartiles;
    ``outliers`` the values beyond them (Tukey, *Exploratory Data Analysis*, 1977, ch. 2).
    """

    n: int
    whisker_low: float
    q1: float
    median: float
    q3: float
    whisker_high: float
    outliers: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"n": self.n, "min": self.whisker_low, "q1": self.q1, "median": self.median, "q3": self.q3,
                "max": self.whisker_high, "outliers": list(self.outliers)}


def _quantile(ordered: list[float], p: float) -> float:
    """Linear interpolation between order statistics (Hyndman & Fan 1996, definition 7; numpy's default)."""
    h = (len(ordered) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def box_summary(values) -> BoxSummary | None:
    """Return the box-plot summary of ``values`` (finite numbers), or None for an empty sample.

    Parameters
    ----------
    values : iterable of float
        One figure per patient, in one unit; non-finite values are ignored.
    """
    ordered = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not ordered:
        return None
    q1, median, q3 = (_quantile(ordered, p) for p in (0.25, 0.5, 0.75))
    fence_low, fence_high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    inside = [v for v in ordered if fence_low <= v <= fence_high]
    outliers = tuple(v for v in ordered if v < fence_low or v > fence_high)
    return BoxSummary(n=len(ordered), whisker_low=inside[0], q1=q1, median=median, q3=q3,
                      whisker_high=inside[-1], outliers=outliers)


def age_in_years(birth_date: date | None, on: date | None) -> int | None:
    """Return the completed years of age on ``on`` (the study date), or None when either date is unknown."""
    if birth_date is None or on is None:
        return None
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
