"""The sparse diff codec: compute, encode, decode and apply, and every refusal."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest

from annotation.editing import DiffError, LabelDiff, diff_apply, diff_compute, diff_decode, diff_encode


def _ball(shape, spacing_mm, centre, radius_mm):
    """Voxels whose centre lies within ``radius_mm`` of voxel ``centre`` (a brush dab, made with numpy)."""
    distance2 = sum(((g - c) * s) ** 2 for g, c, s in zip(np.indices(shape), centre, spacing_mm))
    return distance2 <= radius_mm ** 2


def test_roundtrip_reproduces_edited_real_label_map_voxel_for_voxel(lung1):
    before = lung1["label"]
    after = before.copy()
    after[_ball(before.shape, lung1["spacing_mm"], (20, 40, 40), 6.0)] = 2
    after[before.shape[0] - 1, 0, :5] = 1

    wire = diff_encode(diff_compute(before, after))
    applied = diff_apply(before, diff_decode(wire, max_voxels=before.size))

    np.testing.assert_array_equal(applied, after)
    assert before.max() == 1  # the parent is untouched


def test_diff_of_a_brush_stroke_is_far_smaller_than_the_label_map(lung1):
    before = lung1["label"]
    after = before.copy()
    disc = _ball(before.shape, lung1["spacing_mm"], (24, 48, 48), 5.0)
    disc[np.arange(before.shape[0]) != 24] = False  # a 2-D brush on axial slice 24
    after[disc] = 3
    wire = diff_encode(diff_compute(before, after))
    assert len(wire["runs"]) * 50 < before.nbytes


def test_runs_are_grouped_by_contiguous_index_and_value():
    before = np.zeros((1, 2, 4), np.uint8)
    after = before.copy()
    after[0, 0, 1:3] = 1
    after[0, 0, 3] = 2
    after[0, 1, 0] = 2
    diff = diff_compute(before, after)
    assert diff.runs.tolist() == [[1, 2, 1], [3, 2, 2]]
    assert diff.voxel_count == 4


def test_identical_maps_give_an_empty_diff():
    a = np.ones((2, 2, 2), np.uint8)
    diff = diff_compute(a, a)
    assert diff.voxel_count == 0
    np.testing.assert_array_equal(diff_apply(a, diff), a)


def test_label_above_255_widens_to_uint16():
    a = np.zeros((1, 1, 3), np.uint8)
    out = diff_apply(a, LabelDiff((1, 1, 3), np.array([[0, 1, 300]], np.uint32)))
    assert out.dtype == np.uint16 and out[0, 0, 0] == 300


def _wire(runs, shape=(2, 2, 2)):
    raw = np.asarray(runs, "<u4").tobytes()
    return {"format": "runs-v1", "shape": list(shape), "runs": base64.b64encode(zlib.compress(raw)).decode()}


@pytest.mark.parametrize(
    "runs, code",
    [
        ([[0, 0, 1]], "bad_diff"),        # empty run
        ([[6, 3, 1]], "bad_diff"),        # past the end
        ([[4, 2, 1], [0, 1, 1]], "bad_diff"),  # unsorted
        ([[0, 3, 1], [2, 1, 1]], "bad_diff"),  # overlapping
        ([[0, 1, 70000]], "bad_diff"),    # label too large
    ],
)
def test_rejects_malformed_runs(runs, code):
    with pytest.raises(DiffError) as err:
        diff_apply(np.zeros((2, 2, 2), np.uint8), diff_decode(_wire(runs), max_voxels=8))
    assert err.value.code == code


def test_rejects_a_diff_made_on_another_grid():
    with pytest.raises(DiffError) as err:
        diff_apply(np.zeros((2, 2, 2), np.uint8), diff_decode(_wire([[0, 1, 1]], shape=(2, 2, 3)), max_voxels=12))
    assert err.value.code == "wrong_grid"


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {"format": "dense", "shape": [2, 2, 2], "runs": ""},
        {"format": "runs-v1", "shape": [2, 2], "runs": ""},
        {"format": "runs-v1", "shape": [2, 2, 2], "runs": "***"},
        {"format": "runs-v1", "shape": [2, 2, 2], "runs": base64.b64encode(b"not zlib").decode()},
        {"format": "runs-v1", "shape": [2, 2, 2], "runs": base64.b64encode(zlib.compress(b"12345")).decode()},
    ],
)
def test_rejects_undecodable_payloads(payload):
    with pytest.raises(DiffError):
        diff_decode(payload, max_voxels=8)


def test_rejects_a_payload_that_inflates_beyond_the_volume():
    bomb = base64.b64encode(zlib.compress(bytes(12 * 10_000))).decode()
    with pytest.raises(DiffError, match="larger than the volume"):
        diff_decode({"format": "runs-v1", "shape": [2, 2, 2], "runs": bomb}, max_voxels=8)


def test_rejects_labels_outside_the_label_table():
    with pytest.raises(DiffError) as err:
        diff_apply(np.zeros((2, 2, 2), np.uint8), LabelDiff((2, 2, 2), np.array([[0, 1, 5]], np.uint32)), allowed_labels={1, 2})
    assert err.value.code == "unknown_label"


def test_rejects_changes_to_locked_labels():
    base = np.zeros((2, 2, 2), np.uint8)
    base[0, 0, 0] = 1
    erase_locked = LabelDiff((2, 2, 2), np.array([[0, 1, 0]], np.uint32))
    paint_locked = LabelDiff((2, 2, 2), np.array([[3, 1, 1]], np.uint32))
    for diff in (erase_locked, paint_locked):
        with pytest.raises(DiffError) as err:
            diff_apply(base, diff, locked_labels={1})
        assert err.value.code == "locked_label"
    ok = diff_apply(base, LabelDiff((2, 2, 2), np.array([[3, 1, 2]], np.uint32)), locked_labels={1})
    assert ok[0, 0, 0] == 1 and ok.ravel()[3] == 2
