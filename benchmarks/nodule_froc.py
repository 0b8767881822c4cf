"""FROC of the classical lung-nodule detector on the LIDC-IDRI-0001 reads, with the time per scan.

Reference nodules come from the four radiologists' XML (``annotations/069.xml`` in
../shared/data/lidc_idri_0001_ct_nodules): each reader's nodules ≥ 3 mm (with contours) are grouped
across readers by centroid distance (10 mm); a group's centre is the mean of its readers'
centroids and its diameter the mean of their largest axial extents. Two reference sets are
scored, as in LUNA16 (Setio et al., Med. Image Anal. 42:1–13, 2017): nodules accepted by ≥ 3 of
the 4 readers, and by ≥ 1 reader.

A hit is a detection whose centre lies within the reference nodule's radius (LUNA16). Detections
that hit a nodule outside the scored set (e.g. a 1- or 2-reader nodule when scoring the ≥ 3 set), a
nodule < 3 mm or a non-nodule are neither hits nor false positives (LUNA16's "irrelevant
findings"); every other detection is a false positive. Detections are ranked by confidence and the
sensitivity is read at 1, 2, 4 and 8 false positives per scan (one scan here).

The time covers what the one-click run does: the classical lung segmentation and the detection,
on the CPU threads the machine gives (note the load average printed alongside).

Run: ``python benchmarks/nodule_froc.py``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotation.imaging.dicom.read import read_dicom_series  # noqa: E402
from annotation.interop.lidc import group_marks, parse_lidc_xml  # noqa: E402
from annotation.ml.lung import segment_lungs  # noqa: E402
from annotation.ml.nodules import detect_nodules  # noqa: E402

DATA = Path(os.environ.get("YIXIN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "lidc_idri_0001_ct_nodules"
FP_RATES = (1, 2, 4, 8)


def reference_nodules(series, reads):
    """Return [(centre LPS mm, diameter mm, reader count)] for nodules ≥ 3 mm, and the points of the rest."""
    geometry = series.volume.geometry
    slice_of = {uid: k for k, uid in enumerate(series.sop_instance_uids)}
    spacing = np.asarray(geometry.spacing_mm)
    big, points, readers = [], [], []
    for mark in reads.marks:
        voxels = np.array([(slice_of[roi.sop_instance_uid], y, x) for roi in mark.rois for x, y in roi.points], float)
        centre = geometry.index_to_lps(voxels.mean(axis=0))
        if mark.kind == "nodule":
            extent = max(
                float(np.max(np.linalg.norm((pts[:, None, 1:] - pts[None, :, 1:]) * spacing[1:], axis=-1)))
                for pts in (np.array([(0, y, x) for x, y in roi.points], float) for roi in mark.rois)
            )
            big.append((centre, extent))
            readers.append(mark.reader)
        else:
            points.append(centre)
    groups = group_marks(np.array([c for c, _ in big]), readers, max_distance_mm=10.0)
    nodules = [(np.mean([big[m][0] for m in g], axis=0), float(np.mean([big[m][1] for m in g])), len(g)) for g in groups]
    return nodules, points


def froc(candidates, nodules, ignored_points, min_readers):
    scored = [n for n in nodules if n[2] >= min_readers]
    others = [n for n in nodules if n[2] < min_readers]
    hit = [False] * len(scored)
    false_positives = 0
    sensitivity_at = {}
    for candidate in candidates:  # most confident first
        centre = np.asarray(candidate.centre_lps_mm)
        matched = [i for i, (c, d, _) in enumerate(scored) if np.linalg.norm(centre - c) <= d / 2]
        if matched:
            for i in matched:
                hit[i] = True
        elif any(np.linalg.norm(centre - c) <= max(d / 2, 1.5) for c, d, _ in others) or any(
                np.linalg.norm(centre - p) <= 3.0 for p in ignored_points):
            continue
        else:
            false_positives += 1
            for rate in FP_RATES:
                if false_positives == rate + 1 and rate not in sensitivity_at:
                    sensitivity_at[rate] = sum(hit) / max(1, len(scored))
    for rate in FP_RATES:
        sensitivity_at.setdefault(rate, sum(hit) / max(1, len(scored)))
    return len(scored), sensitivity_at


def main() -> None:
    if not DATA.exists():
        sys.exit(f"{DATA} is missing: this benchmark needs ../shared/data/lidc_idri_0001_ct_nodules")
    series = read_dicom_series(sorted((DATA / "dicom").glob("*.dcm")))[0]
    reads = parse_lidc_xml(DATA / "annotations" / "069.xml")
    assert reads.series_instance_uid == series.series_instance_uid, "the reads are for another series"
    nodules, points = reference_nodules(series, reads)

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    lungs = segment_lungs(series.volume)
    lung_s = time.perf_counter() - start
    detection = detect_nodules(series.volume, lungs=lungs, min_confidence=0.0)
    total_s = time.perf_counter() - start
    load_after = os.getloadavg()[0]

    print(f"LIDC-IDRI-0001: {series.volume.array.shape} voxels, spacing {series.volume.geometry.spacing_mm} mm; "
          f"{len(nodules)} nodule(s) >= 3 mm from {reads.reader_count} readers, {len(points)} point mark(s)")
    for centre, diameter, count in nodules:
        print(f"  reference: centre {np.round(centre, 1).tolist()} mm, diameter {diameter:.1f} mm, {count} reader(s)")
    print(f"candidates: {len(detection.candidates)}; top 5 confidences "
          f"{[round(c.confidence, 3) for c in detection.candidates[:5]]}")
    for min_readers in (3, 1):
        count, sensitivity = froc(detection.candidates, nodules, points, min_readers)
        row = ", ".join(f"{rate} FP/scan: {sensitivity[rate]:.2f}" for rate in FP_RATES)
        print(f"sensitivity, nodules accepted by >= {min_readers} reader(s) (n={count}): {row}")
    print(f"time per scan: {total_s:.1f} s (lungs {lung_s:.1f} s, detection {total_s - lung_s:.1f} s) on "
          f"{os.cpu_count()} CPU(s), load average {load_before:.1f} before / {load_after:.1f} after")


if __name__ == "__main__":
    main()
