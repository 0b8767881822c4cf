"""Admin: synonyms (added through the service, so they are checked against the graph and audited)."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from . import services
from .connection import graph_client
from .graph import store
from .models import Conversation, QuestionLog, Synonym


class SynonymAdminForm(forms.ModelForm):
    class Meta:
        model = Synonym
        fields = ("alias", "canonical", "label")

    def clean(self):
        data = super().clean()
        if data.get("canonical") and data.get("label"):
            if store.entity_properties(graph_client(), data["label"], data["canonical"]) is None:
                raise forms.ValidationError(_("The knowledge graph has no such entity."))
        return data


@admin.register(Synonym)
class SynonymAdmin(admin.ModelAdmin):
    form = SynonymAdminForm
    list_display = ("alias", "canonical", "label", "created_by", "created_at")
    list_filter = ("label",)
    search_fields = ("alias", "canonical")
    readonly_fields = ("created_by", "created_at")

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.synonym_create(actor=request.user, alias=obj.alias, canonical=obj.canonical, label=obj.label)
        obj.pk = created.pk

    def delete_model(self, request, obj):
        services.synonym_delete(actor=request.user, synonym=obj)


@admin.register(QuestionLog)
class QuestionLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "channel", "question_types", "answered", "corrected", "red_flag", "latency_ms")
    list_filter = ("channel", "answered", "red_flag")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "turns", "updated_at")
    readonly_fields = ("id", "owner", "context", "turns", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False
