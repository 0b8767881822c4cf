"""Reads of studies, series, segmentations and inference runs, scoped to what the user may see.

A doctor, annotator or hospital admin sees their hospital's records; a patient sees only their own;
platform admins see everything; nobody sees another hospital's records. A record the user may not
see is reported as not found, so its existence does not leak.
"""

from __future__ import annotations

from django.db.models import Case, Exists, OuterRef, Prefetch, Q, QuerySet, Value, When
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from portal.models import STAFF_ROLES, Role, User
from portal.selectors import tenancy_scope

from .models import InferenceRun, Patient, Segmentation, SegmentationModel, Series, Study


def study_visible_queryset(user: User) -> QuerySet[Study]:
    """Return the studies ``user`` may see: their hospital's (staff), their own (patient)."""
    return tenancy_scope(Study.objects.all(), user, patient_user_field="patient__user")


def study_list(*, user: User) -> QuerySet[Study]:
    """Return visible studies, newest first, with patient and series counts loaded."""
    return (
        study_visible_queryset(user)
        .select_related("patient", "hospital")
        .prefetch_related(Prefetch("series", queryset=Series.objects.only("id", "study_id", "modality", "description", "body_part")))
        .order_by("-created_at")
    )


WORKLIST_SEGMENTATION_STATUSES = ("none", "running", "done")


def study_worklist(
    *,
    user: User,
    query: str = "",
    modality: str = "",
    body_part: str = "",
    date_from=None,
    date_to=None,
    segmentation_status: str = "",
    report_status: str = "",
) -> QuerySet[Study]:
    """Return the radiology worklist: visible studies, newest study date first, filtered.

    Each study is annotated with ``segmentation_status`` (``"running"`` while a one-click run of one
    of its series is queued or running, else ``"done"`` when it has a segmentation, else ``"none"``)
    and, when an app has registered on ``annotation.hooks.study_worklist_report_status``, with
    ``report_status`` (``"none"``, ``"draft"``, ``"final"``).

    ``query`` matches the patient's name or MRN, the accession number or the study description
    (case-insensitive substring); ``modality`` and ``body_part`` match a series of the study
    (case-insensitive, exact); ``date_from``/``date_to`` (``datetime.date``) bound the study date,
    inclusive. An empty filter is not applied. Studies without a study date sort last.
    """
    from django.db.models import F

    from . import hooks

    running = InferenceRun.objects.filter(
        series__study=OuterRef("pk"), status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING]
    )
    segmented = Segmentation.objects.filter(series__study=OuterRef("pk"))
    studies = study_list(user=user).annotate(
        segmentation_status=Case(
            When(Exists(running), then=Value("running")),
            When(Exists(segmented), then=Value("done")),
            default=Value("none"),
        )
    )
    for _key, annotate in hooks.study_worklist_report_status.items():
        studies = annotate(studies)
    if query:
        studies = studies.filter(
            Q(patient__name__icontains=query)
            | Q(patient__mrn__icontains=query)
            | Q(accession_number__icontains=query)
            | Q(description__icontains=query)
        )
    if modality:
        studies = studies.filter(Exists(Series.objects.filter(study=OuterRef("pk"), modality__iexact=modality)))
    if body_part:
        studies = studies.filter(Exists(Series.objects.filter(study=OuterRef("pk"), body_part__iexact=body_part)))
    if date_from:
        studies = studies.filter(study_date__gte=date_from)
    if date_to:
        studies = studies.filter(study_date__lte=date_to)
    if segmentation_status:
        studies = studies.filter(segmentation_status=segmentation_status)
    if report_status and "report_status" in studies.query.annotations:
        studies = studies.filter(report_status=report_status)
    return studies.order_by(F("study_date").desc(nulls_last=True), "-created_at", "-pk")


def study_worklist_choices(*, user: User) -> dict[str, list[str]]:
    """Return the modalities and body parts present in the studies ``user`` may see, sorted."""
    series = Series.objects.filter(study__in=study_visible_queryset(user))
    return {
        "modalities": sorted({m.upper() for m in series.values_list("modality", flat=True).distinct() if m}),
        "body_parts": sorted({b.upper() for b in series.values_list("body_part", flat=True).distinct() if b}),
    }


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


def series_slice_uids(*, series: Series) -> list[str]:
    """Return the SOP Instance UID of each slice of a DICOM series, in the volume's k order.

    The import stores one source file per instance in slice order (sorted along the slice normal), so
    the rows' creation order is the k order. A series not imported from DICOM gives blanks.
    """
    uids = list(series.source_files.order_by("pk").values_list("sop_instance_uid", flat=True))
    depth = int(series.shape[0])
    return uids if len(uids) == depth else [""] * depth


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
    """Return the active models offered to ``user``'s hospital.

    Those are the models for every hospital (no ``hospital`` and no ``shared_with``: the shipped ones), the
    hospital's own, and those shared with it (a federated model with the hospitals that took part).
    """
    qs = SegmentationModel.objects.filter(is_active=True)
    if not user.is_platform_admin:
        rule = Q(hospital__isnull=True, shared_with__isnull=True)
        if user.hospital_id is not None:
            rule |= Q(hospital_id=user.hospital_id) | Q(shared_with__id=user.hospital_id)
        # A subquery rather than a join, so that a model shared with several hospitals is listed once.
        qs = qs.filter(pk__in=SegmentationModel.objects.filter(rule).values("pk"))
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


def segmentation_versions(*, user: User, segmentation_id: int) -> list[Segmentation]:
    """Return every version in the tree of a visible segmentation, oldest first (raise Http404)."""
    segmentation = segmentation_get(user=user, segmentation_id=segmentation_id)
    root_id = segmentation.root_id or segmentation.pk
    return list(
        Segmentation.objects.filter(root_id=root_id)
        .select_related("created_by", "model")
        .order_by("version", "pk")
    )


def segmentation_compare(*, user: User, segmentation_id: int, other_id: int) -> dict:
    """Compare two visible segmentations of the same series: per-label voxels added and removed
    (from ``segmentation_id`` to ``other_id``) and Dice.

    Raises
    ------
    Http404
        When either is not visible.
    portal.api_errors.ServiceError
        ``wrong_grid`` when they lie on different series.
    """
    from portal.api_errors import ServiceError

    from .editing.compare import compare_label_maps
    from .storage import segmentation_labelmap_load

    a = segmentation_get(user=user, segmentation_id=segmentation_id)
    b = segmentation_get(user=user, segmentation_id=other_id)
    if a.series_id != b.series_id:
        raise ServiceError(_("The two segmentations lie on different series."), code="wrong_grid")
    labels = sorted({int(e["index"]) for e in a.label_table} | {int(e["index"]) for e in b.label_table})
    changes = compare_label_maps(
        segmentation_labelmap_load(a), segmentation_labelmap_load(b), spacing_mm=tuple(a.series.spacing_mm), labels=labels
    )
    return {"a": a, "b": b, "labels": [c.to_dict() for c in changes]}


# --- label sets and label searches -----------------------------------------------------------------

def label_set_list(*, user: User):
    """Return the label sets of the user's hospital (every hospital's for platform admins)."""
    from .models import Label, LabelSet

    qs = LabelSet.objects.select_related("hospital").prefetch_related(Prefetch("labels", queryset=Label.objects.order_by("index")))
    return tenancy_scope(qs, user)


def label_set_get(*, user: User, label_set_id: int):
    from .models import LabelSet

    try:
        return label_set_list(user=user).get(pk=label_set_id)
    except LabelSet.DoesNotExist:
        raise Http404("No such label set.") from None


def _has_label(label_table: list[dict], name: str, snomed_code: str = "") -> bool:
    wanted = name.strip().casefold()
    for entry in label_table or []:
        if wanted and str(entry.get("name", "")).strip().casefold() == wanted:
            return True
        if snomed_code and str(entry.get("snomed_code", "")) == snomed_code:
            return True
    return False


def studies_with_label(*, user: User, name: str = "", snomed_code: str = "") -> list[Study]:
    """Return visible studies with a current segmentation whose label table holds the label (by
    name, case-insensitive, or by SNOMED CT code)."""
    rows = (
        Segmentation.objects.filter(series__study__in=study_visible_queryset(user), is_current=True)
        .values_list("series__study_id", "label_table")
    )
    ids = {study_id for study_id, table in rows if _has_label(table, name, snomed_code)}
    return list(study_visible_queryset(user).filter(pk__in=ids).select_related("patient").order_by("-created_at"))


def models_with_label(*, user: User, name: str = "", snomed_code: str = "") -> list[SegmentationModel]:
    """Return the models offered to the user whose label table produces the label."""
    return [m for m in segmentation_model_list(user=user) if _has_label(m.label_table, name, snomed_code)]


# --- review and agreement ------------------------------------------------------------------------------

def assignment_list(*, user: User, study: Study | None = None):
    """Return assignments the user may see: annotators their own, clinicians their hospital's."""
    from portal.models import CLINICAL_ROLES

    from .models import StudyAssignment

    qs = StudyAssignment.objects.select_related("study", "study__patient", "annotator").filter(
        study__in=study_visible_queryset(user))
    if not user.is_platform_admin and user.role not in CLINICAL_ROLES:
        qs = qs.filter(annotator=user)
    if study is not None:
        qs = qs.filter(study=study)
    return qs.order_by("-created_at")


def segmentation_list_needing_review(*, user: User):
    """Return the current network segmentations the user may see with a segment below the review
    threshold (``needs_review``) that no doctor has approved or rejected yet, oldest first."""
    from .models import ReviewStatus

    return (
        Segmentation.objects.select_related("series", "series__study", "model")
        .filter(series__study__in=study_visible_queryset(user), needs_review=True, is_current=True,
                review_status__in=[ReviewStatus.DRAFT, ReviewStatus.SUBMITTED])
        .order_by("created_at")
    )


def review_comments(*, study: Study):
    from .models import ReviewComment

    return ReviewComment.objects.filter(study=study).select_related("author", "segmentation").order_by("created_at")


def study_agreement(*, user: User, study_id: int) -> dict:
    """Return inter-annotator agreement on a visible study: for each series, the current version
    of each author's newest segmentation tree and the mean pairwise Dice per label.

    Returns ``{"series": [{"series": id, "annotators": [{"user", "segmentation"}], "dice": {label: value}}]}``.
    """
    from .editing.compare import inter_annotator_dice
    from .storage import segmentation_labelmap_load

    study = study_get(user=user, study_id=study_id)
    out = []
    for series in study.series.all().order_by("pk"):
        latest: dict[int, Segmentation] = {}
        current = (Segmentation.objects.filter(series=series, is_current=True, created_by__isnull=False,
                                               layer_group__isnull=True)
                   .select_related("created_by").order_by("created_at"))
        for segmentation in current:
            latest[segmentation.created_by_id] = segmentation
        chosen = list(latest.values())
        labels = sorted({int(e["index"]) for s in chosen for e in s.label_table})
        dice = inter_annotator_dice([segmentation_labelmap_load(s) for s in chosen], labels=labels) if len(chosen) > 1 else {}
        names = {int(e["index"]): e.get("name", "") for s in chosen for e in s.label_table}
        out.append({
            "series": series.pk,
            "annotators": [{"user": str(s.created_by), "segmentation": s.pk, "review_status": s.review_status} for s in chosen],
            "dice": [{"label": k, "name": names.get(k, ""), "dice": v} for k, v in sorted(dice.items())],
        })
    return {"study": study.pk, "series": out}


# --- active learning -----------------------------------------------------------------------------------

def unlabelled_series(*, user: User, modality: str = ""):
    """Return visible series that no person has labelled yet (no manual or imported segmentation)."""
    qs = Series.objects.filter(study__in=study_visible_queryset(user)).exclude(
        segmentations__source__in=[Segmentation.Source.MANUAL, Segmentation.Source.IMPORT]
    )
    if modality:
        qs = qs.filter(modality__iexact=modality)
    return qs.select_related("study").distinct().order_by("pk")


def uncertainty_ranking(*, user: User, model: SegmentationModel, method: str = "entropy"):
    """Return the unlabelled series' uncertainty scores under ``model``, most uncertain first."""
    from .models import UncertaintyScore

    return (
        UncertaintyScore.objects.filter(model=model, method=method, series__in=unlabelled_series(user=user))
        .select_related("series", "series__study")
        .order_by("-score", "series_id")
    )


def assignable_staff(*, user: User, study: Study) -> list[User]:
    """Return the staff of the study's hospital a clinician may assign it to (annotators first)."""
    from portal.permissions import is_clinician

    if not is_clinician(user):
        return []
    staff = User.objects.filter(hospital_id=study.hospital_id, role__in=STAFF_ROLES, is_active=True)
    return sorted(staff, key=lambda u: (u.role != Role.ANNOTATOR, str(u)))


# --- DICOM network ------------------------------------------------------------------------------

def dicom_peer_titles_active() -> list[str]:
    """Return the calling AE titles that may send studies (active peers)."""
    from .models import DicomPeer

    return list(DicomPeer.objects.filter(is_active=True).values_list("ae_title", flat=True))


def dicom_peer_by_ae_title(*, ae_title: str):
    """Return the active peer calling with ``ae_title`` (with its hospital), or None."""
    from .models import DicomPeer

    return DicomPeer.objects.select_related("hospital").filter(ae_title=ae_title.strip(), is_active=True).first()


def dicom_routing_rules_for(*, hospital) -> QuerySet:
    """Return a hospital's active routing rules whose model is active and available to it, by priority."""
    from django.db.models import Q

    from .models import DicomRoutingRule

    return (
        DicomRoutingRule.objects.filter(hospital=hospital, is_active=True, model__is_active=True)
        .filter(Q(model__hospital__isnull=True) | Q(model__hospital=hospital))
        .select_related("model")
        .order_by("priority", "pk")
    )


# --- training datasets ---------------------------------------------------------------------------

def label_set_approved_segmentations(*, hospital, label_set) -> list[Segmentation]:
    """Return, per study of ``hospital``, the newest segmentation of ``label_set`` when it is approved.

    A segmentation belongs to the label set when it or the first version of its tree was started
    from it (later versions of a tree carry no label set of their own). For each study the newest
    such segmentation (by creation time) counts: a case drops out as soon as a newer version awaits
    review again. Ordered by study.
    """
    from django.db.models import F, OuterRef, Subquery

    from .models import ReviewStatus

    of_label_set = Q(label_set=label_set) | Q(root__label_set=label_set)
    newest = (Segmentation.objects.filter(of_label_set, series__study_id=OuterRef("series__study_id"))
              .order_by("-created_at", "-pk").values("pk")[:1])
    return list(
        Segmentation.objects.filter(of_label_set, series__hospital=hospital)
        .annotate(newest_pk=Subquery(newest))
        .filter(pk=F("newest_pk"), review_status=ReviewStatus.APPROVED)
        .select_related("series")
        .order_by("series__study_id", "pk")
    )


def training_dataset_list(*, hospital=None, user: User | None = None) -> QuerySet:
    """Return training datasets, newest version first within a name: those of ``hospital``, or the ones
    ``user`` may see (their hospital's; every hospital's for platform admins)."""
    from .models import TrainingDataset

    qs = TrainingDataset.objects.select_related("hospital", "label_set", "created_by").order_by("name", "-version")
    if hospital is not None:
        qs = qs.filter(hospital=hospital)
    if user is not None:
        qs = tenancy_scope(qs, user)
    return qs


def training_dataset_get(*, hospital, name: str, version: int | None = None):
    """Return version ``version`` of ``hospital``'s training dataset ``name`` (the latest when None).

    Raises
    ------
    portal.api_errors.ServiceError
        ``dataset_not_found`` (404) when the hospital has no such dataset or version.
    """
    from portal.api_errors import ServiceError

    qs = training_dataset_list(hospital=hospital).filter(name=name)
    if version is not None:
        qs = qs.filter(version=version)
    dataset = qs.first()
    if dataset is None:
        raise ServiceError(_("No training dataset “%(name)s” (version %(version)s) in this hospital."),
                           params={"name": name, "version": version if version is not None else _("latest")},
                           code="dataset_not_found", status_code=404)
    return dataset


def training_dataset_get_by_id(*, user: User, dataset_id: int):
    """Return a training dataset that ``user`` may see (their hospital's; any for platform admins).

    Raises
    ------
    django.http.Http404
        No such dataset, or another hospital's.
    """
    from .models import TrainingDataset

    try:
        return training_dataset_list(user=user).get(pk=dataset_id)
    except TrainingDataset.DoesNotExist:
        raise Http404("No such training dataset.") from None


def training_run_visible_queryset(user: User) -> QuerySet:
    """Return the training runs ``user`` may see: their hospital's (staff), every one (platform admins)."""
    from .models import TrainingRun

    qs = TrainingRun.objects.select_related("dataset", "dataset__hospital", "segmentation_model", "created_by")
    return tenancy_scope(qs, user, hospital_field="dataset__hospital")


def training_run_list(*, user: User, dataset=None) -> QuerySet:
    """Return the visible training runs, newest first, optionally of one dataset."""
    qs = training_run_visible_queryset(user)
    if dataset is not None:
        qs = qs.filter(dataset=dataset)
    return qs.order_by("-created_at")


def training_run_get(*, user: User, run_id: int):
    """Return one visible training run.

    Raises
    ------
    django.http.Http404
        No such run, or another hospital's.
    """
    from .models import TrainingRun

    try:
        return training_run_visible_queryset(user).get(pk=run_id)
    except TrainingRun.DoesNotExist:
        raise Http404("No such training run.") from None
