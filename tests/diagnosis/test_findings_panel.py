"""The viewer's findings panel on the study page: shown to hospital staff with what each may do, never
to patients, its strings in Chinese first."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _page(user, study) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("annotation:study-detail", args=[study.pk]), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200
    return response.content.decode()


def _config(html: str) -> dict:
    match = re.search(r'<script id="findings-config" type="application/json">(.*?)</script>', html, re.DOTALL)
    assert match, "the findings panel's configuration is missing"
    return json.loads(match.group(1))


def test_a_doctor_gets_the_panel_beside_the_images_with_decisions_and_the_detector(doctor, small_ct_study):
    html = _page(doctor, small_ct_study)
    side = html[html.index('<aside class="viewer-side">'):html.index("</aside>")]
    assert 'id="findings-panel"' in side and 'id="finding-list"' in side
    config = _config(html)
    assert config["canDecide"] is True
    assert config["detector"]["name"] == "ct-lung-nodule" and config["detector"]["modality"] == "CT"
    assert config["findingsUrl"] == reverse("study-findings", args=[small_ct_study.pk])
    assert config["acceptUrlTemplate"] == "/api/findings/{id}/accept/"
    assert config["rejectUrlTemplate"] == "/api/findings/{id}/reject/"
    assert "查找结节" in html and "暂无发现。" in html  # Find nodules, No findings yet.


def test_an_annotator_sees_the_findings_but_may_not_decide(annotator, small_ct_study):
    config = _config(_page(annotator, small_ct_study))
    assert config["canDecide"] is False


def test_a_patient_gets_no_findings_panel(patient_user, small_ct_study):
    client = Client()
    client.force_login(patient_user)
    response = client.get(reverse("annotation:study-detail", args=[small_ct_study.pk]))
    assert response.status_code in (200, 403, 404)
    assert 'id="findings-panel"' not in response.content.decode()
