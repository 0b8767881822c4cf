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
from annotation.interop.lidc import group_nodules, parse_lidc_xml, place_marks  # noqa: E402
from annotation.ml.lung import segment_lungs  # noqa: E402
from annotation.ml.nodules import detect_nodules  # noqa: E402
from diagnosis.measurements.matching import Reference, froc_sensitivities, luna16_match  # noqa: E402

DATA = Path(os.environ.get("YIXIN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "lidc_idri_0001_ct_nodules"
FP_RATES = (1, 2, 4, 8)


def reference_nodules(series, reads):
    """Return [(centre LPS mm, diameter mm, reader count)] for nodules >= 3 mm, and the points of the rest.

    The same placement and grouping as the portal's import of the reads
    (:func:`annotation.interop.lidc.place_marks`, :func:`~annotation.interop.lidc.group_nodules`).
    """
    geometry = series.volume.geometry
    placed = place_marks(reads, geometry, sop_instance_uids=series.sop_instance_uids)
    nodules = [(n.centre_lps_mm, n.diameter_mm, n.agreement) for n in group_nodules(placed, geometry)]
    points = [geometry.index_to_lps(p.centre_kji) for p in placed if p.mark.kind != "nodule"]
    return nodules, points


def froc(candidates, nodules, ignored_points, min_readers):
    """Score the candidates (most confident first) with the portal's LUNA16 matching."""
    references = [Reference(centre, diameter, scored=count >= min_readers) for centre, diameter, count in nodules]
    match = luna16_match(np.array([c.centre_lps_mm for c in candidates]).reshape(-1, 3), references,
                         np.array(ignored_points).reshape(-1, 3))
    return sum(r.scored for r in references), froc_sensitivities(match, rates=FP_RATES)


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
