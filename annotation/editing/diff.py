"""Sparse label-map diffs: what the browser sends when a segmentation is saved.

A diff lists the voxels whose label changed as *runs* over the flat C-order index of the
``[k, j, i]`` label map (``flat = (k * J + j) * I + i``, which is also the voxel order of the NIfTI
file the viewer loads: i fastest). Each run is three unsigned 32-bit little-endian integers
``(start, length, value)``: voxels ``start .. start + length - 1`` take label ``value``. Runs are
sorted, do not overlap, and have ``length >= 1``.

On the wire (format ``"runs-v1"``) the run array is compressed with zlib (RFC 1950, what the
browser's ``CompressionStream("deflate")`` produces) and base64-encoded inside a JSON object::

    {"format": "runs-v1", "shape": [K, J, I], "runs": "<base64 zlib>"}

Only the edited region travels: a brush stroke of a few thousand voxels is a few hundred bytes
whatever the size of the volume.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass

from typing import Any

import numpy as np

from .errors import N_

FORMAT = "runs-v1"
MAX_LABEL = 65535


class DiffError(ValueError):
    """A diff that cannot be applied. ``code`` is stable; the message (an ``N_`` template) is safe to show."""

    def __init__(self, message: str, *, params: dict[str, Any] | None = None, code: str = "bad_diff"):
        self.template = message
        self.params = dict(params) if params else {}
        self.message = message % self.params if self.params else message
        self.code = code
        super().__init__(self.message)


@dataclass(frozen=True)
class LabelDiff:
    """Changed voxels of a label map.

    Attributes
    ----------
    shape : tuple of 3 int
        Grid (k, j, i) the diff was made on.
    runs : ndarray, shape (n, 3), uint32
        ``(start, length, value)`` per run over the flat C-order index.
    """

    shape: tuple[int, int, int]
    runs: np.ndarray

    @property
    def voxel_count(self) -> int:
        """Return the number of voxels the diff sets."""
        return int(self.runs[:, 1].astype(np.int64).sum()) if len(self.runs) else 0


def diff_compute(before: np.ndarray, after: np.ndarray) -> LabelDiff:
    """Return the diff that turns label map ``before`` into ``after``.

    Parameters
    ----------
    before, after : ndarray, shape (k, j, i), integer
        Label maps on the same grid.

    Raises
    ------
    DiffError
        When the shapes differ.
    """
    if before.shape != after.shape or before.ndim != 3:
        raise DiffError(N_("label maps differ in shape: %(shape)s vs %(shape2)s"),
                        params={"shape": before.shape, "shape2": after.shape}, code="wrong_grid")
    a = np.ascontiguousarray(before).ravel()
    b = np.ascontiguousarray(after).ravel()
    changed = np.flatnonzero(a != b)
    if changed.size == 0:
        return LabelDiff(tuple(before.shape), np.zeros((0, 3), dtype=np.uint32))
    values = b[changed].astype(np.int64)
    # A run breaks where the index jumps or the new value changes.
    breaks = np.flatnonzero((np.diff(changed) != 1) | (np.diff(values) != 0)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [changed.size]])
    runs = np.stack([changed[starts], ends - starts, values[starts]], axis=1).astype(np.uint32)
    return LabelDiff(tuple(before.shape), runs)


def diff_apply(label_map: np.ndarray, diff: LabelDiff, *, locked_labels: frozenset[int] | set[int] = frozenset(),
               allowed_labels: set[int] | None = None) -> np.ndarray:
    """Return a copy of ``label_map`` with ``diff`` applied; the input is never changed.

    Parameters
    ----------
    label_map : ndarray, shape (k, j, i), integer
        The parent version's label map.
    diff : LabelDiff
        Runs made on the same grid.
    locked_labels : set of int
        Labels that may neither be painted nor have their voxels changed.
    allowed_labels : set of int, optional
        Label values the result may contain besides 0 (the label table); None allows any.

    Returns
    -------
    ndarray, shape (k, j, i)
        uint8 when every label is below 256, else uint16.

    Raises
    ------
    DiffError
        ``wrong_grid`` for another shape, ``bad_diff`` for runs out of bounds, unsorted or
        overlapping, ``unknown_label`` for a value outside the label table, ``locked_label`` when a
        locked label would change.
    """
    diff_validate(diff, shape=tuple(label_map.shape))
    runs = diff.runs.astype(np.int64)
    values = set(np.unique(runs[:, 2]).tolist()) if len(runs) else set()
    if allowed_labels is not None:
        unknown = sorted(v for v in values if v != 0 and v not in allowed_labels)
        if unknown:
            raise DiffError(N_("the diff paints labels %(unknown)s that are not in the label table"),
                            params={"unknown": unknown}, code="unknown_label")
    locked = {int(v) for v in locked_labels}
    painted_locked = sorted(values & locked)
    if painted_locked:
        raise DiffError(N_("labels %(painted_locked)s are locked and cannot be painted"),
                        params={"painted_locked": painted_locked}, code="locked_label")
    top = max([int(label_map.max(initial=0))] + [int(v) for v in values])
    dtype = np.uint8 if top < 256 else np.uint16
    out = np.ascontiguousarray(label_map, dtype=dtype).copy()
    flat = out.reshape(-1)
    if len(runs):
        index = _run_indices(runs)
        if locked:
            touched = np.isin(flat[index], list(locked))
            if touched.any():
                hit = sorted(set(np.unique(flat[index][touched]).tolist()))
                raise DiffError(N_("labels %(hit)s are locked and their voxels cannot change"),
                                params={"hit": hit}, code="locked_label")
        flat[index] = np.repeat(runs[:, 2], runs[:, 1]).astype(dtype)
    return out


def _run_indices(runs: np.ndarray) -> np.ndarray:
    lengths = runs[:, 1]
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(runs[:, 0], lengths) + offsets


def diff_validate(diff: LabelDiff, *, shape: tuple[int, int, int]) -> None:
    """Check a diff against a grid.

    Raises
    ------
    DiffError
        ``wrong_grid`` when ``diff.shape != shape``; ``bad_diff`` when a run is empty, out of
        bounds, unsorted or overlaps the previous one, or a value exceeds 65535.
    """
    if tuple(diff.shape) != tuple(shape):
        raise DiffError(N_("the diff was made on grid %(shape)s, the segmentation's grid is %(shape2)s"),
                        params={"shape": list(diff.shape), "shape2": list(shape)},
                        code="wrong_grid")
    runs = diff.runs
    if runs.ndim != 2 or runs.shape[1] != 3:
        raise DiffError(N_("runs must be (start, length, value) triples"))
    if not len(runs):
        return
    r = runs.astype(np.int64)
    total = int(np.prod(shape))
    if (r[:, 1] < 1).any():
        raise DiffError(N_("a run has length 0"))
    if (r[:, 0] + r[:, 1] > total).any():
        raise DiffError(N_("a run reaches past the end of the volume"))
    if (r[1:, 0] < r[:-1, 0] + r[:-1, 1]).any():
        raise DiffError(N_("runs must be sorted and must not overlap"))
    if (r[:, 2] > MAX_LABEL).any():
        raise DiffError(N_("label values must be at most %(max_label)s"), params={"max_label": MAX_LABEL})


def diff_encode(diff: LabelDiff) -> dict:
    """Return the JSON wire form of a diff (format ``runs-v1``)."""
    raw = np.ascontiguousarray(diff.runs, dtype="<u4").tobytes()
    return {"format": FORMAT, "shape": list(diff.shape), "runs": base64.b64encode(zlib.compress(raw, 6)).decode("ascii")}


def diff_decode(data: dict, *, max_voxels: int) -> LabelDiff:
    """Parse the JSON wire form of a diff.

    Parameters
    ----------
    data : dict
        ``{"format": "runs-v1", "shape": [K, J, I], "runs": base64(zlib(uint32 LE triples))}``.
    max_voxels : int
        Voxel count of the target grid; bounds the decompressed size (3 × 4 bytes per run, at most
        one run per voxel) so that a small payload cannot expand without limit.

    Raises
    ------
    DiffError
        ``bad_diff`` for a wrong format, bad base64/zlib data, or a run array of the wrong size.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DiffError(N_("the diff must be an object with format %(format)r"), params={"format": FORMAT})
    shape = data.get("shape")
    if not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
        raise DiffError(N_("the diff's shape must be three positive integers (k, j, i)"))
    encoded = data.get("runs")
    if not isinstance(encoded, str):
        raise DiffError(N_("the diff's runs must be a base64 string"))
    try:
        compressed = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise DiffError(N_("the diff's runs are not valid base64")) from None
    limit = 12 * max(1, int(max_voxels)) + 1
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, limit)
        if inflater.unconsumed_tail or not inflater.eof:
            raise DiffError(N_("the diff's runs are truncated or larger than the volume allows"))
    except zlib.error:
        raise DiffError(N_("the diff's runs are not valid zlib data")) from None
    if len(raw) % 12:
        raise DiffError(N_("the diff's run data is not a whole number of (start, length, value) triples"))
    runs = np.frombuffer(raw, dtype="<u4").reshape(-1, 3).astype(np.uint32)
    return LabelDiff(tuple(shape), runs)
