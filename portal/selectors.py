"""Tenancy scoping shared by every app's selectors."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import STAFF_ROLES, Hospital, Role, User


def tenancy_scope(qs: QuerySet, user: User, *, hospital_field: str = "hospital", patient_user_field: str | None = None) -> QuerySet:
    """Restrict ``qs`` to the rows ``user`` may see under the portal's tenancy rules.

    - anonymous users: nothing;
    - platform admins: everything;
    - hospital staff (hospital admin, doctor, annotator) with a hospital: rows whose ``hospital_field``
      is their hospital;
    - patients: rows whose ``patient_user_field`` (a lookup path ending at a user, e.g.
      ``"patient__user"``) is themselves; nothing when the model has no such path (``None``);
    - anyone else (staff without a hospital): nothing.
    """
    if not user.is_authenticated:
        return qs.none()
    if user.is_platform_admin:
        return qs
    if user.role in STAFF_ROLES and user.hospital_id:
        return qs.filter(**{f"{hospital_field}_id": user.hospital_id})
    if user.role == Role.PATIENT and patient_user_field:
        return qs.filter(**{patient_user_field: user})
    return qs.none()


def hospital_review_threshold(hospital: Hospital | int | None) -> float:
    """Return the segment-confidence threshold (0 to 1) under which ``hospital`` flags a segmentation
    for review: the hospital's own value, else ``settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD``.

    Given a hospital id, the value is read from the database (one query), never from a cached row."""
    from django.conf import settings

    if isinstance(hospital, int):
        value = Hospital.objects.filter(pk=hospital).values_list("segment_confidence_review_threshold",
                                                                  flat=True).first()
    else:
        value = getattr(hospital, "segment_confidence_review_threshold", None)
    return float(settings.SEGMENT_CONFIDENCE_REVIEW_THRESHOLD if value is None else value)
