"""A study compared with a prior of the same patient: registration, finding matches and the doctor's
re-linking. Registration and matching are the plain-Python :mod:`diagnosis.longitudinal`; this module
loads the series, stores the outcome and audit-logs every write."""

from __future__ import annotations

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from annotation.imaging.volume import Geometry
from annotation.models import Series, Study
from annotation.storage import segmentation_labelmap_load, series_volume_load
from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..longitudinal.matching import match_by_name, match_lesions
from ..longitudinal.registration import (
    RegistrationError,
    chest_ct_mask,
    register_volumes,
    resample_volume,
    transform_points,
)
from ..models import Finding, FindingMatch, Measurement, StudyRegistration

__all__ = ["finding_match_link", "finding_match_unlink", "study_compare"]

# Pairs further apart than this (mm, after registration) are not worth an overlap computation: the
# matching rule could only pair them through overlap, and segments this far apart do not overlap.
_OVERLAP_SEARCH_MM = 60.0


def _audit(user: User | None, registration: StudyRegistration, action: str, detail: dict) -> None:
    audit_record(actor=user, action=action, target_type="study_registration", target_id=registration.pk,
                 hospital=registration.study.hospital, detail=detail)


def _main_series(study: Study, modality: str = "") -> Series | None:
    """The study's series to register: of ``modality`` when given, the one with most voxels."""
    candidates = [s for s in Series.objects.filter(study=study).order_by("series_number", "pk")
                  if not modality or s.modality.upper() == modality.upper()]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (int(np.prod(s.shape)), -s.pk))


def _check_pair(study: Study, prior: Study) -> None:
    if study.pk == prior.pk:
        raise ServiceError(_("A study cannot be compared with itself."), code="same_study")
    if study.hospital_id != prior.hospital_id:
        raise ServiceError(_("The prior study belongs to another hospital."), code="other_hospital")
    if study.patient_id != prior.patient_id:
        raise ServiceError(_("The prior study is of another patient."), code="different_patient")
    if study.study_date and prior.study_date and prior.study_date >= study.study_date:
        raise ServiceError(_("The prior study (%(prior_date)s) is not earlier than the study (%(study_date)s)."),
                           params={"prior_date": prior.study_date.isoformat(),
                                   "study_date": study.study_date.isoformat()},
                           code="prior_not_earlier")


def _findings(study: Study) -> list[Finding]:
    return list(Finding.objects.filter(study=study).exclude(status=Finding.Status.REJECTED).order_by("pk"))


def _segment_mask(cache: dict, finding: Finding) -> np.ndarray | None:
    if finding.segmentation_id is None or finding.segment_label is None:
        return None
    if finding.segmentation_id not in cache:
        cache[finding.segmentation_id] = segmentation_labelmap_load(finding.segmentation)
    return cache[finding.segmentation_id] == finding.segment_label


def _warp_mask(mask: np.ndarray, source: Geometry, target: Geometry, matrix: np.ndarray) -> np.ndarray:
    """Map a prior-frame mask onto the current grid: a current voxel x takes the prior value at M⁻¹ x."""
    import SimpleITK as sitk

    from annotation.imaging.volume import array_to_sitk

    inverse = np.linalg.inv(matrix)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(inverse[:3, :3].ravel()))
    transform.SetTranslation(tuple(inverse[:3, 3]))
    reference = array_to_sitk(np.zeros(target.shape, np.uint8), target)
    warped = sitk.Resample(array_to_sitk(mask.astype(np.uint8), source), reference, transform,
                           sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(warped).astype(bool)


def _overlaps(prior: list[Finding], current: list[Finding], mapped: np.ndarray, prior_series: Series,
              series: Series, matrix: np.ndarray) -> np.ndarray:
    from annotation.storage import series_geometry

    overlaps = np.zeros((len(prior), len(current)))
    prior_cache: dict = {}
    current_cache: dict = {}
    for p, prior_finding in enumerate(prior):
        if prior_finding.segmentation_id is None or prior_finding.series_id != prior_series.pk:
            continue
        warped = None
        for c, finding in enumerate(current):
            if finding.segmentation_id is None or finding.series_id != series.pk:
                continue
            if np.linalg.norm(mapped[p] - np.asarray(finding.centroid_lps_mm, float)) > _OVERLAP_SEARCH_MM:
                continue
            if warped is None:
                mask = _segment_mask(prior_cache, prior_finding)
                if mask is None or not mask.any():
                    break
                warped = _warp_mask(mask, series_geometry(prior_series), series_geometry(series), matrix)
            current_mask = _segment_mask(current_cache, finding)
            if current_mask is None:
                continue
            union = np.logical_or(warped, current_mask).sum()
            overlaps[p, c] = float(np.logical_and(warped, current_mask).sum() / union) if union else 0.0
    return overlaps


def _segment_rows(series: Series) -> list[Measurement]:
    """Measured segments of the series' segmentations that outline organs (not a finding's lesion)."""
    lesion_segmentations = Finding.objects.filter(series=series, segmentation__isnull=False).values("segmentation")
    return list(Measurement.objects.filter(segmentation__series=series)
                .exclude(segmentation__in=lesion_segmentations)
                .order_by("-segmentation__created_at", "label"))


def _segment_matches(prior_series: Series, series: Series, matrix: np.ndarray) -> list[dict]:
    prior_rows, rows = _segment_rows(prior_series), _segment_rows(series)
    result = match_by_name([r.label_name for r in prior_rows], [r.label_name for r in rows])
    out = []
    for p, c in result.pairs:
        before, after = prior_rows[p], rows[c]
        out.append({"name": after.label_name, "prior_measurement_id": before.pk, "measurement_id": after.pk,
                    "prior_volume_ml": before.volume_ml, "volume_ml": after.volume_ml,
                    "prior_centroid_lps_mm": list(before.centroid_lps_mm),
                    "prior_centroid_registered_lps_mm": [round(float(v), 2) for v in
                                                         transform_points(matrix, before.centroid_lps_mm)],
                    "centroid_lps_mm": list(after.centroid_lps_mm),
                    "prior_long_axis_mm": before.axial_long_mm, "long_axis_mm": after.axial_long_mm,
                    "prior_short_axis_mm": before.axial_short_mm, "short_axis_mm": after.axial_short_mm,
                    "prior_mean_hu": before.mean_intensity, "mean_hu": after.mean_intensity})
    return out


def study_compare(
    *, user: User | None, study: Study, prior: Study, working_spacing_mm: float = 3.0
) -> StudyRegistration:
    """Register ``study`` to ``prior``, match their findings and store both (replacing an earlier comparison).

    The study's series with most voxels is registered to the prior's series of the same modality with most
    voxels (:func:`diagnosis.longitudinal.registration.register_volumes`; for CT the metric is masked by
    the prior's lung mask when lungs are found). Findings (all but rejected ones) are matched by
    registered centroid distance and segment overlap (:func:`diagnosis.longitudinal.matching.match_lesions`);
    pairs and unpaired findings the doctor set by hand are kept. Organ segments measured on both series
    are paired by name.

    Raises
    ------
    portal.api_errors.ServiceError
        ``same_study``, ``other_hospital``, ``different_patient``, ``prior_not_earlier`` (dates out of
        order), ``no_series`` (a study without a series of the modality), ``registration_failed``
        (422). Nothing is stored then.
    """
    _check_pair(study, prior)
    series = _main_series(study)
    prior_series = _main_series(prior, series.modality) if series is not None else None
    if series is None or prior_series is None:
        raise ServiceError(_("Both studies need a series of the same modality to be compared."), code="no_series")
    # Lungs and registration on the working grid: the transform is the same, the cost a fraction.
    fixed = resample_volume(series_volume_load(prior_series), working_spacing_mm)
    moving = resample_volume(series_volume_load(series), working_spacing_mm)
    fixed_mask = moving_mask = None
    if (series.modality or "").upper() == "CT":
        fixed_mask = chest_ct_mask(fixed)
        moving_mask = chest_ct_mask(moving) if fixed_mask is not None else None
    try:
        registration = register_volumes(fixed, moving, fixed_mask=fixed_mask, moving_mask=moving_mask,
                                        working_spacing_mm=working_spacing_mm)
    except RegistrationError as exc:
        raise ServiceError(_("The studies could not be registered: %(exc)s"), params={"exc": str(exc)},
                           code="registration_failed", status_code=422) from None
    matrix = registration.matrix_4x4
    body = registration.to_dict()
    interval = (study.study_date - prior.study_date).days if study.study_date and prior.study_date else None

    with transaction.atomic():
        row, created = StudyRegistration.objects.select_for_update().get_or_create(
            study=study, prior=prior,
            defaults={"series": series, "prior_series": prior_series, "method": body["method"],
                      "transform": body["transform"], "quality": body["quality"], "created_by": user})
        row.series, row.prior_series, row.method = series, prior_series, body["method"]
        row.transform, row.quality, row.interval_days = body["transform"], body["quality"], interval
        row.segment_matches = _segment_matches(prior_series, series, matrix)
        row.full_clean()
        row.save()
        row.matches.filter(origin=FindingMatch.Origin.AUTO).delete()
        manual = list(row.matches.all())
        taken_prior = {m.prior_finding_id for m in manual if m.prior_finding_id}
        taken = {m.finding_id for m in manual if m.finding_id}
        prior_findings = [f for f in _findings(prior) if f.pk not in taken_prior]
        findings = [f for f in _findings(study) if f.pk not in taken]
        mapped = transform_points(matrix, np.array([f.centroid_lps_mm for f in prior_findings], float).reshape(-1, 3))
        overlaps = _overlaps(prior_findings, findings, mapped, prior_series, series, matrix)
        result = match_lesions(mapped, np.array([f.centroid_lps_mm for f in findings], float).reshape(-1, 3),
                               prior_diameters_mm=[f.long_axis_mm for f in prior_findings],
                               current_diameters_mm=[f.long_axis_mm for f in findings], overlaps=overlaps)
        rows = [FindingMatch(registration=row, prior_finding=prior_findings[p], finding=findings[c],
                             status=FindingMatch.Status.MATCHED, distance_mm=round(d, 3), overlap=round(o, 4))
                for (p, c), d, o in zip(result.pairs, result.distances_mm, result.overlaps)]
        rows += [FindingMatch(registration=row, prior_finding=prior_findings[p], status=FindingMatch.Status.RESOLVED)
                 for p in result.resolved]
        rows += [FindingMatch(registration=row, finding=findings[c], status=FindingMatch.Status.NEW)
                 for c in result.new]
        FindingMatch.objects.bulk_create(rows)
        _audit(user, row, AuditLog.Action.CREATE if created else AuditLog.Action.UPDATE,
               {"study": study.pk, "prior": prior.pk, "method": row.method, "quality": row.quality,
                "matched": len(result.pairs), "new": len(result.new), "resolved": len(result.resolved),
                "kept_manual": len(manual)})
    return row


def _locked(registration: StudyRegistration) -> StudyRegistration:
    return (StudyRegistration.objects.select_for_update().select_related("study", "study__hospital")
            .get(pk=registration.pk))


@transaction.atomic
def finding_match_link(*, user: User, registration: StudyRegistration, prior_finding: Finding,
                       finding: Finding) -> FindingMatch:
    """Pair a prior finding with a current one by hand; their former partners become resolved or new.

    Raises
    ------
    portal.api_errors.ServiceError
        ``finding_not_in_comparison`` when either finding is not of the comparison's study and prior
        (or is rejected), ``already_linked`` (409) when the two are already paired.
    """
    registration = _locked(registration)
    if prior_finding.study_id != registration.prior_id or finding.study_id != registration.study_id:
        raise ServiceError(_("Link a finding of the prior study with a finding of this study."),
                           code="finding_not_in_comparison")
    if Finding.Status.REJECTED in (prior_finding.status, finding.status):
        raise ServiceError(_("A rejected finding cannot be linked."), code="finding_not_in_comparison")
    rows = list(registration.matches.filter(Q(prior_finding=prior_finding) | Q(finding=finding)))
    if any(r.status == FindingMatch.Status.MATCHED and r.prior_finding_id == prior_finding.pk
           and r.finding_id == finding.pk for r in rows):
        raise ServiceError(_("These two findings are already linked."), code="already_linked", status_code=409)
    now = timezone.now()
    detail = {"link": [prior_finding.pk, finding.pk], "replaced": [r.pk for r in rows]}
    for r in rows:
        r.delete()
        # The other side of a broken pair stands alone again, as the doctor's consequence.
        if r.status == FindingMatch.Status.MATCHED and r.finding_id != finding.pk:
            FindingMatch.objects.create(registration=registration, finding_id=r.finding_id,
                                        status=FindingMatch.Status.NEW, origin=FindingMatch.Origin.MANUAL,
                                        linked_by=user, linked_at=now)
        if r.status == FindingMatch.Status.MATCHED and r.prior_finding_id != prior_finding.pk:
            FindingMatch.objects.create(registration=registration, prior_finding_id=r.prior_finding_id,
                                        status=FindingMatch.Status.RESOLVED, origin=FindingMatch.Origin.MANUAL,
                                        linked_by=user, linked_at=now)
    matrix = np.asarray(registration.transform["matrix_lps_mm"], float)
    distance = float(np.linalg.norm(transform_points(matrix, np.asarray(prior_finding.centroid_lps_mm, float))
                                    - np.asarray(finding.centroid_lps_mm, float)))
    match = FindingMatch(registration=registration, prior_finding=prior_finding, finding=finding,
                         status=FindingMatch.Status.MATCHED, origin=FindingMatch.Origin.MANUAL,
                         distance_mm=round(distance, 3), linked_by=user, linked_at=now)
    match.full_clean()
    match.save()
    _audit(user, registration, AuditLog.Action.UPDATE, detail)
    return match


@transaction.atomic
def finding_match_unlink(*, user: User, match: FindingMatch) -> tuple[FindingMatch, FindingMatch]:
    """Split a pair by hand: the prior finding becomes resolved, the current one new (both kept on a new
    comparison). Returns (resolved, new).

    Raises
    ------
    portal.api_errors.ServiceError
        ``not_linked`` (409) when the row is not a pair.
    """
    registration = _locked(match.registration)
    match = FindingMatch.objects.select_for_update().get(pk=match.pk)
    if match.status != FindingMatch.Status.MATCHED:
        raise ServiceError(_("Only a linked pair can be unlinked."), code="not_linked", status_code=409)
    now = timezone.now()
    pair = [match.prior_finding_id, match.finding_id]
    match.delete()
    resolved = FindingMatch.objects.create(registration=registration, prior_finding_id=pair[0],
                                           status=FindingMatch.Status.RESOLVED, origin=FindingMatch.Origin.MANUAL,
                                           linked_by=user, linked_at=now, details={"unlinked_from": pair[1]})
    new = FindingMatch.objects.create(registration=registration, finding_id=pair[1],
                                      status=FindingMatch.Status.NEW, origin=FindingMatch.Origin.MANUAL,
                                      linked_by=user, linked_at=now, details={"unlinked_from": pair[0]})
    _audit(user, registration, AuditLog.Action.UPDATE, {"unlink": pair})
    return resolved, new


def study_compare_request(*, user: User, study: Study, prior: Study) -> None:
    """Queue the comparison of ``study`` with ``prior`` on a worker (registration takes seconds to minutes).

    The pair is checked here, so that a wrong pair is refused at once; the request is audit-logged and
    the worker runs :func:`study_compare`.

    Raises
    ------
    portal.api_errors.ServiceError
        As :func:`study_compare`'s pair checks (``same_study``, ``other_hospital``, ``different_patient``,
        ``prior_not_earlier``); ``queue_unavailable`` (503) when the broker cannot be reached.
    """
    from ..tasks import study_compare_task

    _check_pair(study, prior)
    try:
        study_compare_task.delay(study.pk, prior.pk, user.pk)
    except Exception as exc:  # noqa: BLE001 - kombu raises several types when the broker is down
        raise ServiceError(_("The task queue cannot be reached; please try again later."), code="queue_unavailable",
                           status_code=503) from exc
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="study_registration", target_id=study.pk,
                 hospital=study.hospital, detail={"prior": prior.pk, "queued": True})
