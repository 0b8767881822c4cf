"""LUNA16 matching and the FROC read from it, on hand-placed points."""

from __future__ import annotations

import numpy as np

from diagnosis.measurements.matching import Reference, froc_sensitivities, luna16_match


def test_a_detection_within_the_radius_hits_and_one_just_outside_is_extra():
    references = [Reference((0, 0, 0), 10.0)]
    match = luna16_match(np.array([[0, 0, 4.9], [0, 5.1, 0]]), references)
    assert match.outcomes == ("hit", "extra")
    assert match.hits_per_reference == ((0,),) and match.missed == ()


def test_detections_on_unscored_nodules_and_point_marks_are_ignored_and_misses_are_counted():
    references = [Reference((0, 0, 0), 6.0), Reference((50, 0, 0), 4.0, scored=False)]
    detections = np.array([[51, 0, 0], [100, 100, 2.9], [20, 20, 20]])
    match = luna16_match(detections, references, np.array([[100, 100, 0]]))
    assert match.outcomes == ("ignored", "ignored", "extra")
    assert match.missed == (0,)  # the unscored nodule is neither hit nor missed


def test_froc_reads_the_sensitivity_before_each_false_positive_budget_is_exceeded():
    references = [Reference((0, 0, 0), 10.0), Reference((40, 0, 0), 10.0)]
    # Ranked: hit A, extra, extra, hit B, extra.
    detections = np.array([[0, 0, 1], [90, 0, 0], [0, 90, 0], [40, 1, 0], [0, 0, 90]])
    match = luna16_match(detections, references)
    assert froc_sensitivities(match, rates=(1, 2, 4)) == {1: 0.5, 2: 1.0, 4: 1.0}
