from django.contrib import admin

from .models import Measurement, PostProcessingRun, PostProcessingScript, Report


@admin.register(Measurement)
class MeasurementAdmin(admin.ModelAdmin):
    list_display = ("segmentation", "label", "label_name", "volume_ml", "max_diameter_mm", "component_count")


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ("pk", "study", "version", "status", "signed_by", "signed_at")
    list_filter = ("status",)
    readonly_fields = ("snapshot", "pdf_file", "pdf_sha256", "signed_by", "signed_at")


@admin.register(PostProcessingScript)
class PostProcessingScriptAdmin(admin.ModelAdmin):
    list_display = ("name", "hospital", "is_active", "uploaded_by", "created_at")
    list_filter = ("is_active", "hospital")
    # The code is what the sha256 and past runs refer to: upload a new version instead of editing it.
    readonly_fields = ("code", "sha256", "uploaded_by", "created_at")


@admin.register(PostProcessingRun)
class PostProcessingRunAdmin(admin.ModelAdmin):
    list_display = ("pk", "script", "study", "status", "error_code", "duration_s", "created_at")
    list_filter = ("status", "error_code")
    readonly_fields = ("script", "study", "series", "segmentation", "requested_by", "figures", "plots", "error_code",
                       "error_message", "error_detail", "duration_s", "cpu_s", "attempts", "started_at", "finished_at")
