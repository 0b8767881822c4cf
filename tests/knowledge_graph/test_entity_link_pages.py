"""Pages that link report terms to the knowledge graph: the report page and the study page mark the
impression and the findings' kinds for the browser to link; the patient's report page links terms
itself, in plain words, and still shows the report when the graph cannot be reached."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from diagnosis import services as diagnosis_services
from diagnosis.models import Finding
from knowledge_graph import services as kg_services

pytestmark = pytest.mark.django_db

IMPRESSION = "左肺上叶实性肺结节，约 22 mm，肺癌待排，建议胸外科会诊。"


@pytest.fixture
def signed_report(doctor, small_ct_study):
    series = small_ct_study.series.get()
    diagnosis_services.finding_create(user=doctor, series=series, source=Finding.Source.MANUAL,
                                      centroid_voxel=[10, 40, 40], long_axis_mm=22.0, short_axis_mm=18.0,
                                      composition="solid")
    draft = diagnosis_services.report_create_draft(user=doctor, study=small_ct_study)
    diagnosis_services.report_update(user=doctor, report=draft, impression=IMPRESSION)
    return diagnosis_services.report_finalize(user=doctor, report=draft)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_patient_report_page_links_terms_in_plain_words(starter_graph, patient_user, signed_report):
    html = _client(patient_user).get(reverse("followup:my-reports")).content.decode()

    assert 'data-kg-name="肺结节"' in html and 'data-kg-name="肺癌"' in html and 'data-kg-name="胸外科"' in html
    assert html.count('data-kg-lay="1"') >= 3
    assert 'id="kg-panel"' in html and "build/kg.js" in html
    # The impression reads as written around the links.
    assert "左肺上叶实性" in html and "，约 22 mm，" in html


def test_patient_report_page_shows_the_report_without_links_when_the_graph_is_down(
    starter_graph, patient_user, signed_report, settings
):
    settings.NEO4J_URI = "bolt://127.0.0.1:9"  # nothing listens on the discard port
    kg_services.graph_clients_close()
    try:
        response = _client(patient_user).get(reverse("followup:my-reports"))
    finally:
        kg_services.graph_clients_close()
    html = response.content.decode()
    assert response.status_code == 200
    assert IMPRESSION in html and "data-kg-name" not in html


def test_report_page_marks_the_impression_and_the_finding_kinds_for_linking(starter_graph, doctor, signed_report):
    html = _client(doctor).get(reverse("diagnosis:report-detail", args=[signed_report.pk])).content.decode()

    assert 'id="report-impression" data-kg-text>' + IMPRESSION in html
    assert 'data-kg-term="肺结节"' in html
    assert 'id="kg-panel"' in html and '<script src="/jsi18n/?l=' in html


def test_study_page_has_its_own_terms_section(starter_graph, doctor, signed_report, small_ct_study):
    html = _client(doctor).get(reverse("annotation:study-detail", args=[small_ct_study.pk])).content.decode()

    assert 'id="kg-terms"' in html and 'data-kg-term="肺结节"' in html
    assert f"data-kg-text>{IMPRESSION}" in html


def test_patients_see_no_finding_kinds_on_a_staff_page_section(starter_graph, patient_user, signed_report):
    from diagnosis.selectors import finding_kind_terms

    assert finding_kind_terms(user=patient_user, study=signed_report.study) == []
