"""The patient's own records through the REST API (JWT) and the mobile pages: reports with a
plain-language summary, studies with key images, plan, questionnaires; and another patient's ids
tried on every patient endpoint."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Patient
from followup import services
from followup.models import PlanItem
from portal.models import AuditLog
from tests.factories import PASSWORD
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def jwt_client(user) -> APIClient:
    client = APIClient()
    token = client.post("/api/auth/token/", {"username": user.username, "password": PASSWORD}, format="json").json()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token['access']}")
    return client


@pytest.fixture
def signed_report(doctor, small_ct_study):
    from diagnosis import services as diagnosis_services

    draft = diagnosis_services.report_create_draft(user=doctor, study=small_ct_study)
    diagnosis_services.report_update(user=doctor, report=draft, impression="双肺未见明确结节。")
    return diagnosis_services.report_finalize(user=doctor, report=draft)


@pytest.fixture
def other_records(doctor, hospital, other_patient_user, small_ct_path):
    """Everything patient B has: a study, a signed report, a plan with a reminder, an assignment,
    a conversation with an attachment, a notification."""
    from annotation import services as annotation_services
    from diagnosis import services as diagnosis_services
    from tests.followup.conftest import make_patient

    patient_b = make_patient(hospital, "B-1", other_patient_user, name="李四")
    study = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="B-1", paths=[small_ct_path],
                                             modality="CT").studies[0]
    draft = diagnosis_services.report_create_draft(user=doctor, study=study)
    diagnosis_services.report_update(user=doctor, report=draft, impression="B 的报告")
    report = diagnosis_services.report_finalize(user=doctor, report=draft)
    plan = services.plan_create(actor=doctor, patient=patient_b, title="B 的计划")
    item = services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.MEDICATION, title="阿司匹林",
                                  start_date=timezone.localdate(), interval_days=1)
    phq9 = services.instruments_install()[0]
    assignment = services.questionnaire_assign(actor=doctor, questionnaire=phq9, patients=[patient_b],
                                               due_date=timezone.localdate() + dt.timedelta(days=7))[0]
    conversation = services.conversation_create(actor=doctor, patient=patient_b, staff=[doctor])
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.followup.test_chat_api import PNG

    attachment = services.attachment_send(sender=doctor, conversation=conversation,
                                          upload=SimpleUploadedFile("b.png", PNG)).attachment
    notification = services.notification_create(user_id=other_patient_user.pk, kind="medication", title="B 的提醒",
                                                send_external=False)
    return {"patient": patient_b, "study": study, "report": report, "plan": plan,
            "occurrence": item.occurrences.get(), "assignment": assignment, "conversation": conversation,
            "attachment": attachment, "notification": notification}


def test_a_patient_reads_their_reports_with_a_plain_summary_over_jwt(patient_user, signed_report):
    client = jwt_client(patient_user)

    listing = client.get("/api/followup/me/reports/").json()["results"]
    detail = client.get(f"/api/followup/me/reports/{signed_report.pk}/").json()
    pdf = client.get(f"/api/followup/me/reports/{signed_report.pk}/pdf/")

    assert [r["id"] for r in listing] == [signed_report.pk]
    assert detail["impression"] == "双肺未见明确结节。"
    summary = "\n".join(detail["summary"])
    assert "双肺未见明确结节。" in summary and "请在复诊时" in summary
    for m in detail["measurements"]:
        assert f"{m['volume_ml']:.1f} 毫升" in summary
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    assert AuditLog.objects.filter(actor=patient_user, action="download", target_type="report",
                                   target_id=str(signed_report.pk)).exists()


def test_a_draft_report_is_not_shown_to_the_patient(doctor, patient_user, small_ct_study):
    from diagnosis import services as diagnosis_services

    draft = diagnosis_services.report_create_draft(user=doctor, study=small_ct_study)
    client = api_client(patient_user)
    assert client.get("/api/followup/me/reports/").json()["results"] == []
    assert client.get(f"/api/followup/me/reports/{draft.pk}/").status_code == 404


def test_a_patient_sees_their_studies_with_key_images(patient_user, small_ct_study):
    from PIL import Image
    import io

    client = api_client(patient_user)
    studies = client.get("/api/followup/me/studies/").json()["results"]
    assert [s["id"] for s in studies] == [small_ct_study.pk] and studies[0]["modalities"] == ["CT"]
    images = {plane: client.get(url) for plane, url in studies[0]["key_images"].items()}
    assert {p: r.status_code for p, r in images.items()} == {"axial": 200, "coronal": 200, "sagittal": 200}
    axial = Image.open(io.BytesIO(images["axial"].content))
    assert axial.format == "PNG" and max(axial.size) == 384
    # Rendered once, then read from object storage.
    again = client.get(studies[0]["key_images"]["axial"])
    assert again.content == images["axial"].content
    assert client.get(f"/api/followup/me/studies/{small_ct_study.pk}/key-images/oblique.png").status_code == 404


def test_another_patients_ids_are_refused_on_every_patient_endpoint(patient, patient_user, other_records):
    """Patient A, signed in (JWT), tries each of patient B's ids: nothing is shown or changed."""
    r = other_records
    client = jwt_client(patient_user)
    probes = {
        "report": client.get(f"/api/followup/me/reports/{r['report'].pk}/"),
        "report_pdf": client.get(f"/api/followup/me/reports/{r['report'].pk}/pdf/"),
        "key_image": client.get(f"/api/followup/me/studies/{r['study'].pk}/key-images/axial.png"),
        "occurrence_done": client.post(f"/api/followup/occurrences/{r['occurrence'].pk}/complete/"),
        "assignment": client.get(f"/api/followup/assignments/{r['assignment'].pk}/"),
        "assignment_save": client.patch(f"/api/followup/assignments/{r['assignment'].pk}/",
                                        {"answers": {"phq9_1": "3"}}, format="json"),
        "assignment_submit": client.post(f"/api/followup/assignments/{r['assignment'].pk}/submit/", {}, format="json"),
        "assignment_fhir": client.get(f"/api/followup/assignments/{r['assignment'].pk}/fhir/"),
        "assignment_fhir_put": client.put(f"/api/followup/assignments/{r['assignment'].pk}/fhir/",
                                          {"resourceType": "QuestionnaireResponse", "status": "completed"}, format="json"),
        "conversation": client.get(f"/api/followup/conversations/{r['conversation'].pk}/"),
        "messages": client.get(f"/api/followup/conversations/{r['conversation'].pk}/messages/"),
        "send": client.post(f"/api/followup/conversations/{r['conversation'].pk}/messages/", {"body": "x"}, format="json"),
        "attachment": client.get(f"/api/followup/attachments/{r['attachment'].pk}/"),
        "notification_read": client.post(f"/api/followup/notifications/{r['notification'].pk}/read/"),
        # staff-only endpoints with B's patient id: a patient is not staff
        "results": client.get(f"/api/followup/patients/{r['patient'].pk}/results/"),
        "plans": client.get(f"/api/followup/patients/{r['patient'].pk}/plans/"),
        "plan_items": client.post(f"/api/followup/plans/{r['plan'].pk}/items/", {}, format="json"),
        "new_conversation": client.post("/api/followup/conversations/", {"patient_id": r["patient"].pk,
                                                                         "staff_ids": [r["conversation"].created_by_id]},
                                        format="json"),
    }
    expected = {k: 404 for k in probes}
    expected.update(results=403, plans=403, plan_items=403)
    assert {k: v.status_code for k, v in probes.items()} == expected

    # The lists hold A's records only.
    assert client.get("/api/followup/me/reports/").json()["results"] == []
    assert client.get("/api/followup/me/studies/").json()["results"] == []
    assert client.get("/api/followup/me/questionnaires/").json()["results"] == []
    assert client.get("/api/followup/me/plan/").json() == {"plans": [], "upcoming": []}
    assert client.get("/api/followup/conversations/").json()["results"] == []
    assert r["notification"].pk not in [n["id"] for n in client.get("/api/followup/notifications/").json()["results"]]

    # The pages too.
    client.force_login(patient_user)
    pages = {
        "fill": client.get(f"/followup/me/questionnaires/{r['assignment'].pk}/"),
        "chat": client.get(f"/followup/conversations/{r['conversation'].pk}/"),
        "done": client.post(f"/followup/occurrences/{r['occurrence'].pk}/done/"),
        "staff_page": client.get(f"/followup/patients/{r['patient'].pk}/"),
    }
    assert {k: v.status_code for k, v in pages.items()} == {"fill": 404, "chat": 404, "done": 404, "staff_page": 403}

    # Nothing of B's changed.
    r["assignment"].refresh_from_db()
    r["occurrence"].refresh_from_db()
    r["notification"].refresh_from_db()
    assert r["assignment"].answers == {} and r["assignment"].status == "assigned"
    assert r["occurrence"].status == "pending" and r["notification"].read_at is None
    assert r["conversation"].messages.count() == 1


def test_a_patient_account_without_a_record_gets_404(patient_user):
    client = api_client(patient_user)
    assert client.get("/api/followup/me/reports/").status_code == 404
    assert client.get("/api/followup/me/plan/").status_code == 404


def test_staff_cannot_use_the_patient_endpoints(doctor, signed_report):
    assert api_client(doctor).get("/api/followup/me/reports/").status_code == 403
    assert api_client(doctor).get(f"/api/followup/me/reports/{signed_report.pk}/").status_code == 403


def test_the_mobile_pages_render_for_the_patient(client, patient_user, signed_report, doctor):
    patient = Patient.objects.get(user=patient_user)
    plan = services.plan_create(actor=doctor, patient=patient, title="肺结节随访")
    services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.REEXAM, title="胸部CT复查",
                           start_date=timezone.localdate(), interval_days=14, modality="CT")
    client.force_login(patient_user)

    pages = {name: client.get(f"/followup/{path}") for name, path in [
        ("home", "me/"), ("reports", "me/reports/"), ("studies", "me/studies/"), ("plan", "me/plan/"),
        ("questionnaires", "me/questionnaires/"), ("conversations", "conversations/"), ("index", "")]}

    assert pages["index"].status_code == 302 and pages["index"]["Location"] == "/followup/me/"
    assert all(r.status_code == 200 for k, r in pages.items() if k != "index"), {k: r.status_code for k, r in pages.items()}
    assert "双肺未见明确结节。" in pages["reports"].content.decode()
    assert "胸部CT复查" in pages["plan"].content.decode()
    assert 'name="viewport"' in pages["home"].content.decode()
    assignment = services.questionnaire_assign(actor=doctor, questionnaire=services.instruments_install()[0],
                                               patients=[patient], due_date=timezone.localdate())[0]
    fill = client.get(f"/followup/me/questionnaires/{assignment.pk}/")
    assert fill.status_code == 200 and b'id="questionnaire-config"' in fill.content
    assert client.put("/api/followup/me/contact/", {"phone": "+86 139 0000 0000"},
                      content_type="application/json").json()["phone"] == "+86 139 0000 0000"
    assert client.put("/api/followup/me/contact/", {"phone": "call me"},
                      content_type="application/json").status_code == 400


def test_a_patient_starts_a_conversation_with_a_doctor_of_their_hospital(client, patient, patient_user, doctor,
                                                                        other_doctor):
    from followup.models import Conversation

    client.force_login(patient_user)
    refused = client.post("/followup/conversations/start/", {"doctor_id": other_doctor.pk})
    assert refused.status_code == 302 and refused["Location"] == "/followup/conversations/"
    assert not Conversation.objects.exists()
    started = client.post("/followup/conversations/start/", {"doctor_id": doctor.pk})
    conversation = Conversation.objects.get()
    assert started["Location"] == f"/followup/conversations/{conversation.pk}/"
    assert sorted(conversation.members.values_list("user_id", flat=True)) == sorted([doctor.pk, patient_user.pk])
    page = client.get(started["Location"])
    assert page.status_code == 200 and b'id="chat-config"' in page.content


def test_a_doctor_opens_a_care_team_conversation_from_the_dashboard(client, doctor, nurse, patient):
    from followup.models import Conversation

    client.force_login(doctor)
    response = client.post("/followup/conversations/start/", {"patient_id": patient.pk, "staff_ids": [nurse.pk],
                                                              "title": "术后"})
    conversation = Conversation.objects.get()
    assert response["Location"] == f"/followup/conversations/{conversation.pk}/"
    assert conversation.kind == "care_team" and conversation.members.count() == 3
