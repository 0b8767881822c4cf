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


# --- pairings decided elsewhere (a registered comparison, the doctor's re-links) and the VDT ----------

def _far_apart():
    """A nodule 60 mm from the only prior nodule: the distance rule calls it new."""
    prior = [LungRadsNodule(6.0, "solid", centre_lps_mm=(0, 0, 0), key="p1", volume_ml=0.1)]
    now = [LungRadsNodule(8.0, "solid", centre_lps_mm=(60, 0, 0), key="n1", volume_ml=0.2)]
    return prior, now


def test_a_pairing_overrides_the_distance_rule():
    prior, now = _far_apart()
    by_distance = lung_rads_suggest(now, prior=prior).nodules[0]
    assert (by_distance.course, by_distance.prior_key, by_distance.matching) == ("new", None, "distance")

    # Re-linked by the doctor: the same nodule, grown 6.0 → 8.0 mm (> 1.5 mm): growing, ≥ 8 mm, 4B.
    paired = lung_rads_suggest(now, prior=prior, matches={"n1": "p1"}).nodules[0]
    assert (paired.course, paired.category, paired.rule_code) == ("growing", "4B", "solid_new_or_growing_ge8")
    assert (paired.prior_key, paired.matching) == ("p1", "given")

    # Re-linked and unchanged in size: stable, and category 2 after ≥ 3 months (v2022 "stable_3_months").
    same = [LungRadsNodule(6.4, "solid", centre_lps_mm=(60, 0, 0), key="n1")]
    stable = lung_rads_suggest(same, prior=prior, matches={"n1": "p1"}, prior_interval_months=4).nodules[0]
    assert (stable.course, stable.category, stable.rule_code) == ("stable", "2", "stable_3_months")


def test_a_pairing_to_none_makes_a_nearby_nodule_new():
    prior = [LungRadsNodule(6.0, "solid", centre_lps_mm=(0, 0, 0), key="p1")]
    now = [LungRadsNodule(6.5, "solid", centre_lps_mm=(1, 0, 0), key="n1")]
    assert lung_rads_suggest(now, prior=prior).nodules[0].course == "stable"
    unlinked = lung_rads_suggest(now, prior=prior, matches={"n1": None}).nodules[0]
    assert (unlinked.course, unlinked.category, unlinked.rule_code, unlinked.prior_key) == (
        "new", "4A", "solid_new_6_8", None)


def test_a_nodule_the_pairings_do_not_name_falls_back_to_the_distance_rule():
    prior = [LungRadsNodule(6.0, "solid", centre_lps_mm=(0, 0, 0), key="p1")]
    now = [LungRadsNodule(9.0, "solid", centre_lps_mm=(2, 0, 0), key="n1"),
           LungRadsNodule(4.0, "solid", centre_lps_mm=(80, 0, 0), key="n2")]
    result = lung_rads_suggest(now, prior=prior, matches={"n2": None})
    assert [(n.key, n.course, n.matching) for n in result.nodules] == [("n1", "growing", "distance"),
                                                                        ("n2", "new", "given")]


def test_a_pairing_with_an_unknown_prior_key_is_refused():
    prior, now = _far_apart()
    with pytest.raises(ValueError, match="not among the prior nodules"):
        lung_rads_suggest(now, prior=prior, matches={"n1": "p9"})


def test_the_vdt_and_its_growth_category_are_reported_beside_the_category():
    # Volume doubled in 100 days: VDT = 100 · ln 2 / ln 2 = 100 days (Schwartz 1961), fast (< 400 days).
    prior, now = _far_apart()
    paired = lung_rads_suggest(now, prior=prior, matches={"n1": "p1"}, prior_interval_days=100).nodules[0]
    assert paired.vdt_days == pytest.approx(100.0) and paired.growth_category == "fast"
    assert paired.volume_change_pct == pytest.approx(100.0)
    # Slow growth changes no Lung-RADS category: the course is still the diameter rule's.
    slow = lung_rads_suggest(now, prior=prior, matches={"n1": "p1"}, prior_interval_days=1000).nodules[0]
    assert (slow.growth_category, slow.course, slow.category) == ("slow", "growing", "4B")
    # No VDT without the interval, without volumes, or for a new nodule.
    assert lung_rads_suggest(now, prior=prior, matches={"n1": "p1"}).nodules[0].vdt_days is None
    no_volume = [LungRadsNodule(8.0, "solid", centre_lps_mm=(60, 0, 0), key="n1")]
    assert lung_rads_suggest(no_volume, prior=prior, matches={"n1": "p1"},
                             prior_interval_days=100).nodules[0].growth_category is None
    new = lung_rads_suggest(now, prior=prior, prior_interval_days=100).nodules[0]
    assert (new.course, new.vdt_days, new.growth_category) == ("new", None, None)
