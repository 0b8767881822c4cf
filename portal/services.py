"""Writes for hospitals, users and the audit log."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from .middleware import current_request_context
from .models import AuditLog, Hospital, Role, User


def audit_record(
    *,
    actor: User | None,
    action: str,
    target_type: str,
    target_id: Any = "",
    hospital: Hospital | None = None,
    detail: dict | None = None,
    channel: str | None = None,
) -> AuditLog:
    """Append one audit row. ``detail`` must hold ids and counts only, never PHI."""
    context = current_request_context()
    if hospital is None and actor is not None and getattr(actor, "hospital_id", None):
        hospital = actor.hospital
    return AuditLog.objects.create(
        actor=actor if actor is not None and actor.pk else None,
        hospital=hospital,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        detail=detail or {},
        ip_address=context.ip_address if context else None,
        user_agent=context.user_agent if context else "",
        channel=channel or (context.channel if context else "cli"),
    )


@transaction.atomic
def hospital_create(*, code: str, name: str, report_patient_display: str = Hospital.PatientDisplay.FULL_NAME) -> Hospital:
    hospital = Hospital(code=code, name=name, report_patient_display=report_patient_display)
    hospital.full_clean()
    hospital.save()
    return hospital


@transaction.atomic
def hospital_review_threshold_set(*, user: User, hospital: Hospital, threshold) -> Hospital:
    """Set the segment-confidence threshold (0 to 1) under which ``hospital`` flags segmentations for
    review; ``None`` or ``""`` goes back to ``settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD``. Audited.

    Raises
    ------
    portal.api_errors.ServiceError
        ``forbidden`` (403) unless ``user`` is that hospital's administrator; ``bad_review_threshold``
        (400) for a value that is not a number from 0 to 1.
    """
    import math

    from .api_errors import ServiceError

    if user.role != Role.HOSPITAL_ADMIN or user.hospital_id is None or user.hospital_id != hospital.pk:
        raise ServiceError(_("Only this hospital's administrator may set its review threshold."),
                           code="forbidden", status_code=403)
    value = None
    if threshold is not None and str(threshold).strip() != "":
        try:
            value = float(str(threshold).strip())
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:  # also refuses NaN
            raise ServiceError(_("The review threshold must be a number from 0 to 1."), code="bad_review_threshold")
    hospital = Hospital.objects.select_for_update().get(pk=hospital.pk)
    previous = hospital.segment_confidence_review_threshold
    hospital.segment_confidence_review_threshold = value
    hospital.full_clean()
    hospital.save(update_fields=["segment_confidence_review_threshold"])
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="hospital", target_id=hospital.pk,
                 hospital=hospital, detail={"segment_confidence_review_threshold": value, "previous": previous})
    return hospital


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str | None,
    role: str,
    hospital: Hospital | None = None,
    display_name: str = "",
    email: str = "",
) -> User:
    """Create a user with a role. Staff and patients need a hospital; platform admins have none.

    Raises
    ------
    django.core.exceptions.ValidationError
        When the role and hospital do not fit together or a field is invalid.
    """
    from django.core.exceptions import ValidationError

    if role == Role.PLATFORM_ADMIN and hospital is not None:
        raise ValidationError({"hospital": _("A platform administrator belongs to no hospital.")})
    if role != Role.PLATFORM_ADMIN and hospital is None:
        raise ValidationError({"hospital": _("This role needs a hospital.")})
    user = User(
        username=username,
        role=role,
        hospital=hospital,
        display_name=display_name,
        email=email,
        is_staff=role == Role.PLATFORM_ADMIN,
        is_superuser=role == Role.PLATFORM_ADMIN,
    )
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    return user


# --- Accounts: lock-out after failed logins, and revoking tokens ------------------------------

def _user_by_username(username: str | None) -> User | None:
    if not username:
        return None
    return User.objects.filter(username=username).select_related("hospital").first()


def account_lockout_record(*, username: str | None) -> AuditLog:
    """Audit that django-axes locked an account (from the request's address) after failed logins.

    The user name is not written: a mistyped one may be a person's name. The target is the account's
    id when it exists.
    """
    from django.conf import settings

    user = _user_by_username(username)
    return audit_record(
        actor=None, action=AuditLog.Action.LOCKOUT, target_type="account", target_id=user.pk if user else "",
        hospital=user.hospital if user else None,
        detail={"known_account": user is not None, "failure_limit": settings.AXES_FAILURE_LIMIT},
    )


def account_unlock_record(*, username: str | None, failures: int, attempt_time) -> AuditLog | None:
    """Audit the end of a lock-out when django-axes deletes an attempt that had reached the limit.

    ``reason`` is ``cool_off`` when the attempt was older than the cool-off, else ``reset`` (an
    administrator's ``axes_reset`` or the admin page).
    """
    from django.conf import settings
    from django.utils import timezone

    if failures < settings.AXES_FAILURE_LIMIT:
        return None  # never locked: a successful login cleared a few failures
    cool_off = settings.AXES_COOLOFF_TIME
    expired = cool_off is not None and attempt_time is not None and attempt_time <= timezone.now() - cool_off
    user = _user_by_username(username)
    return audit_record(
        actor=None, action=AuditLog.Action.UNLOCK, target_type="account", target_id=user.pk if user else "",
        hospital=user.hospital if user else None,
        detail={"known_account": user is not None, "reason": "cool_off" if expired else "reset", "failures": failures},
    )


def user_tokens_revoke(*, user: User, reason: str) -> int:
    """Blacklist every unexpired refresh token of ``user``; return how many were revoked.

    Access tokens need no list: they carry a hash of the password hash (simplejwt's
    ``CHECK_REVOKE_TOKEN``) and are refused for inactive users.
    """
    from django.utils import timezone
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

    outstanding = list(
        OutstandingToken.objects.filter(user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True)
    )
    BlacklistedToken.objects.bulk_create([BlacklistedToken(token=t) for t in outstanding], ignore_conflicts=True)
    if outstanding:
        audit_record(actor=None, action=AuditLog.Action.UPDATE, target_type="user_tokens", target_id=user.pk,
                     hospital=user.hospital if user.hospital_id else None,
                     detail={"revoked": len(outstanding), "reason": reason})
    return len(outstanding)


def user_tokens_revoke_if_credentials_change(*, user: User, update_fields=None) -> int:
    """Before ``user`` is saved: revoke their tokens when the password changes or they are deactivated."""
    if user.pk is None:
        return 0
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return 0  # e.g. last_login at each login
    stored = User.objects.filter(pk=user.pk).values("password", "is_active").first()
    if stored is None:
        return 0
    if stored["password"] != user.password:
        return user_tokens_revoke(user=user, reason="password_changed")
    if stored["is_active"] and not user.is_active:
        return user_tokens_revoke(user=user, reason="deactivated")
    return 0
