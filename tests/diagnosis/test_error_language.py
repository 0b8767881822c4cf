"""Diagnosis errors speak the request's language: Chinese by default, English on Accept-Language: en."""

from __future__ import annotations

import pytest
from django.urls import reverse

from diagnosis import services
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def test_an_unknown_lung_rads_category_is_refused_in_the_request_language(doctor, small_ct_study):
    report = services.report_create_draft(user=doctor, study=small_ct_study)
    url = reverse("report-lung-rads", args=[report.pk])

    chinese = api_client(doctor).post(url, {"category": "5"}, format="json")
    english = api_client(doctor).post(url, {"category": "5"}, format="json", HTTP_ACCEPT_LANGUAGE="en")

    assert chinese.status_code == english.status_code == 400
    assert chinese.json()["error"]["code"] == english.json()["error"]["code"] == "bad_category"
    assert chinese.json()["error"]["message"].startswith("未知的 Lung-RADS 分类 '5'；请使用 ")
    assert english.json()["error"]["message"].startswith("Unknown Lung-RADS category '5'; use one of ")
