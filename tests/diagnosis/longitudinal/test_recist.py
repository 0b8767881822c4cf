"""RECIST 1.1 (Eisenhauer et al., Eur J Cancer 45:228–247, 2009): each rule at its edge."""

import pytest

from diagnosis.longitudinal.recist import (
    CR, NE, NON_CR_NON_PD, PD, PR, SD,
    RecistError, TargetLesion, TimePoint, evaluate, lesion_measurable, overall_response, target_response,
    validate_targets,
)


def lung(key, long_mm, organ="lung"):
    return TargetLesion(key=key, organ=organ, long_axis_mm=long_mm, short_axis_mm=long_mm * 0.7)


def node(key, short_mm):
    return TargetLesion(key=key, organ="mediastinum", long_axis_mm=short_mm * 1.5, short_axis_mm=short_mm,
                        lymph_node=True)


def test_measurable_limits_for_lesions_nodes_and_thick_slices():
    assert lesion_measurable(lung("a", 10.0)) and not lesion_measurable(lung("a", 9.9))
    assert lesion_measurable(node("n", 15.0)) and not lesion_measurable(node("n", 14.9))
    assert not lesion_measurable(lung("a", 12.0), slice_thickness_mm=7.0)  # needs 2 × 7 = 14 mm
    assert lesion_measurable(lung("a", 14.0), slice_thickness_mm=7.0)


def test_five_targets_two_per_organ_are_allowed():
    validate_targets([lung("a", 20), lung("b", 20), lung("c", 20, "liver"), lung("d", 20, "liver"), node("n", 20)])


@pytest.mark.parametrize("targets, code", [
    ([], "no_targets"),
    ([lung(k, 20, organ) for k, organ in zip("abcdef", ["lung", "liver", "bone", "kidney", "brain", "spleen"])],
     "too_many_targets"),
    ([lung("a", 20), lung("b", 20), lung("c", 20)], "too_many_in_organ"),
    # Lymph nodes in different places are one organ (EORTC clarification).
    ([node("n1", 20), node("n2", 20), TargetLesion("n3", "axilla", 30, 20, lymph_node=True)], "too_many_in_organ"),
    ([lung("a", 20), lung("a", 25, "liver")], "duplicate_target"),
    ([lung("a", 9.0)], "not_measurable"),
    ([node("n", 12.0)], "not_measurable"),
])
def test_selection_limits(targets, code):
    with pytest.raises(RecistError) as raised:
        validate_targets(targets)
    assert raised.value.code == code


def test_nodal_targets_count_with_their_short_axis():
    [baseline] = evaluate([lung("a", 30), node("n", 20)], [])
    assert baseline.sum_mm == 50.0


def test_partial_response_at_exactly_30_percent_below_baseline():
    targets = [lung("a", 60), lung("b", 40, "liver")]  # 100 mm
    points = [TimePoint("t1", {"a": 40, "b": 30}), TimePoint("t2", {"a": 40, "b": 30.1})]
    _, t1, t2 = evaluate(targets, points)
    assert t1.target_response == PR and t1.change_from_baseline_pct == pytest.approx(-30.0)
    assert t2.target_response == SD  # 70.1 mm: 29.9 % below baseline; 0.1 mm above the nadir


def test_progression_needs_20_percent_and_5_mm_above_the_nadir():
    targets = [lung("a", 20)]
    # nadir 20 → 24 mm: +20 % but only 4 mm — SD; 25 mm: +25 % and 5 mm — PD.
    assert evaluate(targets, [TimePoint("t", {"a": 24})])[1].target_response == SD
    assert evaluate(targets, [TimePoint("t", {"a": 25})])[1].target_response == PD
    big = [lung("a", 100)]
    # nadir 100 → 119 mm: +19 mm but 19 % — SD; 120 mm: PD.
    assert evaluate(big, [TimePoint("t", {"a": 119})])[1].target_response == SD
    assert evaluate(big, [TimePoint("t", {"a": 120})])[1].target_response == PD


def test_progression_is_measured_from_the_nadir_not_the_baseline():
    targets = [lung("a", 100)]
    points = [TimePoint("t1", {"a": 50}), TimePoint("t2", {"a": 60}), TimePoint("t3", {"a": 55})]
    _, t1, t2, t3 = evaluate(targets, points)
    assert t1.target_response == PR
    # 60 mm is 40 % below baseline (PR by baseline) but +20 % and +10 mm above the nadir of 50: PD wins.
    assert t2.nadir_mm == 50 and t2.target_response == PD
    assert t3.nadir_mm == 50 and t3.target_response == PR  # +5 mm but only +10 %


def test_complete_response_needs_lesions_gone_and_nodes_below_10_mm():
    targets = [lung("a", 30), node("n", 20)]
    _, cr = evaluate(targets, [TimePoint("t", {"a": 0, "n": 9.9}, non_target=CR)])
    assert cr.target_response == CR and cr.overall_response == CR and cr.sum_mm == pytest.approx(9.9)
    _, not_cr = evaluate(targets, [TimePoint("t", {"a": 0, "n": 10.0}, non_target=CR)])
    assert not_cr.target_response == PR


def test_a_target_too_small_to_measure_counts_5_mm_and_is_not_complete():
    _, point = evaluate([lung("a", 30)], [TimePoint("t", {"a": 5.0})])
    assert point.target_response == PR and point.sum_mm == 5.0


def test_a_new_lesion_is_progression_whatever_the_targets_do():
    _, point = evaluate([lung("a", 30)], [TimePoint("t", {"a": 10}, new_lesions=True)])
    assert point.target_response == PR and point.overall_response == PD and "new lesion" in point.rule


def test_a_target_not_assessed_makes_the_time_point_not_evaluable_and_keeps_the_nadir():
    targets = [lung("a", 30), lung("b", 30, "liver")]
    _, t1, t2 = evaluate(targets, [TimePoint("t1", {"a": None, "b": 10}), TimePoint("t2", {"a": 30, "b": 30})])
    assert t1.target_response == NE and t1.overall_response == NE and t1.sum_mm is None
    assert t2.nadir_mm == 60 and t2.target_response == SD


@pytest.mark.parametrize("target, non_target, new, expected", [
    (CR, CR, False, CR), (CR, NON_CR_NON_PD, False, PR), (CR, NE, False, PR),
    (PR, NON_CR_NON_PD, False, PR), (PR, NE, False, PR), (SD, NE, False, SD), (SD, NON_CR_NON_PD, False, SD),
    (NE, NON_CR_NON_PD, False, NE), (PD, CR, False, PD), (CR, PD, False, PD), (CR, CR, True, PD),
    (None, CR, False, CR), (None, NON_CR_NON_PD, False, NON_CR_NON_PD), (None, NE, False, NE), (None, PD, False, PD),
    (None, CR, True, PD),
])
def test_overall_response_tables_1_and_2(target, non_target, new, expected):
    assert overall_response(target=target, non_target=non_target, new_lesions=new) == expected


def test_time_point_errors():
    targets = [lung("a", 30)]
    for point, code in [(TimePoint("t", {}), "missing_target"), (TimePoint("t", {"a": 1, "x": 2}), "unknown_target"),
                        (TimePoint("t", {"a": -1}), "bad_diameter"),
                        (TimePoint("t", {"a": 10}, non_target="better"), "bad_response")]:
        with pytest.raises(RecistError) as raised:
            evaluate(targets, [point])
        assert raised.value.code == code
    with pytest.raises(ValueError):
        target_response(baseline_sum_mm=0, nadir_sum_mm=0, current_sum_mm=1, complete=False)
