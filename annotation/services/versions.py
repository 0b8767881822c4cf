"""Segmentations and their version trees: storing a label map, diffs from the browser, refinements,
roll back and the comparison of two versions.

Every save is a new row with a new stored object (copy-on-write): a parent version is never changed.
"""

from __future__ import annotations

import shutil
import uuid

import numpy as np
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.selectors import hospital_review_threshold
from portal.services import audit_record
from portal.validators import is_color_hex

from ..imaging.volume import Geometry
from ..models import Segmentation, SegmentationModel, Series
from ..storage import StoredKeys, segmentation_labelmap_load, series_geometry, work_dir


def segmentation_create(
    *,
    series: Series,
    label_map: np.ndarray,
    label_table: list[dict],
    name: str,
    source: str,
    user: User | None = None,
    model: SegmentationModel | None = None,
    parent: Segmentation | None = None,
    comment: str = "",
    tool: str = "",
    parameters: dict | None = None,
    uncertainty_map: np.ndarray | None = None,
) -> Segmentation:
    """Store a label map (shape (k, j, i), on the series grid) as a new segmentation.

    Without ``parent`` the row starts a new version tree; with it, the row is a new version in the
    parent's tree (numbered one above the tree's highest) and becomes the tree's current version.
    The parent's stored label map is never touched (copy-on-write).

    ``uncertainty_map`` (a network's normalised softmax entropy, float in [0, 1], the label map's
    shape) is stored beside it as a uint8 NIfTI (``round(255 H)``), each label's mean confidence
    goes to ``label_confidence``, and ``needs_review`` is set when one is below the study hospital's
    review threshold (``portal.selectors.hospital_review_threshold``: the hospital's own value, else
    ``settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD``).

    Raises
    ------
    ValueError
        When the label map (or the uncertainty map) does not have the series' shape.
    """
    from ..imaging.formats import write_labelmap_nifti

    geometry = series_geometry(series)
    if tuple(label_map.shape) != geometry.shape:
        raise ValueError(f"label map shape {label_map.shape} does not match the series grid {geometry.shape}")
    if uncertainty_map is not None and tuple(uncertainty_map.shape) != geometry.shape:
        raise ValueError(f"uncertainty map shape {uncertainty_map.shape} does not match the series grid {geometry.shape}")
    dtype = np.uint8 if int(label_map.max(initial=0)) < 256 else np.uint16
    workdir = work_dir()
    stored = StoredKeys()
    try:
        path = workdir / "labelmap.nii.gz"
        write_labelmap_nifti(label_map.astype(dtype, copy=False), geometry, path)
        threshold = hospital_review_threshold(series.study.hospital_id)
        confidence, needs_review, uncertainty_path = _uncertainty_prepare(label_map, uncertainty_map, geometry, workdir,
                                                                          threshold=threshold)
        with transaction.atomic():
            key = f"studies/{series.study_id}/segmentations/{uuid.uuid4().hex}.nii.gz"
            stored_name, sha, _unused = stored.save(key, path)
            uncertainty_name = ""
            if uncertainty_path is not None:
                uncertainty_name = stored.save(key.replace(".nii.gz", "-uncertainty.nii.gz"), uncertainty_path)[0]
            root_id = None
            version = 1
            if parent is not None:
                root_id = parent.root_id or parent.pk
                # Lock the tree's rows so that two saves cannot both take the same number.
                tree = list(Segmentation.objects.select_for_update().filter(root_id=root_id).values_list("version", flat=True))
                version = max(tree + [parent.version]) + 1
                Segmentation.objects.filter(root_id=root_id, is_current=True).update(is_current=False)
            segmentation = Segmentation(
                series=series, name=name[:200], source=source, model=model, parent=parent,
                version=version, label_table=label_table, root_id=root_id, is_current=True,
                comment=comment[:2000], tool=tool[:64], parameters=parameters or {},
                labelmap_file=stored_name, labelmap_sha256=sha, created_by=user,
                uncertainty_file=uncertainty_name, label_confidence=confidence, needs_review=needs_review,
            )
            segmentation.full_clean()
            segmentation.save()
            if root_id is None:
                segmentation.root_id = segmentation.pk
                segmentation.save(update_fields=["root"])
            audit_record(
                actor=user, action=AuditLog.Action.CREATE, target_type="segmentation", target_id=segmentation.pk,
                hospital=series.study.hospital, channel="worker" if user is None else None,
            )
        return segmentation
    except BaseException:
        stored.delete_all()
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _uncertainty_prepare(label_map: np.ndarray, uncertainty_map: np.ndarray | None, geometry: Geometry, workdir,
                         *, threshold: float):
    """Return ({"label": confidence}, needs review (a confidence below ``threshold``), path of the
    written uint8 map or None)."""
    from ..imaging.formats import write_labelmap_nifti
    from ..ml.uncertainty import label_confidence, quantise_unit_map

    if uncertainty_map is None:
        return {}, False, None
    confidence = {str(k): round(v, 4) for k, v in label_confidence(label_map, uncertainty_map).items()}
    path = workdir / "uncertainty.nii.gz"
    write_labelmap_nifti(quantise_unit_map(uncertainty_map), geometry, path)
    return confidence, any(v < threshold for v in confidence.values()), path


def label_table_validate(label_table) -> list[dict]:
    """Check a label table: a non-empty list of ``{"index": 1..65535, "name": str, "color": "#rrggbb"}``
    with distinct indices (extra keys such as ``description``, ``snomed_code`` are kept).

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_label_table`` describing the first problem.
    """
    if not isinstance(label_table, list) or not label_table:
        raise ServiceError(_("The label table must be a non-empty list."), code="bad_label_table")
    seen: set[int] = set()
    for entry in label_table:
        index = entry.get("index") if isinstance(entry, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 65535 or index in seen:
            raise ServiceError(_("Each label needs a distinct integer index from 1 to 65535."), code="bad_label_table")
        if not str(entry.get("name", "")).strip():
            raise ServiceError(_("Label %(index)s has no name."), params={"index": index}, code="bad_label_table")
        if not is_color_hex(entry.get("color", "#ff0000")):
            raise ServiceError(_("Label %(index)s needs a colour written #rrggbb."),
                               params={"index": index}, code="bad_label_table")
        seen.add(index)
    return label_table


def _locked_labels(segmentation: Segmentation, requested) -> set[int]:
    if requested is None:
        requested = []
    if not isinstance(requested, list) or not all(isinstance(v, int) for v in requested):
        raise ServiceError(_("locked_labels must be a list of label indices."), code="invalid_input")
    return set(requested) | {int(e["index"]) for e in segmentation.label_table if e.get("locked")}


def segmentation_create_blank(*, user: User, series: Series, name: str, label_table: list[dict]) -> Segmentation:
    """Start a new, empty version tree on ``series`` (all voxels background) to paint from scratch.

    Raises ServiceError for a bad label table.
    """
    label_table_validate(label_table)
    empty = np.zeros(tuple(series.shape), dtype=np.uint8)
    return segmentation_create(series=series, label_map=empty, label_table=label_table, name=name or "manual",
                               source=Segmentation.Source.MANUAL, user=user, tool="blank")


def segmentation_save_diff(
    *,
    user: User,
    parent: Segmentation,
    diff: dict,
    name: str = "",
    comment: str = "",
    tool: str = "",
    locked_labels: list[int] | None = None,
    label_table: list[dict] | None = None,
) -> Segmentation:
    """Apply a browser diff (``annotation.editing.diff`` wire format) to ``parent``'s label map on its
    grid and store the result as a new version; ``parent`` is never changed.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_diff`` (undecodable or malformed runs), ``wrong_grid`` (made on another grid),
        ``unknown_label`` (a label outside the label table), ``locked_label`` (a locked label would
        change), ``empty_diff`` (nothing changed), ``bad_label_table``.
    """
    from ..editing.diff import DiffError, diff_apply, diff_decode

    series = parent.series
    table = label_table_validate(label_table) if label_table is not None else parent.label_table
    locked = _locked_labels(parent, locked_labels)
    shape = tuple(series.shape)
    try:
        decoded = diff_decode(diff, max_voxels=int(np.prod(shape)))
        if decoded.voxel_count == 0:
            raise ServiceError(_("The diff changes no voxel; nothing to save."), code="empty_diff")
        base = segmentation_labelmap_load(parent)
        result = diff_apply(base, decoded, locked_labels=locked, allowed_labels={int(e["index"]) for e in table})
    except DiffError as exc:
        raise ServiceError.from_error(exc) from None
    return segmentation_create(
        series=series, label_map=result, label_table=table, name=name or parent.name,
        source=Segmentation.Source.MANUAL, user=user, parent=parent, comment=comment, tool=tool or "editor",
        parameters={"changed_voxels": decoded.voxel_count, "runs": len(decoded.runs)},
    )


def segmentation_refine(
    *,
    user: User,
    parent: Segmentation,
    operation: str,
    params: dict,
    mask_segmentation: Segmentation | None = None,
    comment: str = "",
) -> Segmentation:
    """Run one refinement (``annotation.editing.refine.OPERATIONS``) on ``parent`` and store the
    result as a new version that records the operation and its parameters.

    ``restrict_to_mask`` takes its mask from ``mask_segmentation`` (its non-zero voxels, or those of
    ``params["mask_labels"]``), which must lie on the same series.

    Raises
    ------
    portal.api_errors.ServiceError
        ``bad_refinement`` for an unknown operation or bad parameters, ``wrong_grid`` for a mask on
        another series.
    """
    from ..editing.refine import refine
    from ..editing.errors import EditError

    if not isinstance(params, dict):
        raise ServiceError(_("params must be an object."), code="bad_refinement")
    mask = None
    if mask_segmentation is not None:
        if mask_segmentation.series_id != parent.series_id:
            raise ServiceError(_("The mask segmentation belongs to another series."), code="wrong_grid")
        mask_map = segmentation_labelmap_load(mask_segmentation)
        wanted = params.get("mask_labels")
        mask = np.isin(mask_map, wanted) if isinstance(wanted, list) else mask_map > 0
    base = segmentation_labelmap_load(parent)
    try:
        result = refine(base, tuple(parent.series.spacing_mm), operation, params, mask=mask)
    except EditError as exc:
        raise ServiceError.from_error(exc, code="bad_refinement" if exc.code == "bad_edit" else exc.code) from None
    recorded = {**params, **({"mask_segmentation": mask_segmentation.pk} if mask_segmentation else {})}
    return segmentation_create(
        series=parent.series, label_map=result, label_table=parent.label_table, name=parent.name,
        source=Segmentation.Source.MANUAL, user=user, parent=parent, comment=comment,
        tool=f"refine:{operation}", parameters=recorded,
    )


@transaction.atomic
def segmentation_make_current(*, user: User, segmentation: Segmentation) -> Segmentation:
    """Roll back (or forward): make ``segmentation`` the current version of its tree. Nothing is deleted."""
    root_id = segmentation.root_id or segmentation.pk
    list(Segmentation.objects.select_for_update().filter(root_id=root_id).values_list("pk", flat=True))
    Segmentation.objects.filter(root_id=root_id, is_current=True).exclude(pk=segmentation.pk).update(is_current=False)
    Segmentation.objects.filter(pk=segmentation.pk).update(is_current=True)
    segmentation.is_current = True
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="segmentation", target_id=segmentation.pk,
                 hospital=segmentation.series.study.hospital, detail={"make_current": True})
    return segmentation


def labelmap_nifti_bytes(label_map: np.ndarray, geometry: Geometry, *, gz: bool = True) -> bytes:
    """Return a label map (shape (k, j, i), on ``geometry``) as the bytes of a NIfTI file (gzipped by default)."""
    from ..imaging.formats import write_labelmap_nifti

    workdir = work_dir()
    try:
        path = workdir / ("labelmap.nii.gz" if gz else "labelmap.nii")
        write_labelmap_nifti(label_map, geometry, path)
        return path.read_bytes()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def segmentation_change_map_nifti(*, user: User, segmentation_id: int, other_id: int) -> tuple[bytes, str]:
    """Return the difference of two visible versions as a NIfTI label map on the series grid
    (``annotation.editing.compare.change_map``: 1 added, 2 removed) and a file name; audited.

    Raises Http404 for an invisible segmentation and ServiceError ``wrong_grid`` across series.
    """
    from ..editing.compare import change_map
    from ..selectors import segmentation_get

    a = segmentation_get(user=user, segmentation_id=segmentation_id)
    b = segmentation_get(user=user, segmentation_id=other_id)
    if a.series_id != b.series_id:
        raise ServiceError(_("The two segmentations lie on different series."), code="wrong_grid")
    changes = change_map(segmentation_labelmap_load(a), segmentation_labelmap_load(b))
    audit_record(actor=user, action=AuditLog.Action.VIEW, target_type="segmentation", target_id=a.pk,
                 hospital=a.series.study.hospital, detail={"compare_with": b.pk})
    return labelmap_nifti_bytes(changes, series_geometry(a.series)), f"changes-{a.pk}-{b.pk}.nii.gz"
