from django.contrib import admin

from .models import (
    DicomPeer,
    DicomRoutingRule,
    InferenceRun,
    Label,
    LabelSet,
    Patient,
    PatientPseudonym,
    ReviewComment,
    Segmentation,
    SegmentationModel,
    Series,
    SourceFile,
    Study,
    StudyAssignment,
    TrainingDataset,
    UncertaintyScore,
)


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("mrn", "hospital", "sex", "user", "created_at")
    list_filter = ("hospital",)
    search_fields = ("mrn",)


class SeriesInline(admin.TabularInline):
    model = Series
    fields = ("series_number", "modality", "description", "source_format", "instance_count", "shape")
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("pk", "hospital", "patient", "study_date", "description", "created_at")
    list_filter = ("hospital",)
    inlines = [SeriesInline]


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ("pk", "study", "modality", "description", "source_format", "instance_count")
    list_filter = ("modality", "source_format")


@admin.register(SourceFile)
class SourceFileAdmin(admin.ModelAdmin):
    list_display = ("pk", "series", "sop_instance_uid", "instance_number", "size_bytes", "sha256")


@admin.register(SegmentationModel)
class SegmentationModelAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "modality", "body_part", "architecture", "is_active", "hospital")
    list_filter = ("architecture", "modality", "is_active")


@admin.register(Segmentation)
class SegmentationAdmin(admin.ModelAdmin):
    list_display = ("pk", "series", "name", "version", "root", "is_current", "tool", "review_status", "source", "model",
                    "created_at")
    list_filter = ("source", "review_status", "is_current")


@admin.register(InferenceRun)
class InferenceRunAdmin(admin.ModelAdmin):
    list_display = ("pk", "series", "model", "status", "progress_percent", "stage", "device", "created_at")
    list_filter = ("status",)


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0


@admin.register(LabelSet)
class LabelSetAdmin(admin.ModelAdmin):
    list_display = ("pk", "hospital", "project", "name", "allow_overlap")
    list_filter = ("hospital",)
    inlines = [LabelInline]


@admin.register(StudyAssignment)
class StudyAssignmentAdmin(admin.ModelAdmin):
    list_display = ("pk", "study", "annotator", "status", "review_only", "created_at")
    list_filter = ("status",)


@admin.register(ReviewComment)
class ReviewCommentAdmin(admin.ModelAdmin):
    list_display = ("pk", "study", "segmentation", "author", "decision", "created_at")
    list_filter = ("decision",)


@admin.register(UncertaintyScore)
class UncertaintyScoreAdmin(admin.ModelAdmin):
    list_display = ("pk", "series", "model", "method", "score", "computed_at")
    list_filter = ("method",)


@admin.register(DicomPeer)
class DicomPeerAdmin(admin.ModelAdmin):
    list_display = ("ae_title", "hospital", "transport", "host", "port", "stow_url", "query_retrieve",
                    "retrieve_method", "is_active", "created_at")
    list_filter = ("hospital", "is_active", "transport", "query_retrieve")
    search_fields = ("ae_title",)


@admin.register(DicomRoutingRule)
class DicomRoutingRuleAdmin(admin.ModelAdmin):
    list_display = ("pk", "hospital", "modality", "body_part", "series_description_pattern", "model", "priority", "is_active")
    list_filter = ("hospital", "is_active")


@admin.register(PatientPseudonym)
class PatientPseudonymAdmin(admin.ModelAdmin):
    list_display = ("pseudonym", "patient", "created_at")
    search_fields = ("pseudonym",)
    readonly_fields = ("patient", "pseudonym", "created_at")


@admin.register(TrainingDataset)
class TrainingDatasetAdmin(admin.ModelAdmin):
    """Read-only: datasets are built by ``training_dataset_build``, never edited by hand."""

    list_display = ("name", "version", "hospital", "label_set", "case_count", "created_at")
    list_filter = ("hospital",)
    readonly_fields = ("hospital", "name", "version", "label_set", "case_count", "label_statistics",
                       "manifest_sha256", "storage_prefix", "created_by", "created_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
