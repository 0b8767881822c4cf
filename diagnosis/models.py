"""Measurements of segments and structured, versioned diagnostic reports."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from annotation.models import Segmentation, Study


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
