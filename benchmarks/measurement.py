"""Time ``measure_segments`` on a chest-CT-sized label map against a bare voxel count.

Builds a 512×512×300 uint8 label map, shape (k, j, i) = (300, 512, 512), spacing (1.0, 0.7, 0.7) mm in
that order, with two lung-like ellipsoids (labels 1 and 2, about 6.4 M voxels each) and five spherical
nodules sharing label 3, then prints the best of three runs of ``measure_segments``, the best of three
``np.bincount`` voxel counts over the same map (the floor any per-label pass pays), their ratio, and the
peak resident memory (``resource.getrusage``) after building the map, after ``measure_segments`` and
after ``np.bincount`` (which converts the map to int64 first).

Run: ``python benchmarks/measurement.py``
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotation.imaging.volume import Geometry  # noqa: E402
from diagnosis.measurements import measure_segments  # noqa: E402

SHAPE = (300, 512, 512)
SPACING_MM = (1.0, 0.7, 0.7)
REPEATS = 3


def build_label_map() -> np.ndarray:
    """Return a uint8 (k, j, i) map: lungs as labels 1 and 2, nodules (inside the lungs) as label 3."""
    label_map = np.zeros(SHAPE, dtype=np.uint8)
    j, i = np.ogrid[: SHAPE[1], : SHAPE[2]]
    nodules = (((100, 200, 150), 6), ((180, 300, 360), 10), ((60, 260, 120), 4),
               ((220, 230, 400), 8), ((150, 320, 170), 3))  # (centre index, radius mm)
    sk, sj, si = SPACING_MM
    # One slice at a time, so building the map does not set the peak memory the benchmark reports.
    for k in range(SHAPE[0]):
        plane = label_map[k]
        # Semi-axes in voxels (120 × 105 × 60 mm): each lung about 6.4×10^6 voxels.
        for label, centre_i in ((1, 150), (2, 362)):
            plane[((k - 150) / 120.0) ** 2 + ((j - 250) / 150.0) ** 2 + ((i - centre_i) / 85.0) ** 2 <= 1.0] = label
        for (ck, cj, ci), radius in nodules:
            squared = ((k - ck) * sk) ** 2 + ((j - cj) * sj) ** 2 + ((i - ci) * si) ** 2
            plane[squared <= radius**2] = 3
    return label_map


def peak_rss_mb() -> float:
    """Return the peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best_of(function, repeats: int = REPEATS) -> tuple[float, object]:
    best = float("inf")
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    label_map = build_label_map()
    geometry = Geometry(shape=SHAPE, spacing_mm=SPACING_MM)

    rss_built_mb = peak_rss_mb()
    measure_s, measurements = best_of(lambda: measure_segments(label_map, geometry))
    rss_measured_mb = peak_rss_mb()
    baseline_s, counts = best_of(lambda: np.bincount(label_map.ravel()))
    rss_counted_mb = peak_rss_mb()

    for m in measurements:
        print(
            f"label {m.label}: {m.voxel_count} voxels, {m.volume_ml:.1f} mL, {m.surface_area_mm2:.0f} mm², "
            f"max {m.max_diameter_mm:.1f} mm, axial {m.axial_long_mm:.1f} × {m.axial_short_mm:.1f} mm, "
            f"{m.component_count} component(s)"
        )
        assert m.voxel_count == counts[m.label]
    print(f"label map {SHAPE} {label_map.dtype}, {label_map.size / 1e6:.1f} M voxels")
    print(f"np.bincount voxel count (baseline): {baseline_s:.3f} s (best of {REPEATS})")
    print(f"measure_segments:                   {measure_s:.3f} s (best of {REPEATS})")
    print(f"ratio measure_segments / bincount:  {measure_s / baseline_s:.1f}")
    print(
        f"peak RSS: {rss_built_mb:.0f} MB after building the map, {rss_measured_mb:.0f} MB after "
        f"measure_segments, {rss_counted_mb:.0f} MB after np.bincount"
    )


if __name__ == "__main__":
    main()
