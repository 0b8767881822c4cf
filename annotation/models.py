"""Patients, studies, series with their canonical volumes, the model registry, inference runs and
segmentations.

Geometry fields follow ``annotation.imaging.volume``: shape and spacing in array axis order
(k, j, i) = (slice, row, column); origin in LPS patient coordinates (mm); direction as a row-major
3×3 matrix whose column *a* is the LPS unit vector of array axis *a*.
"""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from portal.models import Hospital
from portal.validators import validate_color, validate_label_table_colors, validate_mrn


class Patient(models.Model):
    """A patient of one hospital, identified there by a medical record number (MRN)."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="patients")
    mrn = models.CharField(_("medical record number"), max_length=64, validators=[validate_mrn])
    name = models.CharField(_("name"), max_length=100, blank=True)
    sex = models.CharField(_("sex"), max_length=1, blank=True, choices=[("M", _("Male")), ("F", _("Female")), ("O", _("Other"))])
    birth_date = models.DateField(_("date of birth"), null=True, blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="patient_record",
        help_text=_("The portal account through which the patient reads their own records."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hospital", "mrn"]
        constraints = [models.UniqueConstraint(fields=["hospital", "mrn"], name="patient_unique_mrn_per_hospital")]
        verbose_name = _("patient")
        verbose_name_plural = _("patients")

    def __str__(self) -> str:
        return f"{self.hospital.code}/{self.mrn}"


class Study(models.Model):
    """An imaging study (DICOM StudyInstanceUID (0020,000D)); one or more series."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="studies")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_instance_uid = models.CharField(_("StudyInstanceUID"), max_length=64)
    study_date = models.DateField(_("study date"), null=True, blank=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("study")
        verbose_name_plural = _("studies")

    def __str__(self) -> str:
        return f"Study {self.pk} ({self.study_date or '—'})"


class Series(models.Model):
    """A series (DICOM SeriesInstanceUID (0020,000E)) and its canonical volume.

    The canonical volume is a NIfTI file in object storage on the series' original grid; its geometry
    is stored on the row.
    """

    class SourceFormat(models.TextChoices):
        DICOM = "dicom", "DICOM"
        NIFTI = "nifti", "NIfTI"
        METAIMAGE = "metaimage", "MetaImage"
        NRRD = "nrrd", "NRRD"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    # The study's hospital, repeated here so that the database can keep one row per SeriesInstanceUID
    # and hospital (a constraint cannot reach through the study).
    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="+")
    series_instance_uid = models.CharField(_("SeriesInstanceUID"), max_length=64)
    series_number = models.IntegerField(null=True, blank=True)
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    source_format = models.CharField(max_length=16, choices=SourceFormat.choices)
    instance_count = models.PositiveIntegerField(default=0)
    volume_file = models.FileField(upload_to="volumes/", max_length=255)
    volume_sha256 = models.CharField(max_length=64)
    shape = models.JSONField(help_text="(k, j, i) voxels")
    spacing_mm = models.JSONField(help_text="(k, j, i) voxel spacing in mm")
    origin_mm = models.JSONField(help_text="LPS coordinates of voxel (0,0,0) in mm")
    direction = models.JSONField(help_text="row-major 3×3; column a = LPS direction of array axis a")
    intensity_min = models.FloatField(help_text="minimum voxel value (HU for CT)")
    intensity_max = models.FloatField(help_text="maximum voxel value (HU for CT)")
    window_center = models.FloatField(
        null=True, blank=True, help_text="DICOM Window Center (0028,1050) of the first instance, if any"
    )
    window_width = models.FloatField(
        null=True, blank=True, help_text="DICOM Window Width (0028,1051) of the first instance, if any"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "series_number", "pk"]
        verbose_name = _("series")
        verbose_name_plural = _("series")
        constraints = [
            models.UniqueConstraint(fields=["hospital", "series_instance_uid"], name="series_unique_uid_per_hospital"),
        ]

    def __str__(self) -> str:
        return f"Series {self.pk} {self.modality} {self.description}".strip()


class SourceFile(models.Model):
    """An original file as uploaded, kept unchanged in object storage with its SHA-256.

    For DICOM sources one row is one instance (SOPInstanceUID (0008,0018)).
    """

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="source_files")
    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="+")  # as Series.hospital
    file = models.FileField(upload_to="originals/", max_length=255)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    sop_instance_uid = models.CharField(max_length=64, blank=True)
    instance_number = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["series", "instance_number", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["hospital", "sop_instance_uid"], condition=~models.Q(sop_instance_uid=""),
                name="sourcefile_unique_sop_uid_per_hospital",
            ),
        ]


class SegmentationModel(models.Model):
    """A registered segmentation or detection model: one organ (or one task), one model.

    ``kind`` is ``segmentation`` (a label map with the model's label table) or ``detection`` (a label
    map with one label per detected object; the run stores the detection's own label table, whose
    entries carry each object's ``confidence``, and the apps above turn it into findings).

    ``label_table`` is a list of ``{"index": int, "name": str, "color": "#rrggbb"}``.
    Who may use it: ``hospital`` and the hospitals in ``shared_with``; a model with neither (the shipped
    models) is offered to every hospital.
    ``preprocessing`` holds ``target_spacing_mm`` (k, j, i), ``intensity`` ("hu_window" | "zscore" |
    "none"), ``hu_window`` [low, high] and ``patch_size`` (k, j, i).
    ``architecture`` also names the backend: ``onnx`` runs the stored ONNX file through ONNX Runtime,
    every other network through PyTorch.
    """

    class Kind(models.TextChoices):
        SEGMENTATION = "segmentation", _("Segmentation")
        DETECTION = "detection", _("Detection")

    class Architecture(models.TextChoices):
        CLASSICAL_LUNG = "classical_lung", _("Classical CT lung segmentation")
        CLASSICAL_LUNG_NODULE = "classical_lung_nodule", _("Classical CT lung-nodule detection")
        UNET = "unet", "MONAI UNet"
        VNET = "vnet", "MONAI VNet"
        SEGRESNET = "segresnet", "MONAI SegResNet"
        DYNUNET = "dynunet", "MONAI DynUNet"
        ATTENTIONUNET = "attentionunet", "MONAI AttentionUnet"
        SWINUNETR = "swinunetr", "MONAI SwinUNETR"
        TORCHSCRIPT = "torchscript", "TorchScript"
        BUNDLE = "bundle", _("MONAI bundle")
        RETINANET = "retinanet", _("MONAI RetinaNet detector")
        ONNX = "onnx", _("ONNX (ONNX Runtime)")

    name = models.SlugField(_("name"), max_length=64)
    version = models.PositiveIntegerField(default=1)
    display_name = models.CharField(max_length=200, blank=True)
    display_name_zh = models.CharField(
        _("display name (Chinese)"), max_length=200, blank=True,
        help_text=_("Shown in the Chinese interface; empty: the display name."),
    )
    body_part = models.CharField(_("body part"), max_length=64)
    modality = models.CharField(_("modality"), max_length=16)
    architecture = models.CharField(max_length=32, choices=Architecture.choices)
    kind = models.CharField(
        _("kind"), max_length=16, choices=Kind.choices, default=Kind.SEGMENTATION,
        help_text=_("Detection models store one label per found object, with its confidence, and findings."),
    )
    network_config = models.JSONField(default=dict, blank=True)
    label_table = models.JSONField(default=list, validators=[validate_label_table_colors])
    preprocessing = models.JSONField(default=dict, blank=True)
    weights_file = models.FileField(upload_to="models/", max_length=255, blank=True)
    weights_sha256 = models.CharField(max_length=64, blank=True)
    validation_metrics = models.JSONField(default=dict, blank=True)
    provenance = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True, help_text=_("Offered for one-click segmentation."))
    hospital = models.ForeignKey(
        Hospital, on_delete=models.PROTECT, null=True, blank=True, related_name="segmentation_models",
        help_text=_("Empty: available to every hospital."),
    )
    shared_with = models.ManyToManyField(
        Hospital, blank=True, related_name="shared_segmentation_models",
        help_text=_("Further hospitals that may list and run the model (a federated model: the hospitals that "
                    "took part in the task)."),
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="segmentation_model_unique_version")]
        verbose_name = _("segmentation model")
        verbose_name_plural = _("segmentation models")

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def display_name_in(self, language: str | None) -> str:
        """The name to show in ``language`` (a Django language code such as ``"zh-hans"`` or ``"en"``).

        Chinese (any ``zh`` code) gets ``display_name_zh`` when it is set; every language falls back to
        ``display_name``, then to the slug ``name``.
        """
        if (language or "").lower().startswith("zh") and self.display_name_zh:
            return self.display_name_zh
        return self.display_name or self.name

    @property
    def shown_name(self) -> str:
        """The name to show in the active language (templates: ``{{ model.shown_name }}``)."""
        return self.display_name_in(get_language())


class OrganDefaultModel(models.Model):
    """The model a hospital offers first for one body part (organ) in the one-click menu.

    ``body_part`` is stored lower-case; the model's own ``body_part`` must match it.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="organ_default_models")
    body_part = models.CharField(_("body part"), max_length=64)
    segmentation_model = models.ForeignKey(SegmentationModel, on_delete=models.CASCADE, related_name="+",
                                           verbose_name=_("model"))
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["hospital", "body_part"]
        constraints = [models.UniqueConstraint(fields=["hospital", "body_part"], name="organ_default_model_unique")]
        verbose_name = _("default model per organ")
        verbose_name_plural = _("default models per organ")

    def __str__(self) -> str:
        return f"{self.body_part}: {self.segmentation_model}"


class ReviewStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    SUBMITTED = "submitted", _("Submitted")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class LabelSet(models.Model):
    """The labels a hospital (optionally one project of it) annotates with.

    ``allow_overlap``: segments may share voxels; they are then stored as separate layers (one
    label map each) and exported together.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="label_sets")
    project = models.CharField(_("project"), max_length=100, blank=True)
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    allow_overlap = models.BooleanField(_("overlapping segments allowed"), default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hospital", "project", "name"]
        constraints = [models.UniqueConstraint(fields=["hospital", "project", "name"], name="label_set_unique_name")]
        verbose_name = _("label set")
        verbose_name_plural = _("label sets")

    def __str__(self) -> str:
        return f"{self.project + '/' if self.project else ''}{self.name}"

    def label_table(self) -> list[dict]:
        """Return the labels as a segmentation label table."""
        return [label.to_entry() for label in self.labels.all()]


class Label(models.Model):
    """One label (segment class) of a label set: value in the label map, name, colour, optional
    SNOMED CT concept (the code DICOM SEG's Segmented Property Type uses)."""

    label_set = models.ForeignKey(LabelSet, on_delete=models.CASCADE, related_name="labels")
    index = models.PositiveIntegerField(_("value"), help_text=_("Voxel value in the label map (1–65535)."))
    name = models.CharField(_("name"), max_length=100)
    color = models.CharField(_("colour"), max_length=7, default="#ff0000", validators=[validate_color])
    description = models.TextField(_("description"), blank=True)
    snomed_code = models.CharField(_("SNOMED CT code"), max_length=20, blank=True)
    snomed_meaning = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["label_set", "index"]
        constraints = [
            models.UniqueConstraint(fields=["label_set", "index"], name="label_unique_index"),
            models.CheckConstraint(condition=models.Q(index__gte=1, index__lte=65535), name="label_index_range"),
        ]
        verbose_name = _("label")
        verbose_name_plural = _("labels")

    def __str__(self) -> str:
        return f"{self.index} {self.name}"

    def to_entry(self) -> dict:
        entry = {"index": self.index, "name": self.name, "color": self.color}
        if self.description:
            entry["description"] = self.description
        if self.snomed_code:
            entry["snomed_code"] = self.snomed_code
            entry["snomed_meaning"] = self.snomed_meaning or self.name
        return entry


class Segmentation(models.Model):
    """A label map on a series' grid (integer voxels, 0 = background) with its label table.

    Each saved result is a new row; ``parent`` links versions so that nothing stored is overwritten.
    The versions descending from one first row (``root``; a first row is its own root) form a
    version tree: any version can be branched from, and exactly one version of a tree is current
    (``is_current``), the one the study page shows; rolling back makes an older one current again.
    ``tool`` and ``parameters`` record what produced a version (an editing tool, a refinement with
    its parameters, an import, or the model in ``model``).
    """

    class Source(models.TextChoices):
        MODEL = "model", _("AI model")
        IMPORT = "import", _("Imported")
        MANUAL = "manual", _("Manual edit")

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="segmentations")
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Source.choices)
    model = models.ForeignKey(SegmentationModel, on_delete=models.PROTECT, null=True, blank=True, related_name="segmentations")
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    version = models.PositiveIntegerField(default=1)
    root = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="tree",
        help_text=_("The first version of this version tree (itself for a first version)."),
    )
    is_current = models.BooleanField(default=True, help_text=_("The version of its tree the study page shows."))
    comment = models.TextField(_("comment"), blank=True, max_length=2000)
    tool = models.CharField(max_length=64, blank=True, help_text=_("Editing tool, refinement or import that made this version."))
    parameters = models.JSONField(default=dict, blank=True)
    review_status = models.CharField(_("review status"), max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.DRAFT)
    label_set = models.ForeignKey("LabelSet", on_delete=models.SET_NULL, null=True, blank=True, related_name="segmentations")
    layer_group = models.UUIDField(
        null=True, blank=True, db_index=True,
        help_text=_("Segmentations that are layers of one overlapping label set share this id."),
    )
    layer_index = models.PositiveSmallIntegerField(default=0)
    label_table = models.JSONField(default=list, validators=[validate_label_table_colors])
    labelmap_file = models.FileField(upload_to="segmentations/", max_length=255)
    labelmap_sha256 = models.CharField(max_length=64)
    # A network's one-click output also keeps its voxel-wise normalised softmax entropy (uint8 NIfTI,
    # value = round(255 H), on the series grid) and each label's mean confidence {"1": 0.93, ...}.
    uncertainty_file = models.FileField(upload_to="segmentations/", max_length=255, blank=True)
    label_confidence = models.JSONField(default=dict, blank=True)
    needs_review = models.BooleanField(
        _("needs review"), default=False,
        help_text=_("A segment's mean confidence is below the hospital's review threshold."),
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("segmentation")
        verbose_name_plural = _("segmentations")
        constraints = [
            models.UniqueConstraint(fields=["root"], condition=models.Q(is_current=True), name="segmentation_one_current_per_tree"),
        ]

    @property
    def shown_name(self) -> str:
        """The name to show in the active language.

        A one-click output is stored under its model's name and version as the run saw it
        (``"Lungs (classical) v1"``); while that is still its name it is shown with the model's name in the
        active language (``SegmentationModel.shown_name``). Any other name is the user's and shown as stored.
        """
        model = self.model
        if model is not None:
            stored = {f"{n} v{model.version}" for n in (model.display_name or model.name, model.display_name_zh) if n}
            if self.name in stored:
                return f"{model.shown_name} v{model.version}"
        return self.name

    def __str__(self) -> str:
        return f"Segmentation {self.pk} v{self.version} ({self.name})"


class InferenceRun(models.Model):
    """One one-click segmentation: its state, progress and outcome live on this row."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="inference_runs")
    model = models.ForeignKey(SegmentationModel, on_delete=models.PROTECT, related_name="inference_runs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress_percent = models.FloatField(default=0.0)
    stage = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    device = models.CharField(max_length=32, blank=True)
    segmentation = models.OneToOneField(Segmentation, on_delete=models.SET_NULL, null=True, blank=True, related_name="inference_run")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Recovery bookkeeping (annotation/services/run_recovery.py): executions started (a run whose
    # worker was lost is resumed once, then failed), the executor's last sign of life, and when the
    # job was handed to the broker (null: the publish failed or is pending, the sweeper re-publishes).
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="inference_run_status_beat")]

    def __str__(self) -> str:
        return f"InferenceRun {self.pk} {self.status}"


class StudyAssignment(models.Model):
    """A study given to an annotator to label (several annotators may label one study independently)."""

    class Status(models.TextChoices):
        ASSIGNED = "assigned", _("Assigned")
        SUBMITTED = "submitted", _("Submitted")
        DONE = "done", _("Done")

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_assignments")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ASSIGNED)
    review_only = models.BooleanField(_("review only"), default=False, help_text=_("Label by hand; no model is run."))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["study", "annotator"], name="assignment_unique_annotator")]

    def __str__(self) -> str:
        return f"Assignment {self.study_id} → {self.annotator_id}"


class ReviewComment(models.Model):
    """A reviewer's or annotator's comment on a study, optionally deciding on a segmentation version."""

    class Decision(models.TextChoices):
        COMMENT = "comment", _("Comment")
        SUBMIT = "submit", _("Submitted for review")
        APPROVE = "approve", _("Approved")
        REJECT = "reject", _("Rejected")

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="review_comments")
    segmentation = models.ForeignKey(Segmentation, on_delete=models.CASCADE, null=True, blank=True, related_name="review_comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    decision = models.CharField(max_length=16, choices=Decision.choices, default=Decision.COMMENT)
    text = models.TextField(max_length=4000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]


class UncertaintyScore(models.Model):
    """A model's uncertainty on a series, used to rank studies for annotation (active learning)."""

    class Method(models.TextChoices):
        ENTROPY = "entropy", _("Mean voxel entropy")
        MC_DROPOUT = "mc_dropout", _("Monte-Carlo dropout variance")

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="uncertainty_scores")
    model = models.ForeignKey(SegmentationModel, on_delete=models.CASCADE, related_name="uncertainty_scores")
    method = models.CharField(max_length=16, choices=Method.choices)
    score = models.FloatField()
    details = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-score"]
        constraints = [models.UniqueConstraint(fields=["series", "model", "method"], name="uncertainty_unique")]


class DicomPeer(models.Model):
    """A DICOM node that may send studies: its calling AE title files them into ``hospital``.

    ``host`` and ``port`` name where results go back (its C-STORE SCP), when set. A peer that is a
    ``query_retrieve`` source (the hospital's PACS) is also asked at ``host``:``port`` for a patient's
    priors (Study Root C-FIND) and moves them to the portal's own AE title (C-MOVE), whose C-STORE SCP
    files them like any other study the peer sends; or, with ``retrieve_method`` C-GET (a PACS that
    cannot open connections to the portal), gets them on the portal's own association (PS3.4 C.4.3).

    ``transport`` says how results go back: C-STORE to ``host``:``port``, or STOW-RS (DICOM PS3.18 10.5)
    to ``stow_url``, the peer's DICOMweb base URL. Its credentials never enter the database: with
    ``stow_secret_env`` set, that environment variable holds the password of HTTP basic authentication
    as ``stow_user`` or, without a user, a bearer token.
    """

    class Transport(models.TextChoices):
        C_STORE = "c_store", _("C-STORE")
        STOW_RS = "stow_rs", _("STOW-RS (DICOMweb)")

    class RetrieveMethod(models.TextChoices):
        C_MOVE = "c_move", _("C-MOVE")
        C_GET = "c_get", _("C-GET")

    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="dicom_peers")
    ae_title = models.CharField(
        _("calling AE title"), max_length=16, unique=True,
        validators=[RegexValidator(r"^(?=.*[^ ])[\x20-\x5b\x5d-\x7e]{1,16}$", _("1–16 printable ASCII characters, no backslash."))],
        help_text=_("The AE title the modality or PACS calls with (DICOM PS3.5 AE: up to 16 characters)."),
    )
    host = models.CharField(_("host for results"), max_length=255, blank=True)
    port = models.PositiveIntegerField(_("port for results"), null=True, blank=True,
                                       validators=[MinValueValidator(1), MaxValueValidator(65535)])
    description = models.CharField(_("description"), max_length=200, blank=True)
    transport = models.CharField(_("transport for results"), max_length=16, choices=Transport.choices,
                                 default=Transport.C_STORE)
    stow_url = models.URLField(
        _("STOW-RS base URL"), max_length=255, blank=True,
        help_text=_("The DICOMweb base URL results are stored to (POST {url}/studies), without credentials."),
    )
    stow_user = models.CharField(_("STOW-RS user"), max_length=128, blank=True)
    stow_secret_env = models.CharField(
        _("STOW-RS secret variable"), max_length=128, blank=True,
        validators=[RegexValidator(r"^[A-Z_][A-Z0-9_]*$", _("An environment variable name (A-Z, 0-9, _)."))],
        help_text=_("The environment variable holding the password (with a user) or the bearer token; "
                    "the secret itself is never stored."),
    )
    query_retrieve = models.BooleanField(
        _("query/retrieve source"), default=False,
        help_text=_("Search this PACS for a patient's prior studies (C-FIND) and retrieve them (C-MOVE to the "
                    "portal's AE title, which the PACS must know). Needs the host and port."),
    )
    retrieve_method = models.CharField(
        _("retrieve method"), max_length=8, choices=RetrieveMethod.choices, default=RetrieveMethod.C_MOVE,
        help_text=_("C-MOVE: the PACS connects to the portal's DICOM service to send a study. C-GET: the portal "
                    "receives it on its own connection, for a PACS that cannot connect to the portal."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hospital", "ae_title"]
        verbose_name = _("DICOM peer")
        verbose_name_plural = _("DICOM peers")

    def __str__(self) -> str:
        return f"{self.ae_title} → {self.hospital.code}"


class DicomRoutingRule(models.Model):
    """Start a one-click segmentation of every received series that matches: modality, body part
    (both case-insensitive, empty = any) and a regular expression searched in the series description."""

    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="dicom_routing_rules")
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    body_part = models.CharField(_("body part"), max_length=64, blank=True)
    series_description_pattern = models.CharField(
        _("series description pattern"), max_length=200, blank=True,
        help_text=_("A Python regular expression searched in Series Description (0008,103E); empty = any."),
    )
    model = models.ForeignKey(SegmentationModel, on_delete=models.CASCADE, related_name="dicom_routing_rules")
    priority = models.IntegerField(_("priority"), default=100, help_text=_("Lower first."))
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hospital", "priority", "pk"]
        verbose_name = _("DICOM routing rule")
        verbose_name_plural = _("DICOM routing rules")

    def __str__(self) -> str:
        return f"{self.modality or '*'}/{self.body_part or '*'}/{self.series_description_pattern or '*'} → {self.model}"

    def clean(self) -> None:
        try:
            re.compile(self.series_description_pattern)
        except re.error as exc:
            raise ValidationError({"series_description_pattern": _("Not a valid regular expression: %(error)s") % {"error": exc}})


class PatientPseudonym(models.Model):
    """The pseudonym a patient gets in de-identified research exports; kept here so that the hospital
    can map it back, never written into an export's files."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, related_name="pseudonym")
    pseudonym = models.CharField(_("pseudonym"), max_length=32, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("patient pseudonym")
        verbose_name_plural = _("patient pseudonyms")

    def __str__(self) -> str:
        return self.pseudonym


class TrainingDataset(models.Model):
    """One version of a training dataset: a snapshot of a hospital's approved segmentations of one
    label set, kept in the hospital's own object storage and never sent anywhere.

    Under ``storage_prefix`` lie an MSD / nnU-Net folder (``imagesTr/<case>.nii.gz``,
    ``labelsTr/<case>.nii.gz``, ``dataset.json``) and ``manifest.json`` (every file's path, SHA-256 and
    size); ``manifest_sha256`` is the hex SHA-256 of the manifest's bytes. Case names are pseudonymous
    (``<name>_<NNN>``). ``label_statistics`` holds counts only, never images:
    ``{"cases": int, "voxels": {label value (str): voxel count}, "cases_with_label": {label value (str):
    cases}}`` (the shape of ``federation.fl.data.label_statistics``; value ``"0"`` is background).
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="training_datasets")
    name = models.SlugField(_("name"), max_length=64)
    version = models.PositiveIntegerField(_("version"), validators=[MinValueValidator(1)])
    label_set = models.ForeignKey(LabelSet, on_delete=models.PROTECT, related_name="training_datasets")
    case_count = models.PositiveIntegerField(_("cases"))
    label_statistics = models.JSONField(_("label statistics"), default=dict)
    manifest_sha256 = models.CharField(
        _("manifest SHA-256"), max_length=64, validators=[RegexValidator(r"^[0-9a-f]{64}$")])
    storage_prefix = models.CharField(max_length=255, help_text=_("Object-storage key prefix of the dataset's files."))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["hospital", "name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["hospital", "name", "version"], name="training_dataset_unique_version"),
        ]
        verbose_name = _("training dataset")
        verbose_name_plural = _("training datasets")

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class TrainingRun(models.Model):
    """One training of a network on a training dataset in the portal: its state, per-epoch progress
    and outcome live on this row.

    ``settings`` holds ``epochs``, ``learning_rate``, ``patch_size`` (k, j, i), ``augmentation``,
    ``seed``, ``patience`` (epochs without validation improvement before stopping), ``batch_size``,
    ``val_fraction`` and ``network_config`` (constructor overrides). ``progress`` is a list with one
    entry per finished epoch: ``{"epoch", "loss", "val_dice_per_label": {label: Dice}, "mean_dice",
    "duration_s"}``. ``split`` records the case ids of each side and their patient counts (the split
    is by patient pseudonym). ``checkpoint_key`` is the object-storage key of the latest epoch's
    resumable state.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    class Architecture(models.TextChoices):
        # The networks of annotation.ml.networks.ARCHITECTURES (a test keeps the two equal).
        UNET = "unet", "MONAI UNet"
        VNET = "vnet", "MONAI VNet"
        SEGRESNET = "segresnet", "MONAI SegResNet"
        DYNUNET = "dynunet", "MONAI DynUNet"
        ATTENTIONUNET = "attentionunet", "MONAI AttentionUnet"
        SWINUNETR = "swinunetr", "MONAI SwinUNETR"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    _USER_MODEL = settings.AUTH_USER_MODEL  # the field below named "settings" hides django.conf.settings

    dataset = models.ForeignKey(TrainingDataset, on_delete=models.PROTECT, related_name="training_runs")
    architecture = models.CharField(_("network"), max_length=32, choices=Architecture.choices)
    settings = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.JSONField(default=list, blank=True)
    progress_percent = models.FloatField(default=0.0)
    stage = models.CharField(max_length=64, blank=True)
    split = models.JSONField(default=dict, blank=True)
    checkpoint_key = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    device = models.CharField(max_length=32, blank=True)
    segmentation_model = models.ForeignKey(
        SegmentationModel, on_delete=models.SET_NULL, null=True, blank=True, related_name="training_runs")
    created_by = models.ForeignKey(_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Recovery bookkeeping, as InferenceRun's (annotation/services/run_recovery.py): a run whose worker
    # is lost goes back to queued and resumes from checkpoint_key.
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="training_run_status_beat")]
        verbose_name = _("training run")
        verbose_name_plural = _("training runs")

    def __str__(self) -> str:
        return f"TrainingRun {self.pk} {self.status}"
