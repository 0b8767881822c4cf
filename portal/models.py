"""Hospitals (tenants), users with roles, and the audit log."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _


class Hospital(models.Model):
    """A tenant: every study, patient and staff member belongs to exactly one hospital."""

    class PatientDisplay(models.TextChoices):
        FULL_NAME = "full_name", _("Full name")
        INITIALS = "initials", _("Initials")
        MRN_ONLY = "mrn_only", _("Medical record number only")

    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=200)
    report_patient_display = models.CharField(
        _("patient shown on reports as"),
        max_length=16,
        choices=PatientDisplay.choices,
        default=PatientDisplay.FULL_NAME,
    )
    # Empty: settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD applies (portal.selectors.hospital_review_threshold).
    segment_confidence_review_threshold = models.FloatField(
        _("review threshold of segment confidence"),
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=_("Segmentations with a segment whose mean confidence is below this value (0 to 1) are "
                    "flagged for review. Empty: the portal's default."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("hospital")
        verbose_name_plural = _("hospitals")

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Role(models.TextChoices):
    PLATFORM_ADMIN = "platform_admin", _("Platform administrator")
    HOSPITAL_ADMIN = "hospital_admin", _("Hospital administrator")
    DOCTOR = "doctor", _("Doctor")
    ANNOTATOR = "annotator", _("Annotator")
    PATIENT = "patient", _("Patient")


STAFF_ROLES = (Role.HOSPITAL_ADMIN, Role.DOCTOR, Role.ANNOTATOR)
CLINICAL_ROLES = (Role.HOSPITAL_ADMIN, Role.DOCTOR)


class User(AbstractUser):
    """A portal user. Staff and patients belong to one hospital; platform admins to none."""

    role = models.CharField(_("role"), max_length=32, choices=Role.choices, default=Role.DOCTOR)
    hospital = models.ForeignKey(
        Hospital, on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    display_name = models.CharField(_("display name"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.display_name or self.username

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.PLATFORM_ADMIN or self.is_superuser

    @property
    def is_hospital_staff(self) -> bool:
        return self.role in STAFF_ROLES and self.hospital_id is not None

    @property
    def is_patient(self) -> bool:
        return self.role == Role.PATIENT


class AuditLog(models.Model):
    """One row for every view or download of patient data and every write.

    Holds who (actor), what (action and target), when, and from where (IP address, user agent).
    The detail never contains PHI: ids and counts only.
    """

    class Action(models.TextChoices):
        VIEW = "view", _("View")
        DOWNLOAD = "download", _("Download")
        CREATE = "create", _("Create")
        UPDATE = "update", _("Update")
        DELETE = "delete", _("Delete")
        LOGIN = "login", _("Log in")
        EXPORT = "export", _("Export")
        LOCKOUT = "lockout", _("Locked out")
        UNLOCK = "unlock", _("Unlocked")

    actor = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True)
    hospital = models.ForeignKey(Hospital, on_delete=models.SET_NULL, null=True, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    channel = models.CharField(max_length=16, default="web")  # web | api | cli | worker
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_id} {self.action} {self.target_type}:{self.target_id}"
