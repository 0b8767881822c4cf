"""DRF permission classes by role. Object-level scoping lives in each app's selectors."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import CLINICAL_ROLES, STAFF_ROLES, Role


class IsHospitalStaff(BasePermission):
    """Hospital administrators, doctors and annotators of a hospital, and platform admins."""

    message = "This action is for hospital staff."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        return user.is_platform_admin or (user.role in STAFF_ROLES and user.hospital_id is not None)


def is_clinician(user) -> bool:
    """Return True for doctors and hospital admins of a hospital (who sign reports) and platform admins."""
    if not user or not user.is_authenticated:
        return False
    return user.is_platform_admin or (user.role in CLINICAL_ROLES and user.hospital_id is not None)


class IsClinician(BasePermission):
    """Doctors and hospital administrators (who sign reports), and platform admins."""

    message = "This action is for doctors."

    def has_permission(self, request, view) -> bool:
        return is_clinician(request.user)


class IsClinicianOrReadOnly(BasePermission):
    """Reads for any signed-in user (selectors scope them); writes for clinicians only."""

    message = IsClinician.message

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return bool(request.user and request.user.is_authenticated)
        return is_clinician(request.user)


def is_clinician_or_patient(user) -> bool:
    """Return True for clinicians (see :func:`is_clinician`) and patients.

    Follow-up holds mental-health data (questionnaire answers and scores) and patient contact
    (conversations): annotators and anonymous users are refused (docs/permissions.md).
    """
    if not user or not user.is_authenticated:
        return False
    return is_clinician(user) or user.role == Role.PATIENT


class IsClinicianOrPatient(BasePermission):
    """Clinicians and patients (conversations, reminders); not annotators. Selectors scope the rows."""

    message = "This is for doctors and patients."

    def has_permission(self, request, view) -> bool:
        return is_clinician_or_patient(request.user)


class ClinicianReadsPatientWrites(BasePermission):
    """Reads for clinicians and patients; writes for patients only (filling in their questionnaires)."""

    message = "Only the patient fills in their questionnaire."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return is_clinician_or_patient(request.user)
        return bool(request.user and request.user.is_authenticated and request.user.role == Role.PATIENT)


def is_staff_of(user, hospital_id: int | None) -> bool:
    """Return True when ``user`` works at the hospital (platform admins work everywhere)."""
    if user.is_platform_admin:
        return True
    return user.role in STAFF_ROLES and user.hospital_id is not None and user.hospital_id == hospital_id


def is_patient(user) -> bool:
    return user.is_authenticated and user.role == Role.PATIENT
