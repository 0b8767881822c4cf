"""Measurements of segments and structured, versioned diagnostic reports."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.core.validators import MaxValueValidator, MinValueValidator
from django.utils.translation import pgettext_lazy

from annotation.models import Segmentation, Series, Study


class Measurement(models.Model):
    """The figures of one segment (label) of a segmentation, computed from voxel spacing.

    ``details`` holds the full measurement (per-slice areas, per-component figures) as produced by
    ``diagnosis.measurements.shape.SegmentMeasurement.to_dict``.
    """

    segmentation = models.ForeignKey(Segmentation, on_delete=models.CASCADE, related_name="measurements")
    label = models.PositiveIntegerField()
    label_name = models.CharField(max_length=100)
    voxel_count = models.BigIntegerField()
    volume_ml = models.FloatField()
    surface_area_mm2 = models.FloatField()
    max_diameter_mm = models.FloatField()
    axial_long_mm = models.FloatField()
    axial_short_mm = models.FloatField()
    component_count = models.PositiveIntegerField()
    mean_intensity = models.FloatField(null=True, blank=True)
    std_intensity = models.FloatField(null=True, blank=True)
    centroid_lps_mm = models.JSONField()
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["segmentation", "label"]
        constraints = [models.UniqueConstraint(fields=["segmentation", "label"], name="measurement_unique_label")]

    def __str__(self) -> str:
        return f"{self.label_name}: {self.volume_ml:.1f} mL"


class Report(models.Model):
    """A structured diagnostic report. Draft → final; a final report never changes: an amendment
    is a new version (``supersedes`` points at the one it amends)."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        FINAL = "final", _("Final")

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="reports")
    segmentation = models.ForeignKey(Segmentation, on_delete=models.PROTECT, null=True, blank=True, related_name="reports")
    version = models.PositiveIntegerField(default=1)
    supersedes = models.OneToOneField("self", on_delete=models.PROTECT, null=True, blank=True, related_name="amended_by")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    findings = models.TextField(_("findings"), blank=True)
    impression = models.TextField(_("impression"), blank=True)
    snapshot = models.JSONField(default=dict, blank=True, help_text="The structured content frozen at finalisation.")
    pdf_file = models.FileField(upload_to="reports/", max_length=255, blank=True)
    # The signed PDF in English, rendered from the frozen snapshot the first time an English reader
    # asks for it (the Chinese ``pdf_file`` is the record signed, with its hash).
    pdf_file_en = models.FileField(upload_to="reports/", max_length=255, blank=True)
    # A Lung-RADS category is only ever stored here by the doctor's confirmation (report_lung_rads_confirm).
    lung_rads_category = models.CharField(_("Lung-RADS category"), max_length=4, blank=True)
    lung_rads_rule = models.TextField(_("Lung-RADS rule"), blank=True, max_length=2000)
    lung_rads_confirmed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                               related_name="+")
    lung_rads_confirmed_at = models.DateTimeField(null=True, blank=True)
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    signed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    signed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["study", "-version"]
        constraints = [models.UniqueConstraint(fields=["study", "version"], name="report_unique_version")]

    def __str__(self) -> str:
        return f"Report {self.pk} v{self.version} ({self.status})"


class Finding(models.Model):
    """One thing seen on a study: a lung nodule, a lesion, … with where it is, how big, and who says so.

    Position: ``centroid_lps_mm`` is [x, y, z] in DICOM patient coordinates (LPS, mm) and
    ``centroid_voxel`` the nearest voxel index [k, j, i] on ``series``' grid. Size: ``long_axis_mm``
    and ``short_axis_mm`` are the RECIST 1.1 longest axial diameter and the longest diameter
    perpendicular to it on the same slice; ``volume_ml`` the segment's volume. A finding may point at
    the segment (``segment_label``) of a segmentation that outlines it.

    ``source`` says who proposed it (a detector with ``source_name`` and ``source_version``, a reader,
    an import, a doctor by hand); ``status`` is the doctor's decision: suggested → accepted, rejected
    or edited, with ``decided_by`` and ``decided_at``. Every change is audit-logged by the services.
    """

    class Kind(models.TextChoices):
        LUNG_NODULE = "lung_nodule", _("Lung nodule")
        LESION = "lesion", _("Lesion")
        NON_NODULE = "non_nodule", _("Non-nodule")
        OTHER = "other", _("Other")

    class Side(models.TextChoices):
        RIGHT = "right", _("Right")
        LEFT = "left", _("Left")

    class Composition(models.TextChoices):
        SOLID = "solid", _("Solid")
        PART_SOLID = "part_solid", _("Part-solid")
        GROUND_GLASS = "ground_glass", _("Ground-glass")

    class Source(models.TextChoices):
        DETECTOR = "detector", _("Detector")
        READER = "reader", _("Reader")
        CONSENSUS = "consensus", _("Readers' consensus")
        IMPORT = "import", _("Import")
        MANUAL = "manual", _("By hand")

    class Status(models.TextChoices):
        SUGGESTED = "suggested", _("Suggested")
        ACCEPTED = "accepted", _("Accepted")
        REJECTED = "rejected", pgettext_lazy("finding status", "Rejected")
        EDITED = "edited", _("Edited")

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="findings")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="findings")
    segmentation = models.ForeignKey(Segmentation, on_delete=models.SET_NULL, null=True, blank=True, related_name="findings")
    segment_label = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices, default=Kind.LUNG_NODULE)
    centroid_lps_mm = models.JSONField(help_text="[x, y, z] LPS mm")
    centroid_voxel = models.JSONField(help_text="[k, j, i] voxel index on the series grid")
    side = models.CharField(_("side"), max_length=8, choices=Side.choices, blank=True)
    region = models.CharField(_("lobe or region"), max_length=64, blank=True)
    long_axis_mm = models.FloatField(_("long axis (mm)"), null=True, blank=True, validators=[MinValueValidator(0.0)])
    short_axis_mm = models.FloatField(_("short axis (mm)"), null=True, blank=True, validators=[MinValueValidator(0.0)])
    volume_ml = models.FloatField(_("volume (mL)"), null=True, blank=True, validators=[MinValueValidator(0.0)])
    mean_hu = models.FloatField(null=True, blank=True)
    max_hu = models.FloatField(null=True, blank=True)
    composition = models.CharField(_("composition"), max_length=16, choices=Composition.choices, blank=True)
    solid_component_mm = models.FloatField(
        _("solid component (mm)"), null=True, blank=True, validators=[MinValueValidator(0.0)],
        help_text="Mean diameter of a part-solid nodule's solid component (Lung-RADS).",
    )
    confidence = models.FloatField(
        _("confidence"), null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    source_name = models.CharField(max_length=100, blank=True, help_text="detector name, reader id or import file kind")
    source_version = models.CharField(max_length=32, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.SUGGESTED)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(_("note"), blank=True, max_length=2000)
    characteristics = models.JSONField(default=dict, blank=True, help_text="reader characteristics (LIDC: subtlety, malignancy 1–5, …)")
    details = models.JSONField(default=dict, blank=True, help_text="detector features, reader agreement, import provenance")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["study", "-confidence", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(confidence__isnull=True) | models.Q(confidence__gte=0.0, confidence__lte=1.0),
                name="finding_confidence_range",
            ),
        ]
        verbose_name = _("finding")
        verbose_name_plural = _("findings")

    def __str__(self) -> str:
        return f"Finding {self.pk} {self.kind} ({self.status})"


class PostProcessingScript(models.Model):
    """A Python script a hospital admin uploaded; doctors of that hospital run it on studies in a sandbox
    (``diagnosis.postprocess.sandbox``). The code never changes: a new version is a new upload."""

    hospital = models.ForeignKey("portal.Hospital", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True, max_length=2000)
    code = models.TextField(help_text="The script's Python source (UTF-8).")
    sha256 = models.CharField(max_length=64)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hospital", "name", "-created_at"]
        verbose_name = _("post-processing script")
        verbose_name_plural = _("post-processing scripts")

    def __str__(self) -> str:
        return f"{self.name} ({self.sha256[:8]})"


class PostProcessingRun(models.Model):
    """One run of a post-processing script on a series of a study: its status, the figures and PNG plots
    the script returned (plots in the default storage), or the sandbox's error code and message."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    script = models.ForeignKey(PostProcessingScript, on_delete=models.PROTECT, related_name="runs")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="postprocessing_runs")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+")
    segmentation = models.ForeignKey(Segmentation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    figures = models.JSONField(default=dict, blank=True)
    plots = models.JSONField(default=list, blank=True,
                             help_text="[{name, key, size, sha256}]: the PNG plots in the default storage.")
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True, max_length=2000)
    error_detail = models.TextField(blank=True, help_text="The tail of the script's stderr.")
    duration_s = models.FloatField(null=True, blank=True)
    cpu_s = models.FloatField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True, help_text="When the broker took the job.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["study", "-created_at"]
        verbose_name = _("post-processing run")
        verbose_name_plural = _("post-processing runs")

    def __str__(self) -> str:
        return f"{self.script.name} on study {self.study_id}: {self.status}"

class StudyRegistration(models.Model):
    """A study registered to a prior study of the same patient, and the comparison made on it.

    ``transform`` holds the registration's ``matrix_lps_mm`` (row-major 4×4, mapping a point of the
    prior series' frame to the current series' frame, LPS mm) and the SimpleITK ``AffineTransform``
    parameters that rebuild it; ``quality`` the figures of
    :meth:`diagnosis.longitudinal.registration.Registration.quality`. ``segment_matches`` lists the
    organ segments paired by name with their figures at both time points.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="registrations")
    prior = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+")
    prior_series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+")
    method = models.CharField(max_length=64)
    transform = models.JSONField()
    quality = models.JSONField(default=dict)
    interval_days = models.IntegerField(null=True, blank=True, help_text="days from the prior to the study")
    segment_matches = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["study", "-prior__study_date", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["study", "prior"], name="registration_unique_prior"),
            models.CheckConstraint(condition=~models.Q(study=models.F("prior")), name="registration_prior_not_self"),
        ]
        verbose_name = _("registration to a prior")
        verbose_name_plural = _("registrations to priors")

    def __str__(self) -> str:
        return f"Study {self.study_id} ← prior {self.prior_id} ({self.method})"


class FindingMatch(models.Model):
    """A finding of a study paired with one of its prior (``matched``), or left alone: a current finding
    with no prior is ``new``, a prior finding with no current one ``resolved``.

    ``origin`` says whether the matching rule made it (``auto``) or the doctor did (``manual``, with
    ``linked_by`` and ``linked_at``); a manual row survives a new comparison.
    """

    class Status(models.TextChoices):
        MATCHED = "matched", _("Matched")
        NEW = "new", _("New")
        RESOLVED = "resolved", _("Resolved")

    class Origin(models.TextChoices):
        AUTO = "auto", _("By the matching rule")
        MANUAL = "manual", _("By the doctor")

    registration = models.ForeignKey(StudyRegistration, on_delete=models.CASCADE, related_name="matches")
    prior_finding = models.ForeignKey(Finding, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    finding = models.ForeignKey(Finding, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.AUTO)
    distance_mm = models.FloatField(null=True, blank=True, help_text="registered centroid distance")
    overlap = models.FloatField(null=True, blank=True, help_text="IoU of the segments after registration")
    linked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+")
    linked_at = models.DateTimeField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registration", "status", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(status="matched", prior_finding__isnull=False, finding__isnull=False)
                           | models.Q(status="new", prior_finding__isnull=True, finding__isnull=False)
                           | models.Q(status="resolved", prior_finding__isnull=False, finding__isnull=True)),
                name="finding_match_status_fits_pair",
            ),
            models.UniqueConstraint(fields=["registration", "finding"], name="finding_match_unique_finding"),
            models.UniqueConstraint(fields=["registration", "prior_finding"], name="finding_match_unique_prior"),
        ]
        verbose_name = _("finding match")
        verbose_name_plural = _("finding matches")

    def __str__(self) -> str:
        return f"{self.status}: {self.prior_finding_id} → {self.finding_id}"


class ResultSend(models.Model):
    """One delivery of a signed report's DICOM results (SEG, SR, Encapsulated PDF) to one PACS.

    Created on signature, one per destination peer of the hospital (or one ``no_destination`` row
    when the hospital has none); a Celery task sends it and retries with backoff. ``instances``
    lists the stored DICOM objects sent (built once, so a retry or resend sends the same SOP
    Instance UIDs): ``[{"kind": "seg"|"sr"|"pdf", "key", "sop_class_uid", "sop_instance_uid"}]``.
    ``last_status`` is the peer's DIMSE status when it answered with a failure (C-STORE), or for a
    STOW-RS peer the HTTP status of an error answer or the Failure Reason (0008,1197) of a failed instance.
    """

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        NO_DESTINATION = "no_destination", _("No destination configured")

    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="result_sends")
    peer = models.ForeignKey("annotation.DicomPeer", on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    destination = models.CharField(_("destination"), max_length=300, blank=True, help_text="AE@host:port when queued")
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    error_code = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_status = models.PositiveIntegerField(_("DICOM status"), null=True, blank=True)
    instances = models.JSONField(default=list, blank=True)
    retry_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["report", "pk"]
        verbose_name = _("result send")
        verbose_name_plural = _("result sends")

    def __str__(self) -> str:
        return f"Report {self.report_id} → {self.destination or '—'} ({self.state})"


class PriorRetrieve(models.Model):
    """A prior study of a patient retrieved from the hospital's PACS (the query/retrieve source peer).

    Queued by a clinician on the patient page; a Celery task moves the study (C-MOVE, Study Root) to the
    portal's AE title, and the DICOM service's C-STORE SCP files the instances as it files any study the
    PACS sends (or, for a peer whose retrieve method is C-GET, gets them on its own association and
    imports them the same way). The row keeps the final DIMSE ``last_status`` and the sub-operation counts
    (PS3.4 C.4.2.1.6); ``error_code`` says why a retrieve failed.
    """

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Retrieving")
        COMPLETED = "completed", _("Retrieved")
        PARTIAL = "partial", _("Retrieved with failures")
        FAILED = "failed", _("Failed")

    patient = models.ForeignKey("annotation.Patient", on_delete=models.CASCADE, related_name="prior_retrieves")
    peer = models.ForeignKey("annotation.DicomPeer", on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    source = models.CharField(_("source"), max_length=300, blank=True, help_text="AE@host:port when queued")
    study_instance_uid = models.CharField(_("Study Instance UID"), max_length=64)
    study_date = models.DateField(_("study date"), null=True, blank=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    completed = models.PositiveIntegerField(_("completed sub-operations"), default=0)
    failed = models.PositiveIntegerField(_("failed sub-operations"), default=0)
    warning = models.PositiveIntegerField(_("warning sub-operations"), default=0)
    last_status = models.PositiveIntegerField(_("DICOM status"), null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("prior retrieve")
        verbose_name_plural = _("prior retrieves")

    def __str__(self) -> str:
        return f"Patient {self.patient_id} ← {self.source or '—'} ({self.state})"


class RecistSelection(models.Model):
    """The doctor's RECIST 1.1 choice of lesions on a patient's baseline study (``study``).

    Its lesions (:class:`RecistLesion`) are findings of ``study``; the rules of the choice (at most 5
    targets, 2 per organ, measurable) are Eisenhauer et al., Eur J Cancer 45:228–247, 2009, §3–4 (checked
    by :func:`diagnosis.longitudinal.recist.validate_targets`). Later studies follow each lesion through
    the stored comparisons (:class:`FindingMatch`).
    """

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="recist_selection")
    chosen_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                  related_name="+")
    chosen_at = models.DateTimeField()
    non_target_responses = models.JSONField(
        _("non-target response per follow-up"), default=dict, blank=True,
        help_text="the doctor's non-target response per follow-up study: {study id: {response (CR, "
                  "non-CR/non-PD, PD, NE), by (user id), at (ISO time)}}; RECIST 1.1 §4.3.2")

    class Meta:
        ordering = ["study"]
        verbose_name = _("RECIST 1.1 selection")
        verbose_name_plural = _("RECIST 1.1 selections")

    def __str__(self) -> str:
        return f"RECIST selection of study {self.study_id}"


class RecistLesion(models.Model):
    """A finding of the baseline chosen as a RECIST 1.1 target or non-target lesion.

    ``organ`` is the organ it counts against for the 2-per-organ limit (both lungs are one organ, all
    lymph nodes another); a ``lymph_node`` is measured by its short axis (mm), any other lesion by its
    long axis (mm).
    """

    class Role(models.TextChoices):
        TARGET = "target", _("Target")
        NON_TARGET = "non_target", _("Non-target")

    selection = models.ForeignKey(RecistSelection, on_delete=models.CASCADE, related_name="lesions")
    finding = models.ForeignKey(Finding, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=16, choices=Role.choices)
    organ = models.CharField(_("organ"), max_length=64)
    lymph_node = models.BooleanField(_("lymph node"), default=False)

    class Meta:
        ordering = ["selection", "role", "pk"]
        constraints = [models.UniqueConstraint(fields=["selection", "finding"], name="recist_lesion_unique_finding")]
        verbose_name = _("RECIST 1.1 lesion")
        verbose_name_plural = _("RECIST 1.1 lesions")

    def __str__(self) -> str:
        return f"{self.role}: finding {self.finding_id} ({self.organ})"


class SimilarityWeights(models.Model):
    """A hospital's weights of the similar-cases score (:mod:`diagnosis.similarity`), set by its admin.

    One row per hospital; a hospital without a row uses :data:`diagnosis.similarity.DEFAULT_WEIGHTS`.
    Each weight is ≥ 0 and at least one is above zero (only their ratios matter).
    """

    hospital = models.OneToOneField("portal.Hospital", on_delete=models.CASCADE, related_name="similarity_weights")
    kinds = models.FloatField(_("finding kinds"), default=2.0, validators=[MinValueValidator(0.0)])
    size = models.FloatField(_("size"), default=2.0, validators=[MinValueValidator(0.0)])
    composition = models.FloatField(_("composition"), default=1.0, validators=[MinValueValidator(0.0)])
    location = models.FloatField(_("location (side and lobe)"), default=1.0, validators=[MinValueValidator(0.0)])
    measurements = models.FloatField(_("measured volumes"), default=1.0, validators=[MinValueValidator(0.0)])
    age = models.FloatField(_("age"), default=0.5, validators=[MinValueValidator(0.0)])
    sex = models.FloatField(_("sex"), default=0.5, validators=[MinValueValidator(0.0)])
    impression = models.FloatField(_("coded impression (Lung-RADS)"), default=2.0, validators=[MinValueValidator(0.0)])
    questionnaire = models.FloatField(_("questionnaire scores"), default=0.5, validators=[MinValueValidator(0.0)])
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("similar-cases weights")
        verbose_name_plural = _("similar-cases weights")

    def __str__(self) -> str:
        return f"Similarity weights of hospital {self.hospital_id}"


class ReferenceRange(models.Model):
    """A published normal range of one figure the platform measures, for a sex and an age band.

    Stored as data with its provenance (``source``, ``source_locator``, ``source_url``) so that a platform
    admin can correct or add rows in the Django admin. The five percentiles are what the study page's box
    plot draws; values below ``p2_5`` or above ``p97_5`` are flagged as outside the reference range.
    When the source gives a mean and SD only, the percentiles are derived under normality
    (:func:`diagnosis.measurements.reference.normal_percentiles`) and ``derivation`` says so.
    An empty ``sex`` applies to either sex; empty age bounds to any age (bounds in completed years, inclusive).
    """

    class Measure(models.TextChoices):
        LUNG_TOTAL_ML = "lung_total_volume_ml", _("Total lung volume (CT)")
        LUNG_RIGHT_ML = "lung_right_volume_ml", _("Right lung volume (CT)")
        LUNG_LEFT_ML = "lung_left_volume_ml", _("Left lung volume (CT)")
        LUNG_RIGHT_PCT = "lung_right_share_pct", _("Right lung share of total lung volume (CT)")
        LUNG_LEFT_PCT = "lung_left_share_pct", _("Left lung share of total lung volume (CT)")
        HIPPOCAMPUS_ML = "hippocampus_volume_ml", _("Hippocampal volume, one side (MR)")
        HIPPOCAMPUS_RIGHT_ML = "hippocampus_right_volume_ml", _("Right hippocampal volume (MR)")
        HIPPOCAMPUS_LEFT_ML = "hippocampus_left_volume_ml", _("Left hippocampal volume (MR)")

    class Sex(models.TextChoices):
        ANY = "", _("Either sex")
        MALE = "M", _("Male")
        FEMALE = "F", _("Female")

    class Derivation(models.TextChoices):
        PUBLISHED = "published", _("Percentiles as published")
        NORMAL = "normal_mean_sd", _("Derived from mean ± SD under normality")

    measure = models.CharField(_("measure"), max_length=40, choices=Measure.choices)
    unit = models.CharField(_("unit"), max_length=8, help_text="mL or %")
    sex = models.CharField(_("sex"), max_length=1, choices=Sex.choices, blank=True, default="")
    age_min_years = models.PositiveSmallIntegerField(_("youngest age (years)"), null=True, blank=True)
    age_max_years = models.PositiveSmallIntegerField(_("oldest age (years)"), null=True, blank=True)
    mean = models.FloatField(_("mean"), null=True, blank=True)
    sd = models.FloatField(_("standard deviation"), null=True, blank=True, validators=[MinValueValidator(0.0)])
    n = models.PositiveIntegerField(_("subjects"), null=True, blank=True)
    p2_5 = models.FloatField(_("2.5th percentile"))
    p25 = models.FloatField(_("25th percentile"))
    p50 = models.FloatField(_("median"))
    p75 = models.FloatField(_("75th percentile"))
    p97_5 = models.FloatField(_("97.5th percentile"))
    derivation = models.CharField(_("derivation"), max_length=16, choices=Derivation.choices)
    population = models.CharField(_("population"), max_length=300, blank=True)
    source = models.CharField(_("source"), max_length=400, help_text="Authors, title, journal, year, DOI")
    source_locator = models.CharField(_("where in the source"), max_length=200, help_text="table, figure or section")
    source_url = models.URLField(_("source URL"), max_length=300, blank=True)
    note = models.TextField(_("note"), blank=True, max_length=2000)
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["measure", "sex", "age_min_years", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(p2_5__lte=models.F("p25")) & models.Q(p25__lte=models.F("p50"))
                           & models.Q(p50__lte=models.F("p75")) & models.Q(p75__lte=models.F("p97_5"))),
                name="reference_range_percentiles_ordered",
            ),
            models.CheckConstraint(
                condition=(models.Q(age_min_years__isnull=True) | models.Q(age_max_years__isnull=True)
                           | models.Q(age_min_years__lte=models.F("age_max_years"))),
                name="reference_range_age_band_ordered",
            ),
        ]
        verbose_name = _("reference range")
        verbose_name_plural = _("reference ranges")

    def __str__(self) -> str:
        band = f"{self.age_min_years if self.age_min_years is not None else ''}–{self.age_max_years if self.age_max_years is not None else ''}"
        return f"{self.measure} {self.sex or '*'} {band}: {self.p2_5:.2f}–{self.p97_5:.2f} {self.unit}"
