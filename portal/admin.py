from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import AuditLog, Hospital, User
from .services import audit_record


@admin.register(Hospital)
class HospitalAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "report_patient_display", "segment_confidence_review_threshold", "created_at")
    search_fields = ("code", "name")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "segment_confidence_review_threshold" in form.changed_data:
            # The review threshold decides which segmentations reach the review queue: every change is audited.
            audit_record(actor=request.user, action=AuditLog.Action.UPDATE, target_type="hospital", target_id=obj.pk,
                         hospital=obj, detail={"segment_confidence_review_threshold":
                                               obj.segment_confidence_review_threshold,
                                               "previous": form.initial.get("segment_confidence_review_threshold")})


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "display_name", "role", "hospital", "is_active")
    list_filter = ("role", "hospital", "is_active")
    fieldsets = (*BaseUserAdmin.fieldsets, ("Yixin", {"fields": ("role", "hospital", "display_name")}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, ("Yixin", {"fields": ("role", "hospital", "display_name")}))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Admin for append-only records (audit log, federation ledger): viewable, never added, edited or deleted."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor", "hospital", "action", "target_type", "target_id", "channel", "ip_address")
    list_filter = ("action", "channel", "target_type", "hospital")
    readonly_fields = [f.name for f in AuditLog._meta.fields]
