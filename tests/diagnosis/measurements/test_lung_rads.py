"""Lung-RADS v2022 categories at each size boundary, hand-checked against the ACR category table."""

from __future__ import annotations

import pytest

from diagnosis.measurements.lung_rads import LungRadsNodule, lung_rads_suggest, mean_diameter_mm


def _one(d, composition="solid", solid=None, **kwargs):
    return lung_rads_suggest([LungRadsNodule(d, composition, solid_component_mm=solid, centre_lps_mm=(0, 0, 0))],
                             **kwargs)


@pytest.mark.parametrize("d, category", [
    (5.9, "2"), (6.0, "3"), (7.9, "3"), (8.0, "4A"), (14.9, "4A"), (15.0, "4B"), (40.0, "4B"),
])
def test_solid_nodules_at_baseline(d, category):
    assert _one(d).category == category


@pytest.mark.parametrize("d, category, code", [
    (3.9, "2", "solid_new_lt4"), (4.0, "3", "solid_new_4_6"), (5.9, "3", "solid_new_4_6"),
    (6.0, "4A", "solid_new_6_8"), (7.9, "4A", "solid_new_6_8"), (8.0, "4B", "solid_new_or_growing_ge8"),
])
def test_new_solid_nodules(d, category, code):
    # The prior exam has a nodule elsewhere only: this one is new.
    result = _one(d, prior=[LungRadsNodule(5.0, "solid", centre_lps_mm=(100, 0, 0))])
    assert (result.category, result.rule_code, result.nodules[0].course) == (category, code, "new")


@pytest.mark.parametrize("before, now, category, course", [
    (5.0, 6.5, "2", "stable"),     # +1.5 mm is not growth (more than 1.5 mm is)
    (5.0, 6.6, "4A", "growing"),   # +1.6 mm: growing < 8 mm
    (7.0, 8.6, "4B", "growing"),   # growing >= 8 mm
])
def test_growth_is_more_than_one_and_a_half_millimetres(before, now, category, course):
    prior = [LungRadsNodule(before, "solid", centre_lps_mm=(1, 0, 0))]
    result = _one(now, prior=prior, prior_interval_months=12)
    assert result.nodules[0].course == course
    # A stable 6.5 mm solid nodule would be 3 at baseline; unchanged for 12 months it is 2.
    assert result.category == category


def test_a_stable_nodule_keeps_its_baseline_category_without_the_interval():
    result = _one(6.5, prior=[LungRadsNodule(6.0, "solid", centre_lps_mm=(0, 0, 0))])
    assert (result.category, result.nodules[0].course) == ("3", "stable")


@pytest.mark.parametrize("d, solid, category", [
    (5.9, 3.0, "2"), (6.0, 5.9, "3"), (10.0, 6.0, "4A"), (10.0, 7.9, "4A"), (10.0, 8.0, "4B"), (10.0, None, "3"),
])
def test_part_solid_nodules_at_baseline(d, solid, category):
    assert _one(d, "part_solid", solid).category == category


@pytest.mark.parametrize("d, solid, category, code", [
    (5.9, 5.0, "3", "part_solid_new_lt6"),
    (6.0, 3.9, "4A", "part_solid_new_or_growing_solid_lt4"),
    (6.0, 4.0, "4B", "part_solid_new_or_growing_solid_ge4"),
])
def test_new_part_solid_nodules(d, solid, category, code):
    result = _one(d, "part_solid", solid, prior=[])
    assert (result.category, result.rule_code) == (category, code)


@pytest.mark.parametrize("d, category", [(29.9, "2"), (30.0, "3")])
def test_ground_glass_nodules_at_baseline(d, category):
    assert _one(d, "ground_glass").category == category


def test_a_large_ground_glass_nodule_unchanged_is_category_2():
    result = _one(31.0, "ground_glass", prior=[LungRadsNodule(31.0, "ground_glass", centre_lps_mm=(0, 0, 2))])
    assert (result.category, result.rule_code) == ("2", "ground_glass_ge30_stable")


def test_the_exam_takes_its_most_suspicious_nodule_and_cites_the_source():
    nodules = [LungRadsNodule(5.0, "solid", key=1), LungRadsNodule(9.0, "solid", key=2),
               LungRadsNodule(20.0, "ground_glass", key=3)]
    result = lung_rads_suggest(nodules)
    assert result.category == "4A" and [n.category for n in result.nodules] == ["2", "4A", "2"]
    assert result.rule == "Solid nodule ≥ 8 to < 15 mm at baseline."
    assert "American College of Radiology" in result.source and "v2022" in result.source


def test_no_nodule_is_category_1_and_benign_calcification_too():
    assert lung_rads_suggest([]).category == "1"
    assert lung_rads_suggest([LungRadsNodule(12.0, "solid", benign_calcification=True)]).category == "1"


@pytest.mark.parametrize("long_mm, short_mm, mean", [(7.0, 5.0, 6.0), (6.05, 6.0, 6.0), (6.1, 6.0, 6.1), (8.0, None, 8.0)])
def test_mean_diameter_is_rounded_to_a_tenth(long_mm, short_mm, mean):
    # (6.05 + 6.0) / 2 = 6.025 -> 6.0; (6.1 + 6.0) / 2 = 6.05 -> 6.1 (half up).
    assert mean_diameter_mm(long_mm, short_mm) == mean


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="composition"):
        lung_rads_suggest([LungRadsNodule(5.0, "cavitary")])
    with pytest.raises(ValueError, match="non-negative"):
        mean_diameter_mm(-1.0, 2.0)
    with pytest.raises(ValueError, match="centre_lps_mm"):
        lung_rads_suggest([LungRadsNodule(5.0, "solid")], prior=[])
