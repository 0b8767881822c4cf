"""Findings: created by a detector run, imported from readers' reads or placed by hand, and the
doctor's decisions on them (accept, reject, edit). Every write is audit-logged."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from annotation.imaging.volume import Geometry, Volume
from annotation.models import Segmentation, Series
from annotation.storage import series_geometry
from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..models import Finding

# Fields a doctor may change with finding_edit.
EDITABLE_FIELDS = ("kind", "side", "region", "long_axis_mm", "short_axis_mm", "volume_ml", "composition",
                   "solid_component_mm", "note")


def _audit(user: User | None, finding: Finding, action: str, detail: dict) -> None:
    audit_record(actor=user, action=action, target_type="finding", target_id=finding.pk,
                 hospital=finding.study.hospital, detail=detail)


def finding_position(
    *, geometry: Geometry, centroid_lps_mm: list[float] | None = None, centroid_voxel: list[float] | None = None
) -> tuple[list[float], list[int]]:
    """Return ([x, y, z] LPS mm, [k, j, i] nearest voxel) from either one, checked against the grid.

    Raises
    ------
    portal.api_errors.ServiceError
        ``position_missing`` when neither or both are given, ``position_invalid`` for non-finite
        values, ``outside_grid`` when the point lies outside the series' volume.
    """
    if (centroid_lps_mm is None) == (centroid_voxel is None):
        raise ServiceError(_("Give the position either in mm (centroid_lps_mm) or as a voxel index "
                             "(centroid_voxel)."),
                           code="position_missing")
    given = centroid_lps_mm if centroid_lps_mm is not None else centroid_voxel
    try:
        point = np.asarray([float(v) for v in given], dtype=float)
    except (TypeError, ValueError):
        raise ServiceError(_("A position is three numbers."), code="position_invalid") from None
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise ServiceError(_("A position is three finite numbers."), code="position_invalid")
    index = geometry.lps_to_index(point) if centroid_lps_mm is not None else point
    # Half-way points round up (np.rint would round half to even).
    voxel = np.floor(index + 0.5).astype(int)
    if np.any(voxel < 0) or np.any(voxel >= np.asarray(geometry.shape)):
        raise ServiceError(
            _("The point lies outside the series' volume (voxel %(tolist)s, grid %(shape)s)."),
            params={"tolist": voxel.tolist(), "shape": list(geometry.shape)},
            code="outside_grid",
        )
    lps = point if centroid_lps_mm is not None else geometry.index_to_lps(index)
    return [round(float(v), 3) for v in lps], [int(v) for v in voxel]


@transaction.atomic
def finding_create(
    *,
    user: User | None,
    series: Series,
    source: str,
    kind: str = Finding.Kind.LUNG_NODULE,
    centroid_lps_mm: list[float] | None = None,
    centroid_voxel: list[float] | None = None,
    geometry: Geometry | None = None,
    **fields,
) -> Finding:
    """Store one finding on ``series`` at a point given in LPS mm or as a voxel index.

    ``fields`` are further :class:`~diagnosis.models.Finding` fields (sizes, HU, composition,
    confidence, source name and version, segmentation and segment label, characteristics, details).

    Raises
    ------
    portal.api_errors.ServiceError
        A missing, malformed or outside-the-grid position (see :func:`finding_position`); a
        segmentation of another series.
    django.core.exceptions.ValidationError
        A field out of range (confidence outside [0, 1], a negative size, an unknown choice).
    """
    geometry = geometry or series_geometry(series)
    lps, voxel = finding_position(geometry=geometry, centroid_lps_mm=centroid_lps_mm, centroid_voxel=centroid_voxel)
    segmentation: Segmentation | None = fields.get("segmentation")
    if segmentation is not None and segmentation.series_id != series.pk:
        raise ServiceError(_("The segmentation belongs to another series."), code="segmentation_mismatch")
    finding = Finding(study_id=series.study_id, series=series, kind=kind, source=source, centroid_lps_mm=lps,
                      centroid_voxel=voxel, created_by=user if user is not None and user.pk else None, **fields)
    finding.full_clean()
    finding.save()
    _audit(user, finding, AuditLog.Action.CREATE,
           {"series": series.pk, "source": source, "kind": kind})
    return finding


def _decide(*, user: User, finding: Finding, status: str, detail: dict, **changes) -> Finding:
    with transaction.atomic():
        finding = Finding.objects.select_for_update().select_related("study", "study__hospital").get(pk=finding.pk)
        previous = finding.status
        for key, value in changes.items():
            setattr(finding, key, value)
        finding.status = status
        finding.decided_by = user
        finding.decided_at = timezone.now()
        finding.full_clean()
        finding.save()
        _audit(user, finding, AuditLog.Action.UPDATE, {"status": [previous, status], **detail})
    return finding


def finding_accept(*, user: User, finding: Finding) -> Finding:
    """Accept a finding (it goes into the report's table); the doctor may change the decision later."""
    return _decide(user=user, finding=finding, status=Finding.Status.ACCEPTED, detail={})


def finding_reject(*, user: User, finding: Finding, note: str = "") -> Finding:
    """Reject a finding (a false positive, or not worth reporting), optionally saying why."""
    changes = {"note": note} if note else {}
    return _decide(user=user, finding=finding, status=Finding.Status.REJECTED, detail={}, **changes)


def finding_edit(*, user: User, finding: Finding, **changes) -> Finding:
    """Correct a finding's kind, side, region, sizes, composition (and a part-solid nodule's solid
    component) or note; its status becomes edited.

    Raises
    ------
    portal.api_errors.ServiceError
        ``nothing_to_change`` when no field is given, ``not_editable`` for a field outside
        :data:`EDITABLE_FIELDS`.
    django.core.exceptions.ValidationError
        A value out of range or an unknown choice.
    """
    if not changes:
        raise ServiceError(_("Nothing to change."), code="nothing_to_change")
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise ServiceError(_("These fields cannot be edited: %(unknown)s."),
                           params={"unknown": ', '.join(unknown)}, code="not_editable")
    return _decide(user=user, finding=finding, status=Finding.Status.EDITED, detail={"fields": sorted(changes)},
                   **changes)


def _round(value, digits: int):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else round(value, digits)


def finding_payload(finding: Finding) -> dict:
    """Return the JSON form of a finding (the API's and the ``detect`` command's)."""
    return {
        "id": finding.pk,
        "study_id": finding.study_id,
        "series_id": finding.series_id,
        "kind": finding.kind,
        "centroid_lps_mm": finding.centroid_lps_mm,
        "centroid_voxel": finding.centroid_voxel,
        "side": finding.side,
        "region": finding.region,
        "long_axis_mm": _round(finding.long_axis_mm, 2),
        "short_axis_mm": _round(finding.short_axis_mm, 2),
        "volume_ml": _round(finding.volume_ml, 4),
        "mean_hu": _round(finding.mean_hu, 1),
        "max_hu": _round(finding.max_hu, 1),
        "composition": finding.composition,
        "solid_component_mm": _round(finding.solid_component_mm, 2),
        "confidence": _round(finding.confidence, 4),
        "source": finding.source,
        "source_name": finding.source_name,
        "source_version": finding.source_version,
        "status": finding.status,
        "decided_by": finding.decided_by_id,
        "decided_at": finding.decided_at.isoformat() if finding.decided_at else None,
        "note": finding.note,
        "segmentation_id": finding.segmentation_id,
        "segment_label": finding.segment_label,
        "characteristics": finding.characteristics,
        "details": finding.details,
    }


def findings_from_detection(
    *, segmentation: Segmentation, label_map: np.ndarray, volume: Volume, user: User | None = None
) -> list[Finding]:
    """Store one suggested finding per segment of a detector's label map (idempotent per segmentation).

    The detector's label table gives each segment's ``confidence``, ``side`` and ``features``; sizes
    come from :func:`diagnosis.measurements.measure_segments` (the same code as every measurement),
    composition from :func:`diagnosis.measurements.nodules.nodule_composition`.
    """
    from ..measurements.nodules import nodule_composition
    from ..measurements.shape import measure_segments

    entries = {int(e["index"]): e for e in segmentation.label_table}
    if not entries:
        return []
    model = segmentation.model
    measured = measure_segments(label_map, volume.geometry, image=volume.array, labels=sorted(entries))
    boxes = ndimage.find_objects(label_map.astype(np.int32, copy=False), max_label=max(entries))
    findings = []
    with transaction.atomic():
        Finding.objects.filter(segmentation=segmentation).delete()
        for m in measured:
            if m.voxel_count == 0:
                continue
            entry = entries[m.label]
            # A box detector (RetinaNet) gives its box's centre and axial extent; volume and HU come
            # from the segment either way.
            box_ = entry.get("box") or {}
            centroid = box_.get("centroid_lps_mm") or list(m.centroid_lps_mm)
            long_mm = box_.get("long_axis_mm", m.axial_long_mm)
            short_mm = box_.get("short_axis_mm", m.axial_short_mm)
            # Per-nodule HU from the segment's own voxels, inside its bounding box only.
            box = boxes[m.label - 1]
            values = volume.array[box][label_map[box] == m.label]
            findings.append(finding_create(
                user=user, series=segmentation.series, source=Finding.Source.DETECTOR,
                kind=entry.get("kind", Finding.Kind.LUNG_NODULE), centroid_lps_mm=list(centroid),
                geometry=volume.geometry, segmentation=segmentation, segment_label=m.label,
                side=entry.get("side", ""), long_axis_mm=long_mm, short_axis_mm=short_mm,
                volume_ml=m.volume_ml, mean_hu=float(values.mean()), max_hu=float(values.max()),
                composition=nodule_composition(values), confidence=float(entry.get("confidence", 0.0)),
                source_name=model.name if model else "", source_version=str(model.version) if model else "",
                details={"features": entry.get("features", {}), **({"box": box_} if box_ else {})},
            ))
    return findings
