from django.contrib import admin

from .models import (
    Conversation,
    ConversationMember,
    FollowUpPlan,
    Notification,
    PatientGroup,
    PlanItem,
    PlanOccurrence,
    Questionnaire,
    QuestionnaireAssignment,
)


class MemberInline(admin.TabularInline):
    model = ConversationMember
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    # Message text is not shown here: it is read in the conversation by its members only.
    list_display = ("id", "hospital", "patient", "kind", "last_message_at")
    list_filter = ("kind", "hospital")
    inlines = [MemberInline]
    raw_id_fields = ("patient", "created_by")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "kind", "created_at", "read_at")
    list_filter = ("kind",)


class PlanItemInline(admin.TabularInline):
    model = PlanItem
    extra = 0


@admin.register(FollowUpPlan)
class FollowUpPlanAdmin(admin.ModelAdmin):
    list_display = ("id", "patient", "title", "status", "created_at")
    inlines = [PlanItemInline]


@admin.register(PlanOccurrence)
class PlanOccurrenceAdmin(admin.ModelAdmin):
    list_display = ("id", "item", "due_date", "status", "reminded_at")
    list_filter = ("status",)


@admin.register(Questionnaire)
class QuestionnaireAdmin(admin.ModelAdmin):
    list_display = ("code", "version", "title", "hospital", "is_standard")


@admin.register(QuestionnaireAssignment)
class QuestionnaireAssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "questionnaire", "patient", "due_date", "status")
    list_filter = ("status",)


admin.site.register(PatientGroup)
