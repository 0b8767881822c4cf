"""Writes for hospitals, users and the audit log."""

from __future__ import annotations

from typing import Any

from django.db import transaction

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
        raise ValidationError({"hospital": "A platform administrator belongs to no hospital."})
    if role != Role.PLATFORM_ADMIN and hospital is None:
        raise ValidationError({"hospital": "This role needs a hospital."})
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
