"""Follow-up: conversations and messages, notifications, follow-up plans and questionnaires.

A conversation belongs to one patient (``annotation.Patient``) of one hospital. Its members are the
patient's portal account and one or more staff members. Messages are append-only rows; the id is the
order, so "everything after the last id I saw" is one indexed query.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from annotation.models import Patient
from portal.models import Hospital


class Conversation(models.Model):
    """A chat about one patient: patient and doctor (direct) or several staff with the patient (care team)."""

    class Kind(models.TextChoices):
        DIRECT = "direct", _("Patient and doctor")
        CARE_TEAM = "care_team", _("Care team")

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="conversations")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="conversations")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.DIRECT)
    title = models.CharField(_("title"), max_length=200, blank=True)
    assistant_context = models.JSONField(default=dict, blank=True, help_text="Knowledge-graph QA context of the last turn.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-last_message_at", "-created_at"]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")

    def __str__(self) -> str:
        return f"Conversation {self.pk} ({self.kind})"


class ConversationMember(models.Model):
    """A user in a conversation, with how far they have received and read (message ids)."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversation_memberships")
    last_delivered_id = models.BigIntegerField(default=0)
    last_read_id = models.BigIntegerField(default=0)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "user"], name="member_unique_user")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.conversation_id}"


class Attachment(models.Model):
    """An image or PDF sent in a conversation, kept in object storage and served to members only."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="attachments")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    file = models.FileField(upload_to="followup/attachments/", max_length=255)
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Attachment {self.pk} ({self.content_type})"


class Message(models.Model):
    """One message. Stored before it is broadcast; never edited."""

    class Kind(models.TextChoices):
        TEXT = "text", _("Text")
        ATTACHMENT = "attachment", _("Attachment")
        LINK = "link", _("Link to a record")
        ASSISTANT = "assistant", _("Assistant")
        SYSTEM = "system", _("System")

    class LinkType(models.TextChoices):
        REPORT = "report", _("Report")
        STUDY = "study", _("Study")

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TEXT)
    body = models.TextField(blank=True)
    client_id = models.CharField(max_length=64, blank=True, help_text="Sender's id for idempotent retries.")
    attachment = models.ForeignKey(Attachment, on_delete=models.PROTECT, null=True, blank=True, related_name="messages")
    link_type = models.CharField(max_length=16, choices=LinkType.choices, blank=True)
    link_id = models.BigIntegerField(null=True, blank=True)
    to_assistant = models.BooleanField(default=False, help_text="A question for the knowledge-graph assistant.")
    meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["conversation", "id"]),
            models.Index(fields=["sender", "created_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "sender", "client_id"], condition=~models.Q(client_id=""),
                name="message_unique_client_id",
            )
        ]

    def __str__(self) -> str:
        return f"Message {self.pk} ({self.kind})"


class Notification(models.Model):
    """An in-app notification (also sent through the configured e-mail/SMS backends)."""

    class Kind(models.TextChoices):
        MESSAGE = "message", _("New message")
        REEXAM = "reexam", _("Re-examination due")
        MEDICATION = "medication", _("Medication reminder")
        QUESTIONNAIRE = "questionnaire", _("Questionnaire due")
        OVERDUE = "overdue", _("Overdue")
        HANDOVER = "handover", _("Assistant hand-over")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    title = models.CharField(max_length=200, help_text="The title in the portal's default language (e-mail, SMS).")
    title_msgid = models.CharField(
        max_length=200, blank=True,
        help_text="The English msgid of the title with named %(…)s parameters; empty for a title stored as written.")
    title_params = models.JSONField(default=dict, blank=True)
    body = models.CharField(max_length=500, blank=True)
    url = models.CharField(max_length=300, blank=True)
    dedupe_key = models.CharField(max_length=120, blank=True, help_text="Beat runs are idempotent on this key.")
    delivered_via = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "dedupe_key"], condition=~models.Q(dedupe_key=""),
                                    name="notification_unique_dedupe_key")
        ]

    def __str__(self) -> str:
        return f"Notification {self.pk} ({self.kind})"

    @property
    def display_title(self) -> str:
        """The title in the active language: the msgid translated and filled, else the stored title."""
        return notification_title(self.title_msgid, self.title_params) if self.title_msgid else self.title


def notification_title(msgid: str, params: dict | None) -> str:
    """Translate a notification title's msgid into the active language and fill its named parameters.

    A catalogue entry whose placeholders do not match the stored parameters falls back to the English.
    """
    from django.utils.translation import gettext

    try:
        return gettext(msgid) % (params or {})
    except (KeyError, TypeError, ValueError):
        return msgid % (params or {})


class ContactPreference(models.Model):
    """How a user wants reminders beyond the in-app notification (a mobile number for SMS)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="followup_contact")
    phone = models.CharField(_("mobile number"), max_length=32, blank=True)
    email_enabled = models.BooleanField(default=True)
    sms_enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"contact of {self.user_id}"


# --- questionnaires ---------------------------------------------------------------------------

class Questionnaire(models.Model):
    """A questionnaire definition (see :mod:`followup.questionnaires.definition` for the JSON form).

    ``hospital`` empty: a standard instrument shipped with the product (PHQ-9, GAD-7).
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, null=True, blank=True, related_name="questionnaires")
    code = models.SlugField(_("code"), max_length=64)
    version = models.PositiveIntegerField(default=1)
    title = models.CharField(_("title"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    definition = models.JSONField()
    is_standard = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code", "-version"]
        constraints = [models.UniqueConstraint(fields=["hospital", "code", "version"], name="questionnaire_unique_version")]
        verbose_name = _("questionnaire")
        verbose_name_plural = _("questionnaires")

    def __str__(self) -> str:
        return f"{self.code} v{self.version}"


class PatientGroup(models.Model):
    """A named group of patients of one hospital (a cohort) for group assignment and the cohort view."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="patient_groups")
    name = models.CharField(_("name"), max_length=200)
    patients = models.ManyToManyField(Patient, related_name="followup_groups", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["hospital", "name"], name="patient_group_unique_name")]

    def __str__(self) -> str:
        return self.name


class QuestionnaireAssignment(models.Model):
    """A questionnaire given to one patient with a due date; answers are autosaved until submitted."""

    class Status(models.TextChoices):
        ASSIGNED = "assigned", _("Assigned")
        IN_PROGRESS = "in_progress", _("In progress")
        COMPLETED = "completed", _("Completed")

    questionnaire = models.ForeignKey(Questionnaire, on_delete=models.PROTECT, related_name="assignments")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="questionnaire_assignments")
    group = models.ForeignKey(PatientGroup, on_delete=models.SET_NULL, null=True, blank=True, related_name="assignments")
    plan_item = models.ForeignKey("PlanItem", on_delete=models.SET_NULL, null=True, blank=True, related_name="assignments")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    due_date = models.DateField(_("due date"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ASSIGNED)
    answers = models.JSONField(default=dict, blank=True)
    score = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-due_date", "-pk"]
        indexes = [models.Index(fields=["patient", "status"])]

    def __str__(self) -> str:
        return f"Assignment {self.pk} ({self.status})"


# --- follow-up plans -----------------------------------------------------------------------------

class FollowUpPlan(models.Model):
    """A doctor's plan for one patient: re-examinations, medication reminders, questionnaires."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        CLOSED = "closed", _("Closed")

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="followup_plans")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="followup_plans")
    title = models.CharField(_("title"), max_length=200)
    notes = models.TextField(_("notes"), blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title


class PlanItem(models.Model):
    """One recurring task of a plan, due every ``interval_days`` from ``start_date`` (until ``end_date``)."""

    class Kind(models.TextChoices):
        REEXAM = "reexam", _("Re-examination")
        MEDICATION = "medication", _("Medication")
        QUESTIONNAIRE = "questionnaire", _("Questionnaire")

    plan = models.ForeignKey(FollowUpPlan, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    title = models.CharField(_("title"), max_length=200)
    instructions = models.CharField(_("instructions"), max_length=500, blank=True)
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    questionnaire = models.ForeignKey(Questionnaire, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    start_date = models.DateField(_("start date"))
    interval_days = models.PositiveIntegerField(_("every (days)"))
    end_date = models.DateField(_("end date"), null=True, blank=True)
    grace_days = models.PositiveIntegerField(_("overdue after (days)"), default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["plan", "start_date", "pk"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"


class PlanOccurrence(models.Model):
    """One due date of a plan item: pending until done; overdue when not done ``grace_days`` after it."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DONE = "done", _("Done")
        OVERDUE = "overdue", _("Overdue")

    item = models.ForeignKey(PlanItem, on_delete=models.CASCADE, related_name="occurrences")
    due_date = models.DateField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    reminded_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_date", "pk"]
        constraints = [models.UniqueConstraint(fields=["item", "due_date"], name="occurrence_unique_due_date")]

    def __str__(self) -> str:
        return f"{self.item_id} @ {self.due_date} ({self.status})"
