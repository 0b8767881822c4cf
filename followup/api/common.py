"""Shared pieces of the follow-up API: the patient-only permission, the error responses every view
documents, and the small schema components (a patient, a user) that several sections return.
Section modules import these; they hold no view of their own."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import BasePermission

from portal.api_errors import ErrorSerializer
from portal.models import Role


class IsPatient(BasePermission):
    message = "This is for patients."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_patient)


# Every view answers these through portal.api_errors: bad input 400, not allowed 403, another patient's or
# another hospital's id (or no such row) 404.
ERRORS = {400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer}
READ_ERRORS = {403: ErrorSerializer, 404: ErrorSerializer}

FHIR_RESOURCE = OpenApiResponse(OpenApiTypes.OBJECT, description="A FHIR R4 resource (JSON), `resourceType` first.")


class PatientBriefSerializer(serializers.Serializer):
    """A patient as the staff see one in lists (the medical record number and name)."""

    id = serializers.IntegerField()
    mrn = serializers.CharField(help_text="Medical record number in the hospital.")
    name = serializers.CharField()


class UserBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(help_text="Display name.")
    role = serializers.ChoiceField(choices=Role.choices)
