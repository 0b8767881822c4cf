"""Matching findings across time points: registered centroid distance, diameter, overlap; new and resolved."""

import numpy as np
import pytest

from diagnosis.longitudinal.matching import MATCH_DISTANCE_MM, match_by_name, match_lesions


def test_pairs_nearest_findings_one_to_one_and_names_new_and_resolved():
    prior = [[0, 0, 0], [50, 0, 0], [100, 100, 100]]
    current = [[52, 1, 0], [1, 0, 1], [-80, 0, 0]]
    result = match_lesions(prior, current)
    assert result.pairs == ((0, 1), (1, 0))
    assert result.resolved == (2,) and result.new == (2,)
    assert result.distances_mm[0] == pytest.approx(np.sqrt(2))


def test_the_distance_limit_is_10_mm_or_half_the_larger_diameter():
    just_in = match_lesions([[0, 0, 0]], [[MATCH_DISTANCE_MM, 0, 0]])
    just_out = match_lesions([[0, 0, 0]], [[MATCH_DISTANCE_MM + 0.01, 0, 0]])
    assert just_in.pairs == ((0, 0),) and just_out.pairs == ()
    assert just_out.resolved == (0,) and just_out.new == (0,)
    big = match_lesions([[0, 0, 0]], [[14, 0, 0]], prior_diameters_mm=[20], current_diameters_mm=[30])
    assert big.pairs == ((0, 0),)


def test_overlap_pairs_beyond_the_distance_and_wins_over_a_nearer_candidate():
    prior = [[0, 0, 0]]
    current = [[5, 0, 0], [30, 0, 0]]
    overlaps = np.array([[0.0, 0.4]])
    result = match_lesions(prior, current, overlaps=overlaps)
    assert result.pairs == ((0, 1),) and result.overlaps == (0.4,) and result.new == (0,)


def test_the_assignment_is_globally_least_cost_not_greedy():
    # Greedy would give prior 0 its nearest (current 0, 1 mm) and leave prior 1 without a partner.
    prior = [[0, 0, 0], [-8, 0, 0]]
    current = [[1, 0, 0], [9, 0, 0]]
    result = match_lesions(prior, current)
    assert result.pairs == ((0, 1), (1, 0))
    assert result.new == () and result.resolved == ()


def test_empty_sides_are_all_new_or_all_resolved():
    assert match_lesions(np.zeros((0, 3)), [[0, 0, 0]]).new == (0,)
    assert match_lesions([[0, 0, 0]], np.zeros((0, 3))).resolved == (0,)


@pytest.mark.parametrize("kwargs", [
    {"prior_centroids_mm": [[np.nan, 0, 0]], "current_centroids_mm": [[0, 0, 0]]},
    {"prior_centroids_mm": [[0, 0, 0]], "current_centroids_mm": [[0, 0, 0]], "prior_diameters_mm": [1, 2]},
    {"prior_centroids_mm": [[0, 0, 0]], "current_centroids_mm": [[0, 0, 0]], "overlaps": [[1.5]]},
    {"prior_centroids_mm": [[0, 0, 0]], "current_centroids_mm": [[0, 0, 0]], "max_distance_mm": -1},
])
def test_rejects_malformed_input(kwargs):
    with pytest.raises(ValueError):
        match_lesions(**kwargs)


def test_segments_of_organs_pair_by_name():
    result = match_by_name(["Right lung", "left lung", "liver"], ["left  lung", "right lung", "spleen"])
    assert result.pairs == ((0, 1), (1, 0)) and result.resolved == (2,) and result.new == (2,)
