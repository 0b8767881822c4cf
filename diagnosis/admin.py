from django.contrib import admin

from .models import Measurement, Report


@admin.register(Measurement)
class MeasurementAdmin(admin.ModelAdmin):
    list_display = ("segmentation", "label", "label_name", "volume_ml", "max_diameter_mm", "component_count")


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ("pk", "study", "version", "status", "signed_by", "signed_at")
    list_filter = ("status",)
    readonly_fields = ("snapshot", "pdf_file", "pdf_sha256", "signed_by", "signed_at")
