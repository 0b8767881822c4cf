"""portal.selectors.tenancy_scope: who sees which rows, on real models."""

from __future__ import annotations

import pytest

from annotation.models import Patient
from portal.models import Role, User
from portal.selectors import tenancy_scope
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def patients(hospital, other_doctor, patient_user):
    own = Patient.objects.create(hospital=hospital, mrn="T-1", user=patient_user)
    neighbour = Patient.objects.create(hospital=hospital, mrn="T-2")
    elsewhere = Patient.objects.create(hospital=other_doctor.hospital, mrn="T-3")
    return own, neighbour, elsewhere


def test_staff_see_their_hospital_and_patients_only_themselves(doctor, patient_user, patients):
    own, neighbour, elsewhere = patients
    qs = Patient.objects.all()

    assert set(tenancy_scope(qs, doctor, patient_user_field="user")) == {own, neighbour}
    assert list(tenancy_scope(qs, patient_user, patient_user_field="user")) == [own]
    # A model with no path to the patient's account shows a patient nothing.
    assert not tenancy_scope(qs, patient_user).exists()


def test_staff_without_a_hospital_see_nothing_and_platform_admins_everything(doctor, patients):
    User.objects.filter(pk=doctor.pk).update(hospital=None)
    doctor.refresh_from_db()
    admin = UserFactory(role=Role.PLATFORM_ADMIN)

    assert not tenancy_scope(Patient.objects.all(), doctor).exists()
    assert set(tenancy_scope(Patient.objects.all(), admin)) == set(patients)
