"""Volume doubling time (Schwartz 1961) and the NELSON/BTS growth bands, on hand-computed values."""

import math

import pytest

from diagnosis.longitudinal.growth import (
    growth,
    growth_category,
    percent_change,
    volume_doubling_time_days,
)


def test_a_volume_that_doubles_in_90_days_has_a_vdt_of_90_days():
    assert volume_doubling_time_days(0.5, 1.0, 90) == pytest.approx(90.0)


def test_vdt_of_a_quadrupling_is_half_the_interval():
    assert volume_doubling_time_days(100.0, 400.0, 300) == pytest.approx(150.0)


def test_vdt_of_a_sphere_whose_diameter_grows_from_8_to_10_mm_in_a_year():
    # V ∝ d³: ln(V2/V1) = 3 ln(10/8); VDT = 365 ln 2 / (3 ln 1.25) = 377.9 days.
    v1, v2 = math.pi / 6 * 8 ** 3, math.pi / 6 * 10 ** 3
    assert volume_doubling_time_days(v1, v2, 365) == pytest.approx(377.9, abs=0.1)


def test_unchanged_volume_has_an_infinite_vdt_and_shrinking_a_negative_one():
    assert volume_doubling_time_days(1.0, 1.0, 100) == math.inf
    assert volume_doubling_time_days(1.0, 0.5, 100) == pytest.approx(-100.0)


@pytest.mark.parametrize("v1, v2, days", [(0.0, 1.0, 10), (1.0, 0.0, 10), (-1.0, 1.0, 10), (1.0, 2.0, 0),
                                          (1.0, 2.0, -5), (float("nan"), 1.0, 10), (1.0, float("inf"), 10)])
def test_rejects_non_positive_volumes_and_intervals(v1, v2, days):
    with pytest.raises(ValueError):
        volume_doubling_time_days(v1, v2, days)


def test_percent_change_and_its_refusal_of_a_zero_prior():
    assert percent_change(2.0, 3.0) == pytest.approx(50.0)
    assert percent_change(2.0, 1.0) == pytest.approx(-50.0)
    with pytest.raises(ValueError):
        percent_change(0.0, 1.0)


@pytest.mark.parametrize("v2, days, category", [
    (1.24, 30, "stable"),        # +24 %: below the 25 % volumetric threshold, however fast
    (0.76, 30, "stable"),        # -24 %
    (0.75, 30, "shrinking"),     # -25 %
    (2.0, 399, "fast"),          # VDT 399 days
    (2.0, 400, "intermediate"),  # the bound 400 belongs to intermediate
    (2.0, 600, "intermediate"),
    (2.0, 601, "slow"),
    (1.25, 30, "fast"),          # +25 % in 30 days: VDT 93 days
])
def test_growth_category_bands(v2, days, category):
    assert growth_category(1.0, v2, days) == category


def test_growth_without_dates_has_no_vdt_or_category_and_no_change_gives_no_vdt():
    undated = growth(1.0, 1.5, None)
    assert undated.vdt_days is None and undated.category is None
    assert undated.volume_change_pct == pytest.approx(50.0) and undated.volume_change_ml == pytest.approx(0.5)
    same = growth(2.0, 2.0, 100)
    assert same.vdt_days is None and same.category == "stable"
    body = growth(1.0, 2.0, 90).to_dict()
    assert body["vdt_days"] == 90.0 and body["growth_category"] == "fast" and body["volume_change_pct"] == 100.0
