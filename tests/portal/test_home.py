"""Where people land after logging in: staff on the study list, patients on their phone pages."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_patient_lands_on_their_follow_up_pages(patient_user):
    response = _logged_in(patient_user).get(reverse("home"))

    assert response.status_code == 302 and response["Location"] == reverse("followup:me")


def test_doctor_lands_on_the_study_list(doctor):
    response = _logged_in(doctor).get(reverse("home"))

    assert response.status_code == 302 and response["Location"] == reverse("annotation:study-list")


def test_login_goes_through_home(patient_user):
    patient_user.set_password("s3cret-pass")
    patient_user.save()

    response = Client().post(reverse("login"), {"username": patient_user.username, "password": "s3cret-pass"})

    assert response.status_code == 302 and response["Location"] == reverse("home")


def test_anonymous_visitor_is_sent_to_login():
    response = Client().get(reverse("home"))

    assert response.status_code == 302 and response["Location"] == reverse("login")
