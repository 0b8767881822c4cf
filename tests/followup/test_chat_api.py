"""The chat's REST API and services: members only, paged history, search, unread counts, receipts,
attachments in object storage, links to the patient's own records, rate limit, the assistant, and
message text kept out of logs."""

from __future__ import annotations

import logging

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.utils import CaptureQueriesContext
from django.db import connection

from followup import services
from followup.models import Attachment, ConversationMember, Message, Notification
from portal.models import AuditLog, Role
from tests.factories import UserFactory
from tests.helpers import api_client, stored_keys

pytestmark = pytest.mark.django_db

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde"
       b"\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x9a\xa0\xa0\x00\x00\x00\x00IEND\xaeB`\x82")


def _send(user, conversation, *bodies):
    return [services.message_send(sender=user, conversation=conversation, body=b) for b in bodies]


def test_members_read_paged_history_in_order(doctor, patient_user, conversation):
    sent = _send(doctor, conversation, *[f"第{i}条" for i in range(7)])
    client = api_client(patient_user)

    newest = client.get(f"/api/followup/conversations/{conversation.pk}/messages/?limit=3").json()
    older = client.get(f"/api/followup/conversations/{conversation.pk}/messages/?limit=3&before_id={newest['results'][0]['id']}").json()
    after = client.get(f"/api/followup/conversations/{conversation.pk}/messages/?after_id={sent[1].pk}&limit=2").json()

    assert [m["body"] for m in newest["results"]] == ["第4条", "第5条", "第6条"] and newest["has_more"]
    assert [m["body"] for m in older["results"]] == ["第1条", "第2条", "第3条"]
    assert [m["id"] for m in after["results"]] == [sent[2].pk, sent[3].pk]
    assert AuditLog.objects.filter(actor=patient_user, target_type="conversation", target_id=str(conversation.pk)).exists()


def test_search_finds_messages_within_one_conversation_only(doctor, patient_user, conversation, other_conversation):
    _send(doctor, conversation, "请按时服用阿司匹林", "两周后复查CT", "阿司匹林饭后吃")
    _send(doctor, other_conversation, "阿司匹林不在这里")

    found = api_client(patient_user).get(f"/api/followup/conversations/{conversation.pk}/messages/?q=阿司匹林").json()

    assert [m["body"] for m in found["results"]] == ["请按时服用阿司匹林", "阿司匹林饭后吃"]


def test_inbox_counts_unread_until_read(doctor, patient_user, conversation, other_conversation):
    _send(patient_user, conversation, "一", "二", "三")
    inbox = api_client(doctor).get("/api/followup/conversations/").json()
    counts = {c["id"]: c["unread_count"] for c in inbox["results"]}
    assert counts == {conversation.pk: 3, other_conversation.pk: 0} and inbox["unread_total"] == 3

    last = Message.objects.filter(conversation=conversation).order_by("-id").first()
    marked = api_client(doctor).post(f"/api/followup/conversations/{conversation.pk}/read/", {"read_id": last.pk},
                                     format="json").json()
    again = api_client(doctor).get("/api/followup/conversations/").json()

    assert marked == {"last_delivered_id": last.pk, "last_read_id": last.pk}
    assert again["unread_total"] == 0
    # The sender's own messages never count as unread for them.
    assert api_client(patient_user).get("/api/followup/conversations/").json()["unread_total"] == 0


def test_the_inbox_query_count_does_not_grow_with_conversations(doctor, hospital):
    from tests.followup.conftest import make_patient
    from tests.factories import UserFactory

    def inbox_queries():
        with CaptureQueriesContext(connection) as ctx:
            assert api_client(doctor).get("/api/followup/conversations/").status_code == 200
        return len(ctx.captured_queries)

    def add_conversation(i):
        user = UserFactory(role="patient", hospital=hospital)
        conv = services.conversation_create(actor=doctor, patient=make_patient(hospital, f"Q-{i}", user), staff=[doctor])
        _send(user, conv, "你好")

    add_conversation(0)
    few = inbox_queries()
    for i in range(1, 6):
        add_conversation(i)
    assert inbox_queries() == few


def test_receipts_never_move_backwards(doctor, patient_user, conversation):
    a, b = _send(doctor, conversation, "一", "二")
    services.message_mark(user=patient_user, conversation=conversation, read_id=b.pk)
    member = services.message_mark(user=patient_user, conversation=conversation, read_id=a.pk, delivered_id=a.pk)
    assert (member.last_delivered_id, member.last_read_id) == (b.pk, b.pk)
    # An id beyond the last message is clamped to it.
    member = services.message_mark(user=patient_user, conversation=conversation, read_id=b.pk + 1000)
    assert member.last_read_id == b.pk


@pytest.mark.parametrize("who", ["other_patient_user", "other_doctor"])
def test_non_members_get_404_on_every_chat_endpoint(who, request, doctor, conversation):
    user = request.getfixturevalue(who)
    message = _send(doctor, conversation, "私密")[0]
    attachment_message = services.attachment_send(sender=doctor, conversation=conversation,
                                                  upload=SimpleUploadedFile("x.png", PNG, content_type="image/png"))
    client = api_client(user)
    base = f"/api/followup/conversations/{conversation.pk}"
    responses = {
        "detail": client.get(f"{base}/"),
        "messages": client.get(f"{base}/messages/"),
        "send": client.post(f"{base}/messages/", {"body": "闯入"}, format="json"),
        "read": client.post(f"{base}/read/", {"read_id": message.pk}, format="json"),
        "attach": client.post(f"{base}/attachments/", {"file": SimpleUploadedFile("y.png", PNG)}, format="multipart"),
        "assistant": client.post(f"{base}/assistant/", {"question": "感冒吃什么药"}, format="json"),
        "members": client.post(f"{base}/members/", {"user_id": user.pk}, format="json"),
        "download": client.get(f"/api/followup/attachments/{attachment_message.attachment_id}/"),
    }
    assert {k: r.status_code for k, r in responses.items()} == {k: 404 for k in responses}
    assert Message.objects.filter(conversation=conversation).count() == 2
    assert conversation.pk not in [c["id"] for c in client.get("/api/followup/conversations/").json()["results"]]


def test_attachments_are_stored_in_s3_and_read_by_members_only(doctor, patient_user, conversation):
    client = api_client(patient_user)
    before = stored_keys()

    response = client.post(f"/api/followup/conversations/{conversation.pk}/attachments/",
                           {"file": SimpleUploadedFile("拍的片子.png", PNG, content_type="image/png")}, format="multipart")

    assert response.status_code == 201, response.content
    payload = response.json()
    attachment = Attachment.objects.get(pk=payload["attachment"]["id"])
    new_keys = stored_keys() - before
    assert new_keys == {attachment.file.name} and attachment.file.name.startswith(f"followup/conversations/{conversation.pk}/")
    assert attachment.content_type == "image/png" and attachment.size_bytes == len(PNG)
    download = api_client(doctor).get(payload["attachment"]["url"])
    assert download.status_code == 200 and download.content == PNG and download["Content-Type"] == "image/png"
    assert AuditLog.objects.filter(actor=doctor, action="download", target_type="chat_attachment").exists()


def test_a_pdf_attachment_is_recognised_by_its_bytes(patient_user, conversation):
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    response = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/attachments/",
                                             {"file": SimpleUploadedFile("report.png", pdf)}, format="multipart")
    assert response.status_code == 201
    assert response.json()["attachment"]["content_type"] == "application/pdf"


@pytest.mark.parametrize("content,status,code", [
    (b"MZ\x90\x00 this is an executable", 415, "unsupported_attachment"),
    (b"<html><script>alert(1)</script></html>", 415, "unsupported_attachment"),
])
def test_attachments_of_other_types_are_refused_and_nothing_is_stored(content, status, code, patient_user, conversation):
    before = stored_keys()
    response = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/attachments/",
                                             {"file": SimpleUploadedFile("photo.png", content)}, format="multipart")
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert stored_keys() == before and not Attachment.objects.exists() and not Message.objects.exists()


def test_an_oversized_attachment_is_refused(settings, patient_user, conversation):
    settings.FOLLOWUP_ATTACHMENT_MAX_BYTES = 1024
    before = stored_keys()
    response = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/attachments/",
                                             {"file": SimpleUploadedFile("big.png", PNG + b"\0" * 2048)}, format="multipart")
    assert response.status_code == 413 and response.json()["error"]["code"] == "attachment_too_large"
    assert stored_keys() == before


def test_links_point_only_at_the_patients_own_final_records(doctor, patient_user, hospital, small_ct_study, small_ct_path):
    from diagnosis import services as diagnosis_services
    from tests.followup.conftest import make_patient

    from annotation.models import Patient

    conversation = services.conversation_create(actor=doctor, patient=Patient.objects.get(pk=small_ct_study.patient_id),
                                                staff=[doctor])

    draft = diagnosis_services.report_create_draft(user=doctor, study=small_ct_study)
    diagnosis_services.report_update(user=doctor, report=draft, impression="未见异常。")
    report = diagnosis_services.report_finalize(user=doctor, report=draft)
    url = f"/api/followup/conversations/{conversation.pk}/messages/"

    ok_report = api_client(doctor).post(url, {"link_type": "report", "link_id": report.pk}, format="json")
    ok_study = api_client(patient_user).post(url, {"link_type": "study", "link_id": small_ct_study.pk}, format="json")

    assert ok_report.status_code == 201 and ok_report.json()["link"] == {"type": "report", "id": report.pk}
    assert ok_study.status_code == 201 and ok_study.json()["kind"] == "link"
    # Another patient's study in the same hospital cannot be linked into this conversation.
    from annotation import services as annotation_services

    stranger = make_patient(hospital, "OTHER-MRN")
    result = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn=stranger.mrn,
                                              paths=[small_ct_path], modality="CT")
    foreign = api_client(doctor).post(url, {"link_type": "study", "link_id": result.studies[0].pk}, format="json")
    missing = api_client(doctor).post(url, {"link_type": "report", "link_id": 987654}, format="json")
    amendment = diagnosis_services.report_amend(user=doctor, report=report)
    draft_link = api_client(doctor).post(url, {"link_type": "report", "link_id": amendment.pk}, format="json")
    assert draft_link.status_code == 400 and draft_link.json()["error"]["code"] == "invalid_link"
    assert foreign.status_code == 400 and foreign.json()["error"]["code"] == "invalid_link"
    assert missing.status_code == 400
    assert Message.objects.filter(conversation=conversation).count() == 2


@pytest.mark.parametrize("body,code", [("", "empty_message"), ("   ", "empty_message"), ("字" * 4001, "invalid_input")])
def test_invalid_messages_are_refused(body, code, patient_user, conversation):
    response = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/messages/", {"body": body},
                                             format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert not Message.objects.exists()


def test_rate_limit_is_per_user(settings, doctor, patient_user, conversation):
    settings.FOLLOWUP_CHAT_RATE_LIMIT = (3, 60)
    client = api_client(patient_user)
    codes = [client.post(f"/api/followup/conversations/{conversation.pk}/messages/", {"body": f"{i}"},
                         format="json").status_code for i in range(4)]
    doctor_code = api_client(doctor).post(f"/api/followup/conversations/{conversation.pk}/messages/", {"body": "好的"},
                                          format="json").status_code
    assert codes == [201, 201, 201, 429] and doctor_code == 201


def test_message_text_never_reaches_the_logs_or_the_audit_trail(caplog, doctor, patient_user, conversation):
    secret = "我的HIV检测结果是阳性"
    caplog.set_level(logging.DEBUG)
    api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/messages/", {"body": secret}, format="json")
    api_client(doctor).get(f"/api/followup/conversations/{conversation.pk}/messages/?q=HIV")
    assert Message.objects.filter(body=secret).exists()
    assert secret not in caplog.text and "HIV" not in caplog.text
    assert not any(secret in str(row.detail) for row in AuditLog.objects.all())
    stored = Message.objects.get(body=secret)
    assert AuditLog.objects.filter(actor=patient_user, action="create", target_type="chat_message",
                                   target_id=str(stored.pk)).exists()


def test_care_team_conversation_with_several_staff(doctor, nurse, annotator, patient, patient_user, other_doctor):
    from followup.models import Conversation

    conversation = services.conversation_create(actor=doctor, patient=patient, staff=[doctor, nurse],
                                                kind=Conversation.Kind.CARE_TEAM, title="术后随访小组")
    second_doctor = UserFactory(role=Role.DOCTOR, hospital=doctor.hospital)
    added = api_client(doctor).post(f"/api/followup/conversations/{conversation.pk}/members/", {"user_id": second_doctor.pk},
                                    format="json")
    annotator_added = api_client(doctor).post(f"/api/followup/conversations/{conversation.pk}/members/",
                                              {"user_id": annotator.pk}, format="json")
    foreign = api_client(doctor).post(f"/api/followup/conversations/{conversation.pk}/members/",
                                      {"user_id": other_doctor.pk}, format="json")
    by_patient = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/members/",
                                               {"user_id": annotator.pk}, format="json")

    assert added.status_code == 201
    assert sorted(m["user_id"] for m in added.json()["members"]) == sorted([doctor.pk, nurse.pk, second_doctor.pk, patient_user.pk])
    # Conversations are patient contact: annotators never join (docs/permissions.md).
    assert annotator_added.status_code == 400 and annotator_added.json()["error"]["code"] == "not_clinician"
    assert foreign.status_code == 400 and foreign.json()["error"]["code"] == "wrong_hospital"
    assert by_patient.status_code == 403


def test_conversation_creation_rules(doctor, other_doctor, patient, patient_user, hospital):
    from tests.followup.conftest import make_patient

    client = api_client(doctor)
    created = client.post("/api/followup/conversations/", {"patient_id": patient.pk, "staff_ids": [doctor.pk]}, format="json")
    two_in_direct = client.post("/api/followup/conversations/", {"patient_id": patient.pk, "staff_ids": [doctor.pk, other_doctor.pk]}, format="json")
    no_account = client.post("/api/followup/conversations/", {"patient_id": make_patient(hospital, "NOACC").pk,
                                                               "staff_ids": [doctor.pk]}, format="json")
    foreign_patient = api_client(other_doctor).post("/api/followup/conversations/",
                                                    {"patient_id": patient.pk, "staff_ids": [other_doctor.pk]}, format="json")
    by_patient = api_client(patient_user).post("/api/followup/conversations/", {"patient_id": patient.pk,
                                                                                "staff_ids": [doctor.pk]}, format="json")

    assert created.status_code == 201 and created.json()["kind"] == "direct"
    assert two_in_direct.status_code == 400 and two_in_direct.json()["error"]["code"] == "direct_needs_one"
    assert no_account.status_code == 400 and no_account.json()["error"]["code"] == "patient_without_account"
    assert foreign_patient.status_code == 404
    assert by_patient.status_code == 201 and by_patient.json()["id"] == created.json()["id"]  # the same one
    assert ConversationMember.objects.filter(conversation_id=by_patient.json()["id"]).count() == 2


def test_the_assistant_answers_in_the_chat_and_hands_over_to_the_doctor(settings, doctor, patient_user, conversation):
    from knowledge_graph import services as kg_services

    settings.NEO4J_DATABASE = "followup_kg_test"
    kg_services.graph_reset()
    kg_services.starter_load()
    kg_services.qa_engines_clear()
    try:
        response = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/assistant/",
                                                 {"question": "感冒吃什么药？", "client_id": "a-1"}, format="json")
    finally:
        kg_services.graph_reset()
        # FalkorDB serves Bolt from the Redis process that is also the channel layer: close the pool.
        kg_services.graph_clients_close()

    assert response.status_code == 201, response.content
    question, answer = response.json()["question"], response.json()["answer"]
    assert question["to_assistant"] and question["sender"]["id"] == patient_user.pk
    assert answer["kind"] == "assistant" and answer["sender"] is None
    assert "对乙酰氨基酚" in answer["body"] and "您的医生会看到这段对话" in answer["body"]
    assert answer["meta"]["answered"] and answer["meta"]["handover"] and answer["meta"]["question_id"] == question["id"]
    assert Notification.objects.filter(user=doctor, kind="handover").count() == 1


def test_the_assistant_says_it_did_not_understand_instead_of_reusing_the_last_disease(settings, doctor, patient_user,
                                                                                      conversation):
    from knowledge_graph import services as kg_services

    settings.NEO4J_DATABASE = "followup_kg_test"
    kg_services.graph_reset()
    kg_services.starter_load()
    kg_services.qa_engines_clear()
    try:
        services.assistant_ask(user=patient_user, conversation=conversation, question="糖尿病有哪些症状？")
        _, unknown = services.assistant_ask(user=patient_user, conversation=conversation, question="今天天气怎么样")
        _, follow = services.assistant_ask(user=patient_user, conversation=conversation, question="那它吃什么药？")
    finally:
        kg_services.graph_reset()
        kg_services.graph_clients_close()

    assert unknown.meta["understood"] is False and unknown.meta["answered"] is False
    assert "没有理解这个问题" in unknown.body and "您可以试着问" in unknown.body
    assert "多饮" not in unknown.body and unknown.meta["entities"] == []
    assert follow.meta["understood"] and "二甲双胍" in follow.body


def test_the_assistant_says_so_when_the_graph_is_down(settings, doctor, patient_user, conversation):
    settings.NEO4J_URI = "bolt://127.0.0.1:1"
    from knowledge_graph import services as kg_services

    kg_services.graph_clients_close()
    try:
        question, answer = services.assistant_ask(user=patient_user, conversation=conversation, question="感冒吃什么药？")
    finally:
        kg_services.graph_clients_close()
    assert answer.meta["unavailable"] and "暂时无法回答" in answer.body and "您的医生" in answer.body
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_unsigned_in_requests_are_refused(conversation):
    from rest_framework.test import APIClient

    response = APIClient().get(f"/api/followup/conversations/{conversation.pk}/messages/")
    assert response.status_code == 401


def test_jwt_clients_use_the_chat_api(doctor, patient_user, conversation):
    from rest_framework.test import APIClient
    from tests.factories import PASSWORD

    client = APIClient()
    token = client.post("/api/auth/token/", {"username": patient_user.username, "password": PASSWORD},
                        format="json").json()["access"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    sent = client.post(f"/api/followup/conversations/{conversation.pk}/messages/", {"body": "用手机发的"}, format="json")
    assert sent.status_code == 201 and sent.json()["sender"]["id"] == patient_user.pk


def test_the_assistant_answers_in_the_askers_language_with_the_hand_over_in_it_too(settings, doctor, patient_user,
                                                                                    conversation):
    """Issue 16: the chat's assistant answered only in Chinese. It now answers in the request's language
    (graph names stay as stored) and records that language with the shared answer."""
    from knowledge_graph import services as kg_services

    settings.NEO4J_DATABASE = "followup_kg_test"
    kg_services.graph_reset()
    kg_services.starter_load()
    kg_services.qa_engines_clear()
    try:
        english = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/assistant/",
                                                {"question": "感冒吃什么药？"}, format="json", HTTP_ACCEPT_LANGUAGE="en")
        chinese = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/assistant/",
                                                {"question": "感冒吃什么药？"}, format="json")
    finally:
        kg_services.graph_reset()
        kg_services.graph_clients_close()

    en_answer, zh_answer = english.json()["answer"], chinese.json()["answer"]
    assert en_answer["meta"]["language"] == "en" and zh_answer["meta"]["language"] == "zh-hans"
    assert "对乙酰氨基酚" in en_answer["body"] and "对乙酰氨基酚" in zh_answer["body"]  # graph names as stored
    assert "Your doctor sees this conversation" in en_answer["body"] and "您的医生" not in en_answer["body"]
    assert "您的医生会看到这段对话" in zh_answer["body"] and "Your doctor" not in zh_answer["body"]
    # The hand-over paragraph is the sentence of the product's own, with no Chinese in English.
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in en_answer["body"].split("\n\n")[-1])


def test_the_assistant_says_in_english_that_the_graph_is_down(settings, doctor, patient_user, conversation):
    settings.NEO4J_URI = "bolt://127.0.0.1:1"
    from knowledge_graph import services as kg_services

    kg_services.graph_clients_close()
    try:
        _, answer = services.assistant_ask(user=patient_user, conversation=conversation, question="感冒吃什么药？",
                                           language="en")
    finally:
        kg_services.graph_clients_close()
    assert answer.meta["unavailable"] and answer.meta["language"] == "en"
    assert answer.body.startswith("The knowledge-graph assistant cannot answer just now.")


def test_storing_a_message_takes_one_statement_on_postgresql_whatever_the_conversation_size(
        doctor, nurse, patient_user, patient):
    """Membership, the rate limit, the INSERT of the message, the conversation's ``last_message_at`` and
    the audit row: one statement on PostgreSQL (followup.services.chat_store), four on other databases
    (the ORM path): the per-message path of a busy chat cannot grow unnoticed."""
    direct = services.conversation_create(actor=doctor, patient=patient, staff=[doctor])
    team = services.conversation_create(actor=doctor, patient=patient, staff=[doctor, nurse], kind="care_team")
    services.message_send(sender=patient_user, conversation=direct, body="预热")

    def statements(conversation, body):
        with CaptureQueriesContext(connection) as ctx:
            message = services.message_send(sender=patient_user, conversation=conversation, body=body,
                                            client_id=body)
        sql = [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
        return message, sql

    message, direct_sql = statements(direct, "第一条")
    _team_message, team_sql = statements(team, "第二条")

    if connection.vendor == "postgresql":
        assert len(direct_sql) == 1 and len(team_sql) == 1
        assert direct_sql[0].lstrip().startswith("WITH members AS")
    else:
        assert len(direct_sql) == 4 and len(team_sql) == 4
        assert sum(s.startswith('INSERT INTO "followup_message"') for s in direct_sql) == 1
    assert Message.objects.get(pk=message.pk).body == "第一条"
    assert AuditLog.objects.filter(target_type="chat_message", target_id=str(message.pk)).count() == 1


def test_a_retried_client_id_returns_the_stored_message_and_stores_nothing_else(doctor, patient_user, conversation):
    first = services.message_send(sender=patient_user, conversation=conversation, body="重发", client_id="r-1")
    audits = AuditLog.objects.filter(target_type="chat_message").count()

    again = services.message_send(sender=patient_user, conversation=conversation, body="重发", client_id="r-1")

    assert again.pk == first.pk
    assert Message.objects.filter(conversation=conversation).count() == 1
    assert AuditLog.objects.filter(target_type="chat_message").count() == audits  # the failed try left no row
