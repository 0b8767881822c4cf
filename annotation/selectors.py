"""Reads of studies, series, segmentations and inference runs, scoped to what the user may see.

A doctor, annotator or hospital admin sees their hospital's records; a patient sees only their own;
platform admins see everything; nobody sees another hospital's records. A record the user may not
see is reported as not found, so its existence does not leak.
"""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.http import Http404

from portal.models import STAFF_ROLES, Role, User

from .models import InferenceRun, Patient, Segmentation, SegmentationModel, Series, Study


def study_visible_queryset(user: User) -> QuerySet[Study]:
    """Return the studies ``user`` may see."""
    qs = Study.objects.all()
    if not user.is_authenticated:
        return qs.none()
    if user.is_platform_admin:
        return qs
    if user.role in STAFF_ROLES and user.hospital_id:
        return qs.filter(hospital_id=user.hospital_id)
    if user.role == Role.PATIENT:
        return qs.filter(patient__user=user)
    return qs.none()


def study_list(*, user: User) -> QuerySet[Study]:
    """Return visible studies, newest first, with patient and series counts loaded."""
    return (
        study_visible_queryset(user)
        .select_related("patient", "hospital")
        .prefetch_related(Prefetch("series", queryset=Series.objects.only("id", "study_id", "modality", "description")))
        .order_by("-created_at")
    )


def study_get(*, user: User, study_id: int) -> Study:
    """Return one visible study or raise Http404."""
    try:
        return study_visible_queryset(user).select_related("patient", "hospital").get(pk=study_id)
    except Study.DoesNotExist:
        raise Http404("No such study.") from None


def study_detail(*, user: User, study_id: int) -> Study:
    """Return a visible study with its series, segmentations and inference runs prefetched."""
    study = study_get(user=user, study_id=study_id)
    series = (
        Series.objects.filter(study=study)
        .prefetch_related(
            Prefetch("segmentations", queryset=Segmentation.objects.select_related("model").order_by("-created_at")),
        )
        .order_by("series_number", "pk")
    )
    study.series_list = list(series)
    study.run_list = list(
        InferenceRun.objects.filter(series__study=study).select_related("model").order_by("-created_at")
    )
    return study


def series_get(*, user: User, series_id: int) -> Series:
    try:
        return (
            Series.objects.select_related("study", "study__patient", "study__hospital")
            .filter(study__in=study_visible_queryset(user))
            .get(pk=series_id)
        )
    except Series.DoesNotExist:
        raise Http404("No such series.") from None


def segmentation_get(*, user: User, segmentation_id: int) -> Segmentation:
    try:
        return (
            Segmentation.objects.select_related("series", "series__study", "series__study__hospital", "model")
            .filter(series__study__in=study_visible_queryset(user))
            .get(pk=segmentation_id)
        )
    except Segmentation.DoesNotExist:
        raise Http404("No such segmentation.") from None


def inference_run_get(*, user: User, run_id: int) -> InferenceRun:
    try:
        return (
            InferenceRun.objects.select_related("series", "series__study", "model", "segmentation")
            .filter(series__study__in=study_visible_queryset(user))
            .get(pk=run_id)
        )
    except InferenceRun.DoesNotExist:
        raise Http404("No such inference run.") from None


def segmentation_model_list(*, user: User, modality: str | None = None) -> QuerySet[SegmentationModel]:
    """Return the active models offered to ``user``'s hospital (shared ones and its own)."""
    qs = SegmentationModel.objects.filter(is_active=True)
    if not user.is_platform_admin:
        qs = qs.filter(hospital__isnull=True) | qs.filter(hospital_id=user.hospital_id)
    if modality:
        qs = qs.filter(modality__iexact=modality)
    return qs.order_by("name", "-version")


def segmentation_model_get(*, user: User, model_id: int) -> SegmentationModel:
    try:
        return segmentation_model_list(user=user).get(pk=model_id)
    except SegmentationModel.DoesNotExist:
        raise Http404("No such segmentation model.") from None


def segmentation_model_by_name(*, name: str, version: int | None = None) -> SegmentationModel:
    """Return the newest active version of a model by name (or the given version).

    Raises
    ------
    SegmentationModel.DoesNotExist
        When no such model is registered.
    """
    qs = SegmentationModel.objects.filter(name=name)
    if version is not None:
        return qs.get(version=version)
    model = qs.filter(is_active=True).order_by("-version").first()
    if model is None:
        raise SegmentationModel.DoesNotExist(f"no active model named {name!r}")
    return model


def patient_for_user(*, user: User) -> Patient | None:
    return Patient.objects.filter(user=user).select_related("hospital").first()
