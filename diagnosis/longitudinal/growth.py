"""Growth of a finding between two time points: volume change and volume doubling time. Imports no Django.

Formula: the volume doubling time of exponential growth, VDT = Δt · ln 2 / ln(V₂ / V₁) (Schwartz,
"A biomathematical approach to clinical tumor growth", Cancer 14:1272–1294, 1961).

Growth categories (:func:`growth_category`) follow the volumetric management of the NELSON lung
cancer screening trial and the British Thoracic Society guideline that adopted it:

- a volume change under 25 % is within the repeatability of volumetry and counts as no growth
  (NELSON protocol: growth is "a change in volume of at least 25 %"; Horeweg et al., Lancet Oncol.
  15:1332–1341, 2014; van Klaveren et al., N. Engl. J. Med. 361:2221–2229, 2009);
- VDT < 400 days: fast growth, high probability of malignancy (NELSON; BTS guideline, Callister et
  al., Thorax 70 Suppl 2:ii1–ii54, 2015, recommendation for VDT < 400 days);
- 400 ≤ VDT ≤ 600 days: intermediate (BTS: consider biopsy or further surveillance);
- VDT > 600 days: slow growth (BTS: low probability, continue surveillance).

A nodule that shrinks by 25 % or more is ``"shrinking"``. The result is a suggestion for the doctor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "FAST_VDT_DAYS",
    "GROWTH_THRESHOLD_PCT",
    "SLOW_VDT_DAYS",
    "Growth",
    "growth",
    "growth_category",
    "percent_change",
    "volume_doubling_time_days",
]

GROWTH_THRESHOLD_PCT = 25.0
"""Smallest volume change (%) counted as growth or shrinkage (NELSON)."""
FAST_VDT_DAYS = 400.0
"""VDT below which growth is fast (NELSON; BTS 2015)."""
SLOW_VDT_DAYS = 600.0
"""VDT above which growth is slow (BTS 2015)."""


def _check_volumes(prior_volume: float, volume: float) -> None:
    for name, value in (("prior volume", prior_volume), ("volume", volume)):
        if value is None or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def percent_change(prior: float, current: float) -> float:
    """Return the change from ``prior`` to ``current`` in percent of ``prior``.

    Raises
    ------
    ValueError
        ``prior`` is zero, negative or not finite (a change relative to nothing is undefined).
    """
    if prior is None or not math.isfinite(prior) or prior <= 0:
        raise ValueError(f"the prior value must be a positive finite number, got {prior!r}")
    if current is None or not math.isfinite(current) or current < 0:
        raise ValueError(f"the current value must be a non-negative finite number, got {current!r}")
    return (current - prior) / prior * 100.0


def volume_doubling_time_days(prior_volume: float, volume: float, interval_days: float) -> float:
    """Return the volume doubling time VDT = Δt · ln 2 / ln(V₂ / V₁) (Schwartz 1961).

    Parameters
    ----------
    prior_volume, volume : float
        V₁ and V₂, any one volume unit (mL, mm³), both positive.
    interval_days : float
        Δt, days from the prior study to the current one, positive.

    Returns
    -------
    float
        Days. ``math.inf`` when the volume did not change; negative for a shrinking finding (its
        volume halving time, with a minus sign).

    Raises
    ------
    ValueError
        A volume that is not positive and finite, or an interval that is not positive.
    """
    _check_volumes(prior_volume, volume)
    if interval_days is None or not math.isfinite(interval_days) or interval_days <= 0:
        raise ValueError(f"the interval must be a positive number of days, got {interval_days!r}")
    ratio = math.log(volume / prior_volume)
    if ratio == 0.0:
        return math.inf
    return interval_days * math.log(2.0) / ratio


def growth_category(prior_volume: float, volume: float, interval_days: float) -> str:
    """Classify growth as ``"stable"``, ``"shrinking"``, ``"slow"``, ``"intermediate"`` or ``"fast"``.

    ``"stable"`` when the volume changed by less than :data:`GROWTH_THRESHOLD_PCT` either way,
    ``"shrinking"`` for a decrease of at least that much; otherwise by VDT: ``"fast"`` below
    :data:`FAST_VDT_DAYS`, ``"slow"`` above :data:`SLOW_VDT_DAYS`, ``"intermediate"`` between (both
    bounds included). Sources in the module docstring.

    Raises
    ------
    ValueError
        As :func:`volume_doubling_time_days`.
    """
    vdt = volume_doubling_time_days(prior_volume, volume, interval_days)
    change = percent_change(prior_volume, volume)
    if abs(change) < GROWTH_THRESHOLD_PCT:
        return "stable"
    if change < 0:
        return "shrinking"
    if vdt < FAST_VDT_DAYS:
        return "fast"
    if vdt > SLOW_VDT_DAYS:
        return "slow"
    return "intermediate"


@dataclass(frozen=True)
class Growth:
    """Volume change of one finding between two studies.

    Attributes
    ----------
    prior_volume_ml, volume_ml : float
    interval_days : float or None
        None when either study has no date (then there is no VDT and no category).
    volume_change_ml : float
    volume_change_pct : float
    vdt_days : float or None
        None when not defined: no interval, or no change (infinite VDT). Negative when shrinking.
    category : str or None
        :func:`growth_category`, None without an interval.
    """

    prior_volume_ml: float
    volume_ml: float
    interval_days: float | None
    volume_change_ml: float
    volume_change_pct: float
    vdt_days: float | None
    category: str | None

    def to_dict(self) -> dict:
        """Return the figures as JSON, rounded (mL to 4 decimals, % to 2, days to 1)."""
        return {
            "prior_volume_ml": round(self.prior_volume_ml, 4),
            "volume_ml": round(self.volume_ml, 4),
            "interval_days": self.interval_days,
            "volume_change_ml": round(self.volume_change_ml, 4),
            "volume_change_pct": round(self.volume_change_pct, 2),
            "vdt_days": None if self.vdt_days is None else round(self.vdt_days, 1),
            "growth_category": self.category,
        }


def growth(prior_volume_ml: float, volume_ml: float, interval_days: float | None) -> Growth:
    """Return the :class:`Growth` of a finding from its two volumes and the days between the studies.

    Raises
    ------
    ValueError
        A volume that is not positive and finite; an interval that is given and not positive.
    """
    _check_volumes(prior_volume_ml, volume_ml)
    change_pct = percent_change(prior_volume_ml, volume_ml)
    vdt, category = None, None
    if interval_days is not None:
        value = volume_doubling_time_days(prior_volume_ml, volume_ml, interval_days)
        vdt = value if math.isfinite(value) else None
        category = growth_category(prior_volume_ml, volume_ml, interval_days)
    return Growth(prior_volume_ml=float(prior_volume_ml), volume_ml=float(volume_ml),
                  interval_days=None if interval_days is None else float(interval_days),
                  volume_change_ml=float(volume_ml - prior_volume_ml), volume_change_pct=change_pct,
                  vdt_days=vdt, category=category)
