from django.contrib import admin
from django.db import models
from django.utils.translation import gettext_lazy as _

from .models import (Measurement, PostProcessingRun, PostProcessingScript, PriorRetrieve, ReferenceRange, Report,
                     ResultSend)


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


@admin.register(PriorRetrieve)
class PriorRetrieveAdmin(admin.ModelAdmin):
    """Priors retrieved from the hospital's PACS (C-MOVE): state, sub-operation counts and the last error."""

    list_display = ("pk", "patient", "source", "state", "completed", "failed", "warning", "error_code", "last_status",
                    "created_at", "finished_at")
    list_filter = ("state", "error_code")
    readonly_fields = ("patient", "peer", "source", "study_instance_uid", "study_date", "description", "requested_by",
                       "state", "completed", "failed", "warning", "last_status", "error_code", "last_error",
                       "created_at", "finished_at")


@admin.register(ResultSend)
class ResultSendAdmin(admin.ModelAdmin):
    """The PACS deliveries of signed reports: state, attempts and the last error; "resend" queues again."""

    list_display = ("pk", "report", "destination", "state", "attempts", "error_code", "last_status", "sent_at",
                    "updated_at")
    list_filter = ("state", "error_code")
    readonly_fields = ("report", "peer", "destination", "state", "attempts", "error_code", "last_error",
                       "last_status", "instances", "retry_at", "sent_at", "created_at", "updated_at")
    actions = ["resend"]

    @admin.action(description=_("Resend to the PACS"))
    def resend(self, request, queryset):
        from portal.api_errors import ServiceError

        from .services import report_results_resend

        for report in {send.report for send in queryset.select_related("report", "report__study")}:
            try:
                report_results_resend(user=request.user, report=report)
            except ServiceError as exc:
                self.message_user(request, f"{report}: {exc}", level="error")


@admin.register(ReferenceRange)
class ReferenceRangeAdmin(admin.ModelAdmin):
    """The published reference ranges: platform admins correct or add rows, each with its source.

    Hospital staff never edit them: one table serves every hospital.
    """

    list_display = ("measure", "sex", "age_min_years", "age_max_years", "p2_5", "p50", "p97_5", "unit", "source_locator",
                    "is_active")
    list_filter = ("measure", "sex", "is_active", "derivation")
    search_fields = ("source", "population", "note")
    readonly_fields = ("updated_at",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def _platform_admin(self, request) -> bool:
        return bool(request.user.is_active and request.user.is_platform_admin)

    def has_module_permission(self, request) -> bool:
        return self._platform_admin(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._platform_admin(request)

    def has_add_permission(self, request) -> bool:
        return self._platform_admin(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._platform_admin(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._platform_admin(request)
