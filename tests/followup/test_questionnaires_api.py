"""Questionnaires through the API: builder, assignment to a patient or a group, autosave and
resume, submission and scoring, results over time, cohort view, CSV export, FHIR import/export."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.utils import timezone

from followup import services
from followup.models import Notification, Questionnaire, QuestionnaireAssignment
from tests.followup.conftest import make_patient
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

DUE = (timezone.localdate() + dt.timedelta(days=7)).isoformat()
SLEEP = {
    "items": [
        {"link_id": "hours", "type": "number", "text": "每晚睡几小时？", "unit": "h", "min": 0, "max": 24, "required": True},
        {"link_id": "quality", "type": "likert", "text": "睡眠质量", "min": 1, "max": 5, "required": True},
        {"link_id": "pills", "type": "single_choice", "text": "服用安眠药吗？", "required": True,
         "options": [{"value": "no", "label": "否", "score": 0}, {"value": "yes", "label": "是", "score": 2}]},
        {"link_id": "which", "type": "text", "text": "哪种药？", "required": True,
         "enable_when": [{"question": "pills", "operator": "=", "answer": "yes"}]},
    ],
    "scoring": {"method": "sum", "items": ["quality", "pills"],
                "bands": [{"min": 0, "max": 3, "code": "good", "label": "好"},
                          {"min": 4, "max": 7, "code": "poor", "label": "差", "attention": True}]},
}


def phq9():
    return next(q for q in services.instruments_install() if q.code == "phq-9")


def test_a_doctor_builds_a_questionnaire_and_a_new_version_on_the_same_code(doctor):
    client = api_client(doctor)
    first = client.post("/api/followup/questionnaires/", {"code": "sleep", "title": "睡眠", "definition": SLEEP}, format="json")
    second = client.post("/api/followup/questionnaires/", {"code": "sleep", "title": "睡眠", "definition": SLEEP}, format="json")
    listing = client.get("/api/followup/questionnaires/").json()["results"]

    assert first.status_code == 201 and second.json()["version"] == 2
    assert {(q["code"], q["version"]) for q in listing} >= {("sleep", 1), ("sleep", 2), ("phq-9", 1), ("gad-7", 1)}


def test_an_invalid_definition_is_refused_with_its_place(doctor):
    bad = {"items": [{"link_id": "a", "type": "single_choice", "text": "?", "options": [{"value": "x"}]}]}
    response = api_client(doctor).post("/api/followup/questionnaires/", {"code": "bad", "title": "坏", "definition": bad},
                                       format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_definition"
    assert "items[0].options" in response.json()["error"]["message"]
    assert not Questionnaire.objects.filter(code="bad").exists()


def test_only_doctors_build_and_other_hospitals_do_not_see_it(doctor, annotator, other_doctor, patient_user):
    q = services.questionnaire_create(actor=doctor, code="sleep", title="睡眠", definition=SLEEP)
    assert api_client(annotator).post("/api/followup/questionnaires/", {"code": "x", "title": "x", "definition": SLEEP},
                                      format="json").status_code == 403
    assert api_client(patient_user).get("/api/followup/questionnaires/").status_code == 403
    assert api_client(other_doctor).get(f"/api/followup/questionnaires/{q.pk}/").status_code == 404
    assert api_client(other_doctor).post(f"/api/followup/questionnaires/{q.pk}/assign/",
                                         {"patient_ids": [], "due_date": DUE}, format="json").status_code == 404


def test_autosave_resume_submit_and_score(doctor, patient, patient_user):
    q = services.questionnaire_create(actor=doctor, code="sleep", title="睡眠", definition=SLEEP)
    assigned = api_client(doctor).post(f"/api/followup/questionnaires/{q.pk}/assign/",
                                       {"patient_ids": [patient.pk], "due_date": DUE}, format="json")
    assert assigned.status_code == 201
    aid = assigned.json()["results"][0]["id"]
    client = api_client(patient_user)

    client.patch(f"/api/followup/assignments/{aid}/", {"answers": {"hours": 6.5}}, format="json")
    client.patch(f"/api/followup/assignments/{aid}/", {"answers": {"pills": "yes"}}, format="json")
    resumed = client.get(f"/api/followup/assignments/{aid}/").json()
    assert resumed["answers"] == {"hours": 6.5, "pills": "yes"} and resumed["status"] == "in_progress"

    bad = client.patch(f"/api/followup/assignments/{aid}/", {"answers": {"hours": 30}}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_answers"
    assert QuestionnaireAssignment.objects.get(pk=aid).answers == {"hours": 6.5, "pills": "yes"}

    incomplete = client.post(f"/api/followup/assignments/{aid}/submit/", {"answers": {"quality": 4}}, format="json")
    assert incomplete.status_code == 400 and "which: 必填" in incomplete.json()["error"]["message"]

    done = client.post(f"/api/followup/assignments/{aid}/submit/", {"answers": {"which": "佐匹克隆"}}, format="json").json()
    assert done["status"] == "completed"
    assert done["score"]["total"] == 4 + 2 and done["score"]["band"] == "poor" and done["score"]["attention"]
    again = client.post(f"/api/followup/assignments/{aid}/submit/", {}, format="json")
    assert again.status_code == 409
    assert Notification.objects.filter(user=doctor, kind="questionnaire", title__contains=patient.mrn).exists()
    # The doctor cannot answer for the patient.
    assert api_client(doctor).patch(f"/api/followup/assignments/{aid}/", {"answers": {"hours": 1}},
                                    format="json").status_code == 403


def test_assign_to_a_group_and_see_the_cohort_and_csv(doctor, hospital, patient, other_patient):
    third = make_patient(hospital, "FU-3")
    client = api_client(doctor)
    group = client.post("/api/followup/groups/", {"name": "肺结节术后", "patient_ids": [patient.pk, other_patient.pk]},
                        format="json").json()
    q = phq9()
    rows = client.post(f"/api/followup/questionnaires/{q.pk}/assign/", {"group_id": group["id"], "due_date": DUE},
                       format="json").json()["results"]
    assert sorted(r["patient_id"] for r in rows) == sorted([patient.pk, other_patient.pk])
    client.post(f"/api/followup/questionnaires/{q.pk}/assign/", {"patient_ids": [third.pk], "due_date": DUE}, format="json")

    for assignment, value in zip(QuestionnaireAssignment.objects.filter(group_id=group["id"]).order_by("patient__mrn"), "12"):
        services.assignment_submit(user=assignment.patient.user, assignment=assignment,
                                   answers={f"phq9_{n}": value for n in range(1, 10)} | {"phq9_difficulty": "1"})

    cohort = client.get(f"/api/followup/questionnaires/{q.pk}/cohort/?group_id={group['id']}").json()
    assert cohort["band_counts"] == {"mild": 1, "moderately_severe": 1}
    assert sorted((p["mrn"], p["total"]) for p in cohort["patients"]) == [("FU-1", 9.0), ("FU-2", 18.0)]
    response = client.get(f"/api/followup/questionnaires/{q.pk}/results.csv")
    table = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert response["Content-Type"].startswith("text/csv")
    assert table[0][:8] == ["assignment_id", "patient_id", "mrn", "questionnaire", "version", "submitted_at", "total", "band"]
    assert table[0][8:] == [f"phq9_{n}" for n in range(1, 10)] + ["phq9_difficulty"]
    assert sorted((r[2], r[6], r[7], r[8]) for r in table[1:]) == [("FU-1", "9.0", "mild", "1"), ("FU-2", "18.0", "moderately_severe", "2")]


def test_results_over_time_for_the_chart(doctor, patient, patient_user):
    q = phq9()
    for value in "321":
        a = services.questionnaire_assign(actor=doctor, questionnaire=q, patients=[patient], due_date=timezone.localdate())[0]
        services.assignment_submit(user=patient_user, assignment=a, answers={f"phq9_{n}": value for n in range(1, 10)}
                                   | {"phq9_difficulty": "0"})
    series = api_client(doctor).get(f"/api/followup/patients/{patient.pk}/results/").json()["series"]
    assert [p["total"] for p in series["phq-9"]] == [27, 18, 9]
    assert [p["band"] for p in series["phq-9"]] == ["severe", "moderately_severe", "mild"]


def test_a_past_due_date_or_nobody_is_refused(doctor, patient):
    client = api_client(doctor)
    q = phq9()
    past = client.post(f"/api/followup/questionnaires/{q.pk}/assign/",
                       {"patient_ids": [patient.pk], "due_date": "2000-01-01"}, format="json")
    nobody = client.post(f"/api/followup/questionnaires/{q.pk}/assign/", {"due_date": DUE}, format="json")
    assert past.json()["error"]["code"] == "invalid_due_date" and nobody.json()["error"]["code"] == "no_patients"
    assert not QuestionnaireAssignment.objects.exists()


def test_fhir_export_and_import_through_the_api(doctor, patient, patient_user):
    client = api_client(doctor)
    q = services.questionnaire_create(actor=doctor, code="sleep", title="睡眠", definition=SLEEP)
    exported = client.get(f"/api/followup/questionnaires/{q.pk}/fhir/").json()
    assert exported["resourceType"] == "Questionnaire" and exported["name"] == "SLEEP"

    imported = client.post("/api/followup/questionnaires/import-fhir/", exported, format="json")
    assert imported.status_code == 201 and imported.json()["version"] == 2
    assert Questionnaire.objects.get(pk=imported.json()["id"]).definition == q.definition

    invalid = client.post("/api/followup/questionnaires/import-fhir/", {"resourceType": "Questionnaire", "item": 3},
                          format="json")
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_fhir"

    a = services.questionnaire_assign(actor=doctor, questionnaire=q, patients=[patient], due_date=timezone.localdate())[0]
    response = {"resourceType": "QuestionnaireResponse", "status": "completed", "item": [
        {"linkId": "hours", "answer": [{"valueDecimal": 7}]}, {"linkId": "quality", "answer": [{"valueInteger": 2}]},
        {"linkId": "pills", "answer": [{"valueCoding": {"code": "no"}}]}]}
    filled = api_client(patient_user).put(f"/api/followup/assignments/{a.pk}/fhir/", response, format="json").json()
    assert filled["status"] == "completed" and filled["score"]["total"] == 2 and filled["score"]["band"] == "good"
    out = client.get(f"/api/followup/assignments/{a.pk}/fhir/").json()
    assert out["resourceType"] == "QuestionnaireResponse" and out["status"] == "completed"
    assert out["subject"] == {"reference": f"Patient/{patient.pk}"}
    assert {i["linkId"] for i in out["item"]} == {"hours", "quality", "pills"}


def test_staff_pages_render(client, doctor, patient):
    services.instruments_install()
    client.force_login(doctor)
    q = Questionnaire.objects.get(code="phq-9")
    for url in ["/followup/", f"/followup/patients/{patient.pk}/", "/followup/questionnaires/",
                "/followup/questionnaires/new/", f"/followup/questionnaires/{q.pk}/cohort/", "/followup/conversations/"]:
        assert client.get(url).status_code == 200, url


def test_score_scales_give_each_instrument_its_own_range_and_bands(client, doctor, patient, patient_user):
    from followup import selectors

    instruments = {q.code: q for q in services.instruments_install()}
    for code, value in (("phq-9", "2"), ("gad-7", "1")):
        q = instruments[code]
        a = services.questionnaire_assign(actor=doctor, questionnaire=q, patients=[patient], due_date=timezone.localdate())[0]
        scored = q.definition["scoring"]["items"]
        answers = {i["link_id"]: (value if i["link_id"] in scored else "0") for i in q.definition["items"]
                   if i["type"] == "single_choice"}
        services.assignment_submit(user=patient_user, assignment=a, answers=answers)
    scales = selectors.score_scales(patient=patient)
    assert (scales["phq-9"]["min"], scales["phq-9"]["max"]) == (0, 27)
    assert (scales["gad-7"]["min"], scales["gad-7"]["max"]) == (0, 21)
    phq_bands = scales["phq-9"]["bands"]
    assert [b["code"] for b in phq_bands] == ["minimal", "mild", "moderate", "moderately_severe", "severe"]
    assert phq_bands[0]["min"] == 0 and phq_bands[-1]["max"] == 27
    english = selectors.score_scales(patient=patient, language="en")
    assert english["gad-7"]["bands"][0]["label"] != scales["gad-7"]["bands"][0]["label"]
    client.force_login(doctor)
    page = client.get(f"/followup/patients/{patient.pk}/").content.decode()
    assert 'id="results-scales"' in page and 'id="results-charts"' in page
