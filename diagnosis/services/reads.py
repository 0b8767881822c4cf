"""Radiologists' reads: the LIDC-IDRI XML import (one label map per reader, findings with the nine LIDC
characteristics, readers' marks grouped into nodules with their agreement and a consensus mask) and
the LUNA16-style ``annotations.csv`` import (point findings with a diameter).

A file is checked whole before anything is written; a refused file stores nothing (no row, no
object), and a failure while writing removes the label maps already stored.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from scipy import ndimage

from annotation import selectors as annotation_selectors
from annotation import services as annotation_services
from annotation.imaging.volume import Volume
from annotation.interop.lidc import (
    CHARACTERISTICS,
    LidcError,
    consensus_mask_voxels,
    group_nodules,
    parse_lidc_xml,
    place_marks,
)
from annotation.models import Segmentation, Series
from annotation.storage import series_geometry, series_volume_load
from portal.api_errors import ServiceError, error_message_lazy
from portal.models import AuditLog, User
from portal.services import audit_record
from portal.storage import sha256_of

from ..measurements.nodules import nodule_composition
from ..measurements.shape import measure_segments
from ..models import Finding
from .findings import finding_create, finding_payload, finding_position

logger = logging.getLogger(__name__)

LIDC_TOOL = "lidc-xml"
LUNA16_SOURCE = "luna16-annotations.csv"
LUNA16_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
_READER_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")
_CONSENSUS_COLOUR = "#ffe119"


@dataclass
class ReadsImport:
    """What an LIDC import stored: the readers' and the consensus segmentations, every finding, and
    per grouped nodule its consensus finding with the readers' agreement."""

    segmentations: list[Segmentation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    nodules: list[dict] = field(default_factory=list)


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return sha256_of(fh)


def _measure(label_map: np.ndarray, volume: Volume, labels: list[int]) -> dict[int, dict]:
    """Sizes (same code as every measurement), HU and composition of each label."""
    measured = measure_segments(label_map, volume.geometry, image=volume.array, labels=labels)
    boxes = ndimage.find_objects(label_map.astype(np.int32, copy=False), max_label=max(labels))
    out = {}
    for m in measured:
        box = boxes[m.label - 1]
        values = volume.array[box][label_map[box] == m.label]
        out[m.label] = {
            "long_axis_mm": m.axial_long_mm, "short_axis_mm": m.axial_short_mm, "volume_ml": m.volume_ml,
            "mean_hu": float(values.mean()), "max_hu": float(values.max()), "composition": nodule_composition(values),
            "centroid_lps_mm": [float(v) for v in m.centroid_lps_mm],
        }
    return out


def _label_map(shape, masks: list[np.ndarray]) -> np.ndarray:
    label_map = np.zeros(tuple(shape), dtype=np.uint8 if len(masks) < 256 else np.uint16)
    for label, voxels in enumerate(masks, start=1):
        label_map[voxels[:, 0], voxels[:, 1], voxels[:, 2]] = label
    return label_map


def _median_characteristics(marks) -> dict:
    out = {}
    for name in CHARACTERISTICS:
        values = [m.characteristics[name] for m in marks if name in m.characteristics]
        if values:
            out[name] = int(round(float(np.median(values))))
    return out


def _delete_stored(segmentations: list[Segmentation]) -> None:
    for segmentation in segmentations:
        try:
            default_storage.delete(segmentation.labelmap_file.name)
        except Exception:  # noqa: BLE001 - best effort; the database rolled back already
            logger.warning("could not delete a stored label map after a failed reads import")


def lidc_reads_import(*, user: User | None, series: Series, xml_path: Path | str) -> ReadsImport:
    """Store an LIDC-IDRI XML read of ``series``.

    Each reader's nodules ≥ 3 mm become one label map per reader on the series grid (a segmentation of
    source import, one label per nodule; contours placed by SOPInstanceUID, else by z position) and
    one reader finding each, carrying the nine LIDC characteristics. Nodules < 3 mm and non-nodules
    become point findings. Marks of the same nodule by different readers are grouped by centroid
    distance (:func:`annotation.interop.lidc.group_nodules`) into one consensus finding with the
    readers' agreement; the consensus segmentation holds, per nodule, the voxels marked by at least
    half of the readers who marked it.

    Returns
    -------
    ReadsImport

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_lidc_xml`` for a malformed file; ``series_mismatch`` when it reads another series;
        ``lidc_mismatch`` when a contour's image is not a slice of the series or a point lies outside
        the grid; ``already_imported`` (409) when this file was imported on this series before. The
        message names the problem; nothing is stored.
    """
    try:
        reads = parse_lidc_xml(xml_path)
    except LidcError as exc:
        raise ServiceError(_("The LIDC XML was refused: %(exc)s."), params={"exc": error_message_lazy(exc)},
                           code="bad_lidc_xml") from None
    if reads.series_instance_uid != series.series_instance_uid:
        raise ServiceError(
            _("The LIDC XML reads series %(xml_series_uid)s, not this series (%(series_uid)s)."),
            params={"xml_series_uid": reads.series_instance_uid, "series_uid": series.series_instance_uid},
            code="series_mismatch",
        )
    sha = _file_sha256(Path(xml_path))
    if Segmentation.objects.filter(series=series, tool=LIDC_TOOL, parameters__xml_sha256=sha).exists():
        raise ServiceError(_("These reads were imported on this series already."), code="already_imported",
                           status_code=409)
    volume = series_volume_load(series)
    geometry = volume.geometry
    try:
        placed = place_marks(reads, geometry, sop_instance_uids=annotation_selectors.series_slice_uids(series=series))
    except LidcError as exc:
        raise ServiceError(_("The LIDC XML does not fit this series: %(exc)s."),
                           params={"exc": error_message_lazy(exc)}, code="lidc_mismatch") from None
    nodules = group_nodules(placed, geometry)
    group_of = {member: g for g, nodule in enumerate(nodules) for member in nodule.members}
    readers = sorted({p.mark.reader for p in placed})
    reader_ids = {p.mark.reader: p.mark.reader_id for p in placed}
    provenance = {"xml_sha256": sha, "reader_count": reads.reader_count}

    result = ReadsImport()
    try:
        with transaction.atomic():
            # Consensus first, so that each reader's finding can point at its nodule's consensus finding.
            consensus_ids: list[int] = []
            if nodules:
                masks = [consensus_mask_voxels([placed[m] for m in n.members]) for n in nodules]
                label_map = _label_map(geometry.shape, masks)
                table = [{"index": g + 1, "name": f"Nodule {g + 1} ({n.agreement}/{reads.reader_count})",
                          "color": _CONSENSUS_COLOUR, "agreement": n.agreement}
                         for g, n in enumerate(nodules)]
                segmentation = annotation_services.segmentation_create(
                    series=series, label_map=label_map, label_table=table, user=user, tool=LIDC_TOOL,
                    name="LIDC consensus (≥ 50 % of readers)", source=Segmentation.Source.IMPORT,
                    parameters={**provenance, "consensus_share": 0.5},
                )
                result.segmentations.append(segmentation)
                sizes = _measure(label_map, volume, [g + 1 for g in range(len(nodules))])
                for g, nodule in enumerate(nodules):
                    members = [placed[m] for m in nodule.members]
                    finding = finding_create(
                        user=user, series=series, source=Finding.Source.CONSENSUS, source_name=LIDC_TOOL,
                        kind=Finding.Kind.LUNG_NODULE, geometry=geometry,
                        centroid_lps_mm=[float(v) for v in nodule.centre_lps_mm],
                        segmentation=segmentation, segment_label=g + 1,
                        confidence=nodule.agreement / reads.reader_count,
                        characteristics=_median_characteristics([p.mark for p in members]),
                        details={"lidc": {**provenance, "agreement": nodule.agreement,
                                          "readers": sorted(p.mark.reader + 1 for p in members),
                                          "diameter_mm": round(nodule.diameter_mm, 2)},
                                 "reference_diameter_mm": round(nodule.diameter_mm, 2)},
                        **{k: v for k, v in sizes[g + 1].items() if k != "centroid_lps_mm"},
                    )
                    consensus_ids.append(finding.pk)
                    result.findings.append(finding)
                    result.nodules.append({"finding_id": finding.pk, "agreement": nodule.agreement,
                                           "readers": sorted(p.mark.reader + 1 for p in members),
                                           "diameter_mm": round(nodule.diameter_mm, 2)})
            for reader in readers:
                own = [n for n, p in enumerate(placed) if p.mark.reader == reader and p.mark.kind == "nodule"]
                segmentation = None
                sizes = {}
                if own:
                    label_map = _label_map(geometry.shape, [placed[n].mask_kji for n in own])
                    table = [{"index": label, "name": placed[n].mark.mark_id or f"Nodule {label}",
                              "color": _READER_COLOURS[reader % len(_READER_COLOURS)]}
                             for label, n in enumerate(own, start=1)]
                    segmentation = annotation_services.segmentation_create(
                        series=series, label_map=label_map, label_table=table, user=user, tool=LIDC_TOOL,
                        name=f"LIDC reader {reader + 1}", source=Segmentation.Source.IMPORT,
                        parameters={**provenance, "reader": reader + 1, "reader_id": reader_ids[reader]},
                    )
                    result.segmentations.append(segmentation)
                    sizes = _measure(label_map, volume, list(range(1, len(own) + 1)))
                for n, mark in enumerate(placed):
                    if mark.mark.reader != reader:
                        continue
                    lidc = {**provenance, "reader": reader + 1, "reader_id": reader_ids[reader],
                            "mark_id": mark.mark.mark_id, "mark": mark.mark.kind}
                    common = dict(user=user, series=series, source=Finding.Source.READER,
                                  source_name=f"LIDC reader {reader + 1}", geometry=geometry,
                                  characteristics=dict(mark.mark.characteristics))
                    if mark.mark.kind == "nodule":
                        label = own.index(n) + 1
                        measured = dict(sizes[label])
                        g = group_of[n]
                        lidc.update(consensus_finding=consensus_ids[g], agreement=nodules[g].agreement,
                                    diameter_mm=round(mark.diameter_mm, 2))
                        finding = finding_create(
                            kind=Finding.Kind.LUNG_NODULE, centroid_lps_mm=measured.pop("centroid_lps_mm"),
                            segmentation=segmentation, segment_label=label, details={"lidc": lidc},
                            **measured, **common,
                        )
                    else:
                        kind = Finding.Kind.LUNG_NODULE if mark.mark.kind == "small_nodule" else Finding.Kind.NON_NODULE
                        finding = finding_create(kind=kind, centroid_voxel=[float(v) for v in mark.centre_kji],
                                                 details={"lidc": lidc}, **common)
                    result.findings.append(finding)
            audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="lidc_reads", target_id=series.pk,
                         hospital=series.study.hospital, channel="worker" if user is None else None,
                         detail={"readers": len(readers), "nodules": len(nodules), "findings": len(result.findings),
                                 "segmentations": [s.pk for s in result.segmentations]})
    except BaseException:
        _delete_stored(result.segmentations)
        raise
    return result


def _luna16_rows(csv_path: Path, series: Series) -> list[tuple[int, list[float], float]]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in LUNA16_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ServiceError(_("The annotations CSV lacks the column(s) %(missing)s."),
                                   params={"missing": ', '.join(missing)},
                                   code="bad_luna16_csv")
            rows = []
            for line, row in enumerate(reader, start=2):
                if (row.get("seriesuid") or "").strip() != series.series_instance_uid:
                    continue
                try:
                    point = [float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])]
                    diameter = float(row["diameter_mm"])
                except (TypeError, ValueError):
                    raise ServiceError(_("Line %(line)s of the annotations CSV holds a value that is not a "
                                         "number."), params={"line": line},
                                       code="bad_luna16_csv") from None
                if not all(math.isfinite(v) for v in point) or not (math.isfinite(diameter) and diameter > 0):
                    raise ServiceError(_("Line %(line)s of the annotations CSV needs finite coordinates and a "
                                         "positive diameter."), params={"line": line}, code="bad_luna16_csv")
                rows.append((line, point, diameter))
    except UnicodeDecodeError:
        raise ServiceError(_("The annotations CSV is not UTF-8 text."), code="bad_luna16_csv") from None
    except csv.Error as exc:
        raise ServiceError(_("The annotations CSV is malformed: %(exc)s."),
                           params={"exc": exc}, code="bad_luna16_csv") from None
    return rows


def luna16_annotations_import(*, user: User | None, series: Series, csv_path: Path | str) -> list[Finding]:
    """Store the rows of a LUNA16-style ``annotations.csv`` that belong to ``series`` as point findings.

    The CSV has the columns ``seriesuid, coordX, coordY, coordZ, diameter_mm`` (LUNA16, Setio et al.
    2017): a nodule centre in world coordinates (mm; for LIDC's DICOM data the LPS patient
    coordinates) and its diameter. Each row of this series becomes a lung-nodule finding of source
    import at that point, with ``long_axis_mm`` and ``details["reference_diameter_mm"]`` set to the
    diameter; rows of other series are skipped.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_luna16_csv`` (missing column, a non-number, a non-positive diameter; the message names
        the line), ``series_mismatch`` (no row for this series), ``outside_grid`` (a centre outside
        the series' volume), ``already_imported`` (409). Nothing is stored then.
    """
    csv_path = Path(csv_path)
    rows = _luna16_rows(csv_path, series)
    if not rows:
        raise ServiceError(_("The annotations CSV has no row for this series (%(series_instance_uid)s)."),
                           params={"series_instance_uid": series.series_instance_uid},
                           code="series_mismatch")
    sha = _file_sha256(csv_path)
    if Finding.objects.filter(series=series, source=Finding.Source.IMPORT, details__luna16__csv_sha256=sha).exists():
        raise ServiceError(_("This annotations CSV was imported on this series already."), code="already_imported",
                           status_code=409)
    geometry = series_geometry(series)
    for line, point, _unused in rows:
        try:
            finding_position(geometry=geometry, centroid_lps_mm=point)
        except ServiceError as exc:
            raise ServiceError(_("Line %(line)s of the annotations CSV: %(message)s"),
                               params={"line": line, "message": error_message_lazy(exc)}, code=exc.code) from None
    findings = []
    with transaction.atomic():
        for line, point, diameter in rows:
            findings.append(finding_create(
                user=user, series=series, source=Finding.Source.IMPORT, source_name=LUNA16_SOURCE,
                kind=Finding.Kind.LUNG_NODULE, centroid_lps_mm=point, geometry=geometry, long_axis_mm=diameter,
                details={"luna16": {"csv_sha256": sha, "line": line, "diameter_mm": diameter},
                         "reference_diameter_mm": diameter},
            ))
        audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="luna16_annotations",
                     target_id=series.pk, hospital=series.study.hospital,
                     channel="worker" if user is None else None, detail={"findings": len(findings)})
    return findings


def reads_import_payload(*, series: Series, result: ReadsImport) -> dict:
    """Return the JSON form of an LIDC import (the API's and the ``import_lidc_reads`` command's)."""

    return {
        "series_id": series.pk,
        "segmentations": [{"id": s.pk, "name": s.name} for s in result.segmentations],
        "nodules": result.nodules,
        "findings": [finding_payload(f) for f in result.findings],
    }
