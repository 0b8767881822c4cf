"""Fixtures of the follow-up tests: patients linked to their portal accounts, conversations."""

from __future__ import annotations

import pytest


def make_patient(hospital, mrn: str, user=None, name: str = ""):
    """Create a patient record through the annotation service and link the portal account."""
    from annotation import services

    patient = services.patient_get_or_create(hospital=hospital, mrn=mrn, name=name)
    if user is not None:
        patient.user = user
        patient.save(update_fields=["user"])
    return patient


@pytest.fixture
def patient(hospital, patient_user):
    return make_patient(hospital, "FU-1", patient_user, name="张三")


@pytest.fixture
def other_patient_user(hospital):
    from portal.models import Role
    from tests.factories import UserFactory

    return UserFactory(role=Role.PATIENT, hospital=hospital)


@pytest.fixture
def other_patient(hospital, other_patient_user):
    return make_patient(hospital, "FU-2", other_patient_user, name="李四")


@pytest.fixture
def nurse(hospital):
    from portal.models import Role
    from tests.factories import UserFactory

    return UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)


@pytest.fixture
def conversation(doctor, patient):
    from followup import services

    return services.conversation_create(actor=doctor, patient=patient, staff=[doctor])


@pytest.fixture
def other_conversation(doctor, other_patient):
    from followup import services

    return services.conversation_create(actor=doctor, patient=other_patient, staff=[doctor])
