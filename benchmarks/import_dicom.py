"""Time our DICOM series import against dcm2niix on the same series, in the same run.

Usage: ``python benchmarks/import_dicom.py [SERIES_FOLDER]`` (default: the LIDC-IDRI-0001 CT series in
../shared/data, 133 slices). Prints seconds per 100 slices (best of 3, warm file cache) for
``read_dicom_series`` (headers, sorting, validation, decoding, modality LUT into a (k, j, i) int16
volume) and for ``dcm2niix`` writing an uncompressed NIfTI to a temporary folder, and the ratio.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_DIR))

from annotation.imaging.dicom import read_dicom_series  # noqa: E402

DEFAULT_SERIES = Path(
    os.environ.get("YIXIN_SHARED_DATA", REPO_DIR.parent / "shared" / "data")
) / "lidc_idri_0001_ct_nodules" / "dicom"
REPEATS = 3


def best_of(repeats: int, run) -> float:
    """Return the shortest wall-clock time (s) of ``repeats`` calls of ``run``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SERIES
    if not folder.is_dir():
        print(f"skipped: series folder {folder} not found (../shared/data is needed)")
        return 0
    dcm2niix = shutil.which("dcm2niix")
    if dcm2niix is None:
        print("skipped: dcm2niix is not installed (apt-get install dcm2niix)")
        return 0
    files = sorted(p for p in folder.iterdir() if p.is_file())

    series = read_dicom_series(files)  # warm the file cache and the imports once
    slices = sum(s.volume.array.shape[0] for s in series)
    ours_s = best_of(REPEATS, lambda: read_dicom_series(files))

    with tempfile.TemporaryDirectory(prefix="bench-dcm2niix-") as out:
        def run_dcm2niix() -> None:
            for old in Path(out).iterdir():
                old.unlink()
            subprocess.run(
                [dcm2niix, "-z", "n", "-b", "n", "-f", "series", "-o", out, str(folder)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        run_dcm2niix()
        theirs_s = best_of(REPEATS, run_dcm2niix)

    per100 = 100.0 / slices
    print(f"series: {folder} ({slices} slices, {len(files)} files)")
    print(f"read_dicom_series: {ours_s * per100:.3f} s per 100 slices (best of {REPEATS}: {ours_s:.3f} s)")
    print(f"dcm2niix:          {theirs_s * per100:.3f} s per 100 slices (best of {REPEATS}: {theirs_s:.3f} s)")
    print(f"ratio ours/dcm2niix: {ours_s / theirs_s:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
