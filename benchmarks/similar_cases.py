"""Similar cases: leave-one-out retrieval precision@k on a cohort derived from real reads and masks.

The cohort (built in this run from ../shared/data, read-only):

- **LIDC-IDRI-0001** (``lidc_idri_0001_ct_nodules``: the CT's DICOM headers and the original XML of four
  radiologists' reads; Armato et al., Med. Phys. 38:915–931, 2011). Every reader's mark is placed on the
  series grid with the portal's own LIDC code (:mod:`annotation.interop.lidc`) and the marks of the
  different readers are grouped into physical lesions (``group_marks``, centroids within 15 mm). One mark
  gives one *seed case*: kind (nodule ≥ 3 mm and nodule < 3 mm → ``lung_nodule``, non-nodule →
  ``non_nodule``); for a nodule ≥ 3 mm the long axis (largest in-plane contour distance), the volume of the
  voxels its contours enclose (also its measured ``nodule`` segment) and the composition from the LIDC
  texture rating (1 → ground-glass, 2–3 → part-solid, 4–5 → solid); side from the centroid's LPS x
  against the image centre (+x is the patient's left); region = the craniocaudal third of the scanned
  range (upper / middle / lower: the XML names no lobe, so a coarse zone stands in for it); the coded
  impression = the Lung-RADS v2022 category the portal's rules suggest for it
  (:func:`diagnosis.measurements.lung_rads.lung_rads_suggest`; a nodule < 3 mm as a 2 mm solid one, a
  non-nodule as no nodule).
- **pyradiomics test lesions** (``pyradiomics_tumour_masks``: brain1, brain2, breast1, lung1 label
  masks), measured with the portal's :func:`diagnosis.measurements.shape.measure_segments`: kind
  (``lesion``; lung1 ``lung_nodule``), long axis, volume (also the ``lesion`` segment), side from the
  centroid against the volume's centre, region = the organ.

**Derived variants** (known perturbations, seeded): each seed case also appears as ``VARIANTS`` derived
cases: size × exp(ε), ε ~ N(0, σ) with σ the spread (SD of log diameter) of the four readers' diameters
of LIDC-IDRI-0001's nodule measured in this run, volume × exp(3ε); composition moved to an adjacent class
with probability 0.1; side flipped with probability 0.05; Lung-RADS re-derived from the perturbed size
and composition. Every case (seed or variant) gets an age ~ U(55, 80) y, a random sex and, for half of
them, a PHQ-9 fraction ~ U(0, 1): the data hold no demographics (the DICOM is de-identified), so these
are pure noise with respect to lesion identity, and their weight shows what noise costs.

**Relevance**: a retrieved case is relevant to the query when both come from the *same physical lesion*
(the same LIDC reader-group, or the same pyradiomics mask): another reader's read of the same nodule,
or a derived variant of either. **precision@k** = (relevant cases among the top k) / k, averaged over
all queries (each case in turn, ranked against all others; :func:`diagnosis.similarity.leave_one_out_precision`
and :func:`~diagnosis.similarity.precision_at_k`). Baselines measured in the same run: a random order
(expected precision = R / (N − 1) for a query with R relevant cases among N − 1 others) and a kinds-only
ranking (Jaccard of kinds alone). The ceiling (mean of min(R, k) / k) is printed beside them.

Run: ``python benchmarks/similar_cases.py [--seeds 5] [--variants 5]``
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotation.imaging.formats import read_volume  # noqa: E402
from annotation.imaging.volume import Geometry  # noqa: E402
from annotation.interop.lidc import group_marks, parse_lidc_xml, place_marks  # noqa: E402
from diagnosis.measurements.lung_rads import LungRadsNodule, lung_rads_suggest, mean_diameter_mm  # noqa: E402
from diagnosis.measurements.shape import measure_segments  # noqa: E402
from diagnosis.similarity import (  # noqa: E402
    DEFAULT_WEIGHTS,
    FEATURES,
    CaseFeatures,
    FindingFeatures,
    leave_one_out_precision,
    random_precision_at_k,
)

DATA = ROOT.parent / "shared" / "data"
LIDC = DATA / "lidc_idri_0001_ct_nodules"
RADIOMICS = DATA / "pyradiomics_tumour_masks"
GROUP_MM = 15.0
KS = (1, 3, 5)
COMPOSITIONS = ("ground_glass", "part_solid", "solid")


def texture_composition(texture: int | None) -> str:
    """LIDC texture rating 1–5 (1 non-solid/GGO, 3 part-solid, 5 solid) → composition code."""
    if texture is None:
        return ""
    return "ground_glass" if texture <= 1 else "part_solid" if texture <= 3 else "solid"


def lung_rads(kind: str, long_axis_mm: float | None, composition: str) -> str:
    if kind == "non_nodule":
        return lung_rads_suggest([]).category
    if kind != "lung_nodule":
        return ""
    size = 2.0 if long_axis_mm is None else long_axis_mm  # an LIDC nodule < 3 mm: a 2 mm solid one
    nodule = LungRadsNodule(mean_diameter_mm=mean_diameter_mm(size), composition=composition or "solid")
    return lung_rads_suggest([nodule]).category


def lidc_seeds() -> tuple[list[tuple[str, FindingFeatures, dict]], float]:
    """Return the LIDC seed cases (lesion key, finding, segment volumes) and the readers' log-diameter SD."""
    import pydicom

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((LIDC / "dicom").iterdir())]
    headers.sort(key=lambda h: float(h.ImagePositionPatient[2]))
    first = headers[0]
    z = [float(h.ImagePositionPatient[2]) for h in headers]
    spacing = (float(np.median(np.diff(z))), float(first.PixelSpacing[0]), float(first.PixelSpacing[1]))
    geometry = Geometry(shape=(len(headers), int(first.Rows), int(first.Columns)), spacing_mm=spacing,
                        origin_mm=tuple(float(v) for v in first.ImagePositionPatient))
    reads = parse_lidc_xml(LIDC / "annotations" / "069.xml")
    placed = place_marks(reads, geometry, sop_instance_uids=[str(h.SOPInstanceUID) for h in headers])
    matrix = geometry.direction_matrix
    centres = np.array([np.asarray(geometry.origin_mm) + matrix @ (p.centre_kji * np.asarray(spacing))
                        for p in placed])
    groups = group_marks(centres, [p.mark.reader for p in placed], max_distance_mm=GROUP_MM)
    centre_x = geometry.origin_mm[0] + (geometry.shape[2] - 1) / 2 * spacing[2]
    z_low, z_high = min(z), max(z)
    seeds = []
    big_nodule_diameters = []
    for number, members in enumerate(groups):
        for index in members:
            mark, centre = placed[index], centres[index]
            kind = "non_nodule" if mark.mark.kind == "non_nodule" else "lung_nodule"
            third = (centre[2] - z_low) / (z_high - z_low)
            region = "upper" if third > 2 / 3 else "middle" if third > 1 / 3 else "lower"
            side = "left" if centre[0] > centre_x else "right"
            long_axis = volume = None
            composition = ""
            segments = {}
            if mark.mark.kind == "nodule" and mark.mask_kji is not None:
                long_axis = float(mark.diameter_mm)
                volume = len(mark.mask_kji) * geometry.voxel_volume_mm3 / 1000.0
                composition = texture_composition(mark.mark.characteristics.get("texture"))
                segments = {"nodule": volume}
                big_nodule_diameters.append(long_axis)
            finding = FindingFeatures(kind=kind, long_axis_mm=long_axis, volume_ml=volume, composition=composition,
                                      side=side, region=region)
            seeds.append((f"lidc-{number}", finding, segments))
    spread = statistics.stdev(math.log(d) for d in big_nodule_diameters) if len(big_nodule_diameters) > 1 else 0.1
    return seeds, spread


def radiomics_seeds() -> list[tuple[str, FindingFeatures, dict]]:
    seeds = []
    for name, organ in (("brain1", "brain"), ("brain2", "brain"), ("breast1", "breast"), ("lung1", "lung")):
        path = RADIOMICS / f"{name}_label.nrrd"
        if not path.exists():
            continue
        volume = read_volume(path)
        labels = (volume.array > 0).astype(np.uint8)
        measured = measure_segments(labels, volume.geometry, labels=[1])[0]
        centre = volume.geometry.origin_mm[0] + volume.geometry.direction_matrix @ (
            (np.asarray(volume.geometry.shape) - 1) / 2 * np.asarray(volume.geometry.spacing_mm))
        side = "left" if measured.centroid_lps_mm[0] > centre[0] else "right"
        kind = "lung_nodule" if organ == "lung" else "lesion"
        finding = FindingFeatures(kind=kind, long_axis_mm=measured.axial_long_mm, volume_ml=measured.volume_ml,
                                  side=side, region=organ)
        seeds.append((f"radiomics-{name}", finding, {"lesion": measured.volume_ml}))
    return seeds


def perturbed(finding: FindingFeatures, segments: dict, rng: random.Random, sigma: float):
    epsilon = rng.gauss(0.0, sigma)
    long_axis = None if finding.long_axis_mm is None else finding.long_axis_mm * math.exp(epsilon)
    volume = None if finding.volume_ml is None else finding.volume_ml * math.exp(3 * epsilon)
    composition = finding.composition
    if composition and rng.random() < 0.1:
        position = COMPOSITIONS.index(composition) + rng.choice((-1, 1))
        composition = COMPOSITIONS[min(max(position, 0), 2)]
    side = finding.side
    if side and rng.random() < 0.05:
        side = "left" if side == "right" else "right"
    return (replace(finding, long_axis_mm=long_axis, volume_ml=volume, composition=composition, side=side),
            {name: v * math.exp(3 * epsilon) for name, v in segments.items()})


def build_cohort(seeds, sigma: float, variants: int, rng: random.Random) -> tuple[list[CaseFeatures], dict]:
    cases, lesion_of = [], {}
    reads_per_lesion = {}
    for key, _finding, _segments in seeds:
        reads_per_lesion[key] = reads_per_lesion.get(key, 0) + 1
    for read_number, (key, finding, segments) in enumerate(seeds):
        # A lesion read once gets one more variant, so that every case has at least `variants` relevant others.
        extra = 1 if reads_per_lesion[key] == 1 else 0
        for variant in range(variants + 1 + extra):
            f, s = (finding, segments) if variant == 0 else perturbed(finding, segments, rng, sigma)
            case_id = f"{key}/read{read_number}/v{variant}"
            scores = {"phq-9": rng.random()} if rng.random() < 0.5 else {}
            cases.append(CaseFeatures(case_id=case_id, findings=(f,), segment_volumes_ml=s,
                                      age_years=rng.uniform(55, 80), sex=rng.choice("MF"),
                                      impression_code=lung_rads(f.kind, f.long_axis_mm, f.composition),
                                      questionnaire_scores=scores))
            lesion_of[case_id] = key
    # Ties keep the candidates' order (rank_similar): a shuffled cohort breaks them at random.
    rng.shuffle(cases)
    return cases, lesion_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="random seeds (cohorts) to average over")
    parser.add_argument("--variants", type=int, default=5, help="derived variants per read")
    args = parser.parse_args()
    if not (LIDC / "annotations" / "069.xml").exists():
        sys.exit(f"LIDC-IDRI-0001 reads not found under {LIDC}")
    lidc, sigma = lidc_seeds()
    radiomics = radiomics_seeds()
    seeds = lidc + radiomics
    lesions = sorted({key for key, _f, _s in seeds})
    print(f"seeds: {len(lidc)} LIDC-IDRI-0001 reader marks in {len({k for k, _f, _s in lidc})} lesions, "
          f"{len(radiomics)} pyradiomics lesion masks; {len(lesions)} physical lesions")
    print(f"size perturbation σ (SD of log diameter of the 4 readers' LIDC-IDRI-0001 nodule) = {sigma:.3f}")
    weightings = {
        "kinds only (baseline)": {name: (1.0 if name == "kinds" else 0.0) for name in FEATURES},
        "uniform": dict.fromkeys(FEATURES, 1.0),
        "default": dict(DEFAULT_WEIGHTS),
        "default, demographics/questionnaire 0": dict(DEFAULT_WEIGHTS, age=0.0, sex=0.0, questionnaire=0.0),
    }
    results = {name: {k: [] for k in KS} for name in weightings}
    sized = {k: [] for k in KS}  # default weights, queries whose finding has a size (nodules ≥ 3 mm, masks)
    unsized = {k: [] for k in KS}  # default weights, point marks (nodules < 3 mm, non-nodules)
    randoms, ceilings = [], {k: [] for k in KS}
    size = 0
    for seed in range(args.seeds):
        rng = random.Random(20261207 + seed)
        cases, lesion_of = build_cohort(seeds, sigma, args.variants, rng)
        size = len(cases)

        def same_lesion(a, b, lesion_of=lesion_of):
            return lesion_of[a.case_id] == lesion_of[b.case_id]

        randoms.append(random_precision_at_k(cases, same_lesion))
        for k in KS:
            ceilings[k].append(statistics.mean(
                min(sum(1 for o in cases if o is not q and same_lesion(q, o)), k) / k for q in cases))
        for name, weights in weightings.items():
            for k, value in leave_one_out_precision(cases, same_lesion, ks=KS, weights=weights).items():
                results[name][k].append(value)
        for target, wanted in ((sized, True), (unsized, False)):
            def chosen(case, wanted=wanted):
                return (case.findings[0].long_axis_mm is not None) == wanted

            split = leave_one_out_precision(cases, same_lesion, ks=KS, weights=DEFAULT_WEIGHTS, queries=chosen)
            for k, value in split.items():
                target[k].append(value)
    print(f"cohort: {size} cases per seed ({args.variants} derived variants per read), {args.seeds} seeds; "
          "relevant = same physical lesion")
    print(f"random order (expected, any k): {statistics.mean(randoms):.3f}")
    print("ceiling: " + ", ".join(f"P@{k} {statistics.mean(ceilings[k]):.3f}" for k in KS))
    baseline = {k: statistics.mean(results["kinds only (baseline)"][k]) for k in KS}
    chance = statistics.mean(randoms)
    print(f"{'weights':40s} " + " ".join(f"{'P@' + str(k) + ' (sd)':>16s}" for k in KS) + "   ×random(P@5) ×kinds(P@5)")
    for name in weightings:
        means = {k: statistics.mean(results[name][k]) for k in KS}
        sds = {k: statistics.stdev(results[name][k]) if len(results[name][k]) > 1 else 0.0 for k in KS}
        print(f"{name:40s} " + " ".join(f"{means[k]:>9.3f} ({sds[k]:.3f})" for k in KS)
              + f"   {means[5] / chance:>12.2f} {means[5] / baseline[5]:>11.2f}")
    for label, split in (("default, queries with a size", sized), ("default, point marks (no size)", unsized)):
        sds = {k: statistics.stdev(split[k]) if len(split[k]) > 1 else 0.0 for k in KS}
        print(f"{label:40s} " + " ".join(f"{statistics.mean(split[k]):>9.3f} ({sds[k]:.3f})" for k in KS))


if __name__ == "__main__":
    main()
