"""The follow-up API answers what its OpenAPI schema documents: responses made from real rows (through
the real services) validate against the generated schema, with no undocumented key, no documented
required key missing, and the documented types, formats and enums. Error answers match the one
error shape."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from followup import events, services
from followup.models import Message, PlanItem
from tests.helpers import api_client, api_schema, assert_matches_schema

pytestmark = pytest.mark.django_db

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
       b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82")
API = "/api/followup"


@pytest.fixture(scope="module")
def schema():
    return api_schema()


def check(schema, client, method: str, template: str, expected_status: int, **kwargs):
    """Call ``template`` (filled with ``kwargs['ids']``), assert the status and the body's schema."""
    ids = kwargs.pop("ids", {})
    response = getattr(client, method)(API + template.format(**ids), format=kwargs.pop("format", "json"), **kwargs)
    assert response.status_code == expected_status, response.content
    assert_matches_schema(schema, API + template, method, response)
    return response.json()


def test_the_message_component_lists_every_field_the_websocket_sends(schema, doctor, conversation):
    message = services.message_send(sender=doctor, conversation=conversation, body="两周后复查")

    documented = schema["components"]["schemas"]["FollowupMessage"]

    assert set(documented["properties"]) == set(events.message_payload(message))
    assert set(documented["required"]) == set(events.message_payload(message))
    page = schema["paths"][f"{API}/conversations/{{conversation_id}}/messages/"]["get"]["responses"]["200"]
    assert page["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FollowupMessagePage"}


def test_chat_responses_match_the_schema(schema, doctor, patient_user, other_patient_user, conversation):
    patient, staff = api_client(patient_user), api_client(doctor)
    ids = {"conversation_id": conversation.pk}
    services.message_send(sender=doctor, conversation=conversation, body="请按时服药")

    sent = check(schema, patient, "post", "/conversations/{conversation_id}/messages/", 201, ids=ids,
                 data={"body": "好的", "client_id": "c-1"})
    attached = check(schema, patient, "post", "/conversations/{conversation_id}/attachments/", 201, ids=ids,
                     data={"file": SimpleUploadedFile("片子.png", PNG, content_type="image/png")}, format="multipart")
    page = check(schema, staff, "get", "/conversations/{conversation_id}/messages/", 200, ids=ids)
    inbox = check(schema, staff, "get", "/conversations/", 200)
    detail = check(schema, staff, "get", "/conversations/{conversation_id}/", 200, ids=ids)
    receipt = check(schema, staff, "post", "/conversations/{conversation_id}/read/", 200, ids=ids,
                    data={"read_id": attached["id"]})
    refused = check(schema, api_client(other_patient_user), "get", "/conversations/{conversation_id}/", 404, ids=ids)
    invalid = check(schema, patient, "post", "/conversations/{conversation_id}/messages/", 400, ids=ids,
                    data={"link_type": "nothing"})

    assert [m["id"] for m in page["results"]][-2:] == [sent["id"], attached["id"]]
    assert page["results"][-1]["kind"] == Message.Kind.ATTACHMENT and page["results"][-1]["attachment"]["size_bytes"] == len(PNG)
    assert page["results"][0]["sender"]["role"] == "doctor"
    assert inbox["results"][0]["last_message"]["id"] == attached["id"] and inbox["unread_total"] == 2
    assert "unread_count" not in detail and receipt["last_read_id"] == attached["id"]
    assert refused["error"]["code"] == "not_found" and invalid["error"]["code"] == "invalid_input"


def test_plan_and_notification_responses_match_the_schema(schema, doctor, patient, patient_user):
    staff, own = api_client(doctor), api_client(patient_user)
    today = timezone.localdate()

    plan = check(schema, staff, "post", "/patients/{patient_id}/plans/", 201, ids={"patient_id": patient.pk},
                 data={"title": "肺结节随访"})
    check(schema, staff, "post", "/plans/{plan_id}/items/", 201, ids={"plan_id": plan["id"]},
          data={"kind": PlanItem.Kind.REEXAM, "title": "胸部CT复查", "modality": "CT", "interval_days": 14,
                "start_date": (today + dt.timedelta(days=2)).isoformat(), "grace_days": 3})
    with_items = check(schema, staff, "post", "/plans/{plan_id}/items/", 201, ids={"plan_id": plan["id"]},
                       data={"kind": PlanItem.Kind.MEDICATION, "title": "阿司匹林", "interval_days": 1,
                             "start_date": today.isoformat()})
    services.reminders_dispatch(today=today)

    mine = check(schema, own, "get", "/me/plan/", 200)
    notifications = check(schema, own, "get", "/notifications/", 200)
    read = check(schema, own, "post", "/notifications/{notification_id}/read/", 200,
                 ids={"notification_id": notifications["results"][0]["id"]})
    due_today = next(o for o in mine["upcoming"] if o["item"]["kind"] == PlanItem.Kind.MEDICATION)
    done = check(schema, own, "post", "/occurrences/{occurrence_id}/complete/", 200, ids={"occurrence_id": due_today["id"]})
    again = check(schema, own, "post", "/occurrences/{occurrence_id}/complete/", 409, ids={"occurrence_id": due_today["id"]})
    contact = check(schema, own, "put", "/me/contact/", 200, data={"phone": "+86 138 0000 0000", "sms_enabled": False})
    services.reminders_dispatch(today=today + dt.timedelta(days=6))  # the re-examination is overdue now
    plans = check(schema, staff, "get", "/patients/{patient_id}/plans/", 200, ids={"patient_id": patient.pk})
    attention = check(schema, staff, "get", "/attention/", 200)

    assert sorted(i["kind"] for i in with_items["items"]) == ["medication", "reexam"]
    assert {o["item"]["title"] for o in mine["upcoming"]} == {"胸部CT复查", "阿司匹林"}
    assert read["read"] and done["status"] == "done" and again["error"]["code"] == "already_done"
    assert contact == {"phone": "+86 138 0000 0000", "email_enabled": True, "sms_enabled": False}
    reexam = next(i for i in plans["results"][0]["items"] if i["kind"] == PlanItem.Kind.REEXAM)
    assert [o["status"] for o in reexam["occurrences"]] == ["overdue"]
    assert "overdue_reexam" in {r["code"] for r in attention["results"][0]["reasons"]}


def test_questionnaire_responses_match_the_schema(schema, doctor, patient, patient_user):
    staff, own = api_client(doctor), api_client(patient_user)
    listing = check(schema, staff, "get", "/questionnaires/", 200)
    phq9 = next(q for q in listing["results"] if q["code"] == "phq-9")
    qid = {"questionnaire_id": phq9["id"]}
    due = (timezone.localdate() + dt.timedelta(days=7)).isoformat()

    definition = check(schema, staff, "get", "/questionnaires/{questionnaire_id}/", 200, ids=qid)
    group = check(schema, staff, "post", "/groups/", 201, data={"name": "术后", "patient_ids": [patient.pk]})
    assigned = check(schema, staff, "post", "/questionnaires/{questionnaire_id}/assign/", 201, ids=qid,
                     data={"group_id": group["id"], "due_date": due})
    aid = {"assignment_id": assigned["results"][0]["id"]}
    todo = check(schema, own, "get", "/me/questionnaires/", 200)
    saved = check(schema, own, "patch", "/assignments/{assignment_id}/", 200, ids=aid, data={"answers": {"phq9_1": "3"}})
    answers = {f"phq9_{n}": "3" for n in range(1, 10)} | {"phq9_difficulty": "2"}
    submitted = check(schema, own, "post", "/assignments/{assignment_id}/submit/", 200, ids=aid, data={"answers": answers})
    resubmitted = check(schema, own, "post", "/assignments/{assignment_id}/submit/", 409, ids=aid, data={})
    detail = check(schema, staff, "get", "/assignments/{assignment_id}/", 200, ids=aid)
    cohort = check(schema, staff, "get", "/questionnaires/{questionnaire_id}/cohort/", 200, ids=qid)
    results = check(schema, staff, "get", "/patients/{patient_id}/results/", 200, ids={"patient_id": patient.pk})
    groups = check(schema, staff, "get", "/groups/", 200)
    patients = check(schema, staff, "get", "/patients/", 200)
    attention = check(schema, staff, "get", "/attention/", 200)
    forbidden = check(schema, own, "get", "/questionnaires/", 403)

    assert definition["question_count"] == len(definition["definition"]["items"])
    assert todo["results"][0]["score"] == {} and saved["status"] == "in_progress"
    assert submitted["score"]["total"] == 27 and submitted["score"]["band"] == "severe"
    assert resubmitted["error"]["code"] == "already_submitted" and detail["answers"] == answers
    assert cohort["band_counts"] == {"severe": 1} and results["series"]["phq-9"][0]["total"] == 27
    assert groups["results"] == [{"id": group["id"], "name": "术后", "size": 1}]
    assert [p["id"] for p in patients["results"]] == [patient.pk] and patients["results"][0]["has_account"]
    assert attention["results"][0]["reasons"][0]["code"] == "score"
    assert forbidden["error"]["code"] in {"permission_denied", "forbidden"}


def test_the_patients_records_match_the_schema(schema, doctor, patient_user, small_ct_study):
    from diagnosis import services as diagnosis_services

    draft = diagnosis_services.report_create_draft(user=doctor, study=small_ct_study)
    diagnosis_services.report_update(user=doctor, report=draft, impression="双肺未见明确结节。")
    report = diagnosis_services.report_finalize(user=doctor, report=draft)
    own = api_client(patient_user)

    reports = check(schema, own, "get", "/me/reports/", 200)
    detail = check(schema, own, "get", "/me/reports/{report_id}/", 200, ids={"report_id": report.pk})
    studies = check(schema, own, "get", "/me/studies/", 200)
    staff_only = check(schema, api_client(doctor), "get", "/me/reports/", 403)

    assert [r["id"] for r in reports["results"]] == [report.pk] and detail["impression"] == "双肺未见明确结节。"
    assert detail["signed_at"] is not None and detail["summary"]
    assert studies["results"][0]["id"] == small_ct_study.pk and studies["results"][0]["modalities"] == ["CT"]
    assert staff_only["error"]["code"] in {"permission_denied", "forbidden"}
