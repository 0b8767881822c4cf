"""Saving an edit as a sparse diff versus sending the whole label map, on a real CT grid.

Takes the LIDC-IDRI-0001 chest CT grid (133 × 512 × 512 voxels, read from ../shared/data) with a
label map of both lungs made by the portal's classical lung segmentation, then applies three typical
edits, made with numpy as the workbench's brush and eraser make them in the browser (a voxel is
covered when its centre lies within the radius, in mm):

- a 2-D brush stroke (radius 5 mm, 20 dabs along a line on one axial slice);
- a 3-D sphere brush dab (radius 15 mm);
- a refinement-sized change (erasing one lung's lowest 10 slices).

For each it prints, in the same run: the JSON size of the "runs-v1" diff against the gzip NIfTI of
the whole label map (what the browser would otherwise upload), and the server time to decode and apply
the diff against the time to decode that whole NIfTI (best of five, both in this process). Ratios are
whole / diff, so > 1 means the diff is smaller or faster.

Run: ``python benchmarks/annotation_editing.py``
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotation.editing import diff_apply, diff_compute, diff_decode, diff_encode  # noqa: E402
from annotation.imaging.formats import read_volume, write_labelmap_nifti  # noqa: E402

REPEATS = 5


def best_of(fn, repeats=REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ball(shape, spacing_mm, centre, radius_mm: float, *, axis: int | None = None) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of voxel ``centre``; with ``axis``, only the slice
    through ``centre`` normal to that axis (a 2-D brush)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    inside = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing_mm)) <= radius_mm ** 2
    if axis is not None:
        plane = [slice(None)] * 3
        plane[axis] = centre[axis]
        only = np.zeros(shape, dtype=bool)
        only[tuple(plane)] = inside[tuple(plane)]
        return only
    return inside


def main() -> None:
    from annotation.imaging.dicom import read_dicom_series
    from annotation.ml.lung import segment_lungs

    data = ROOT.parent / "shared" / "data" / "lidc_idri_0001_ct_nodules" / "dicom"
    if not data.exists():
        raise SystemExit(f"real data missing: {data}")
    volume = read_dicom_series(sorted(data.glob("*.dcm")))[0].volume
    geometry = volume.geometry
    labels = segment_lungs(volume).astype(np.uint8)
    spacing = geometry.spacing_mm
    print(f"grid (k, j, i) {geometry.shape}, spacing {tuple(round(s, 3) for s in spacing)} mm, "
          f"{int((labels > 0).sum())} lung voxels")

    with tempfile.TemporaryDirectory() as tmp:
        whole_path = Path(tmp) / "whole.nii.gz"
        edits = {}
        k_mid = geometry.shape[0] // 2
        stroke = labels.copy()
        for n in range(20):
            stroke[ball(labels.shape, spacing, (k_mid, 200, 150 + 5 * n), 5.0, axis=0)] = 3
        edits["2-D brush stroke"] = stroke
        dab = labels.copy()
        dab[ball(labels.shape, spacing, (k_mid, 300, 350), 15.0)] = 3
        edits["3-D sphere dab"] = dab
        ks = np.nonzero((labels == 1).any(axis=(1, 2)))[0]
        lowest = np.zeros(labels.shape, bool)
        lowest[ks[:10]] = True
        erased = labels.copy()
        erased[lowest & (labels == 1)] = 0
        edits["erase 10 slices of a lung"] = erased

        print(f"{'edit':28s} {'voxels':>9s} {'diff B':>9s} {'whole B':>10s} {'size ×':>8s} "
              f"{'apply ms':>9s} {'whole ms':>9s} {'time ×':>7s}")
        for name, after in edits.items():
            wire = json.dumps(diff_encode(diff_compute(labels, after))).encode()
            write_labelmap_nifti(after, geometry, whole_path)
            whole_bytes = whole_path.stat().st_size
            payload = json.loads(wire)

            def apply_diff(payload=payload):
                return diff_apply(labels, diff_decode(payload, max_voxels=labels.size))

            def read_whole():
                return read_volume(whole_path).array

            np.testing.assert_array_equal(apply_diff(), after)
            np.testing.assert_array_equal(read_whole(), after)
            t_diff, t_whole = best_of(apply_diff), best_of(read_whole)
            changed = int((after != labels).sum())
            print(f"{name:28s} {changed:9d} {len(wire):9d} {whole_bytes:10d} {whole_bytes / len(wire):8.1f} "
                  f"{t_diff * 1e3:9.1f} {t_whole * 1e3:9.1f} {t_whole / t_diff:7.2f}")
    print("size × and time × are whole-label-map / diff (higher favours the diff). The diff apply time "
          "includes copying the parent map; reading the parent from storage is paid by both paths.")


if __name__ == "__main__":
    main()
