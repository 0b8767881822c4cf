"""Rows the knowledge-graph assistant keeps in the relational database.

The medical knowledge itself lives in the graph (Bolt); here are only what staff add (synonyms), the
per-user dialogue state of the REST API (conversations), and question statistics. A question's text
is never stored: it may contain a patient's name or story.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .qa.schema import Label


class EntityLabel(models.TextChoices):
    DISEASE = Label.DISEASE, _("Disease")
    SYMPTOM = Label.SYMPTOM, _("Symptom")
    DRUG = Label.DRUG, _("Drug")
    FOOD = Label.FOOD, _("Food")
    CHECK = Label.CHECK, _("Examination")
    DEPARTMENT = Label.DEPARTMENT, _("Department")
    DRUG_PRODUCT = Label.DRUG_PRODUCT, _("Drug product")
    PRODUCER = Label.PRODUCER, _("Producer")


class Synonym(models.Model):
    """Another name for a graph entity, recognised in questions (头疼 → 头痛)."""

    alias = models.CharField(_("synonym"), max_length=64)
    canonical = models.CharField(_("entity name"), max_length=200)
    label = models.CharField(_("entity type"), max_length=32, choices=EntityLabel.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="kg_synonyms"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["alias"]
        verbose_name = _("synonym")
        verbose_name_plural = _("synonyms")
        constraints = [models.UniqueConstraint(fields=["alias", "label"], name="kg_synonym_alias_label_unique")]

    def __str__(self) -> str:
        return f"{self.alias} → {self.canonical} ({self.label})"


class Conversation(models.Model):
    """The dialogue state of one user's question-and-answer session (entities of the last turn)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="kg_conversations")
    context = models.JSONField(default=dict, blank=True)
    turns = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")

    def __str__(self) -> str:
        return f"{self.id} ({self.turns} turns)"


class QuestionLog(models.Model):
    """Statistics of one answered question: types, entity names, latency. No question text, no user."""

    class Channel(models.TextChoices):
        API = "api", _("REST API")
        WEB = "web", _("Web page")
        CLI = "cli", _("Command line")
        CHAT = "chat", _("Follow-up chat")

    question_types = models.JSONField(default=list, blank=True)
    entities = models.JSONField(default=list, blank=True)  # [[name, label], …] from the graph's vocabulary
    answered = models.BooleanField(default=False)
    corrected = models.BooleanField(default=False)
    red_flag = models.BooleanField(default=False)
    latency_ms = models.FloatField(default=0.0)
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.API)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("question log")
        verbose_name_plural = _("question logs")

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {','.join(self.question_types) or '-'}"
