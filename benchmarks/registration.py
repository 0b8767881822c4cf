"""Registration of a follow-up chest CT to its baseline: time and landmark error by working grid.

Takes the LIDC-IDRI-0001 chest CT (read from ../shared/data) and the follow-up the tests derive from it
(``tests/diagnosis/longitudinal/followup_data``: the real nodule grown by 3 mm, a sphere removed and one
added, the whole image moved by a known rigid transform of 3°, -2°, 4° and 4, -3, 5 mm), then registers
the follow-up to the baseline with :func:`diagnosis.longitudinal.registration.register_volumes` (rigid then
affine, lung-masked Mattes MI) on working grids of 3, 4 and 6 mm. For each it prints the wall time (best of
three), the mean and largest target registration error at six landmarks spread through the chest (mm,
against the known transform), and the time as a ratio to the 3 mm default measured in the same run.

Run: ``python benchmarks/registration.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis.longitudinal.registration import chest_ct_mask, register_volumes  # noqa: E402
from tests.diagnosis.longitudinal.followup_data import LIDC_NODULE_LPS_MM, build_pair  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "lidc_idri_0001_ct_nodules" / "dicom"
REPEATS = 3


def main() -> None:
    if not DATA.exists():
        sys.exit(f"real data not available: {DATA} is missing")
    pair = build_pair(DATA)
    fixed_mask, moving_mask = chest_ct_mask(pair.baseline), chest_ct_mask(pair.follow_up)
    g = pair.baseline.geometry
    centre = g.index_to_lps((np.asarray(g.shape) - 1) / 2.0)
    points = np.array([LIDC_NODULE_LPS_MM, pair.resolved_centre_lps_mm, centre, centre + [80, 30, -60],
                       centre + [-80, -20, 60], centre + [0, 60, 100]])
    truth = pair.to_follow_up(points)
    baseline_time = None
    print(f"{'grid mm':>8} {'best s':>8} {'ratio':>6} {'TRE mean mm':>12} {'TRE max mm':>11} {'lung Dice':>10}")
    for spacing in (3.0, 4.0, 6.0):
        times, result = [], None
        for _ in range(REPEATS):
            start = time.perf_counter()
            result = register_volumes(pair.baseline, pair.follow_up, fixed_mask=fixed_mask, moving_mask=moving_mask,
                                      landmarks_fixed_lps_mm=points, landmarks_moving_lps_mm=truth,
                                      working_spacing_mm=spacing)
            times.append(time.perf_counter() - start)
        best = min(times)
        baseline_time = baseline_time or best
        q = result.quality()
        print(f"{spacing:>8.1f} {best:>8.2f} {best / baseline_time:>6.2f} {q['landmark_error_mean_mm']:>12.3f} "
              f"{q['landmark_error_max_mm']:>11.3f} {q['mask_dice']:>10.4f}")


if __name__ == "__main__":
    main()
