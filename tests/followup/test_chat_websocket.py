"""The chat over the websocket with the real Redis channel layer: live delivery, receipts, typing,
resume after a dropped connection, and refusal of non-members."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from followup import services
from followup.models import ConversationMember, Message
from followup.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)


def _communicator(user, conversation_id: int) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns),
                                         f"/ws/followup/conversations/{conversation_id}/")
    communicator.scope["user"] = user
    return communicator


async def _receive_type(communicator, kind: str, timeout: float = 30):
    """Return the next frame of ``kind``, skipping others (typing, receipts)."""
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] == kind:
            return frame


def test_doctor_and_patient_exchange_messages_live(doctor, patient_user, conversation):
    async def scenario():
        doc = _communicator(doctor, conversation.pk)
        pat = _communicator(patient_user, conversation.pk)
        assert (await doc.connect(timeout=10))[0] and (await pat.connect(timeout=10))[0]
        await doc.send_json_to({"type": "resume", "last_seen_id": 0})
        await pat.send_json_to({"type": "resume", "last_seen_id": 0})
        assert (await _receive_type(doc, "resumed"))["last_id"] == 0
        await _receive_type(pat, "resumed")

        await pat.send_json_to({"type": "typing", "is_typing": True})
        typing = await _receive_type(doc, "typing")
        await pat.send_json_to({"type": "send", "client_id": "c-1", "body": "医生您好，我咳嗽两周了。"})
        ack = await _receive_type(pat, "ack")
        received = await _receive_type(doc, "message")
        await doc.send_json_to({"type": "read", "up_to": received["message"]["id"]})
        receipt = await _receive_type(pat, "receipt")
        await doc.disconnect()
        await pat.disconnect()
        return typing, ack, received, receipt

    typing, ack, received, receipt = async_to_sync(scenario)()
    stored = Message.objects.get(pk=ack["message_id"])
    assert stored.body == "医生您好，我咳嗽两周了。" and stored.sender_id == patient_user.pk
    assert received["message"]["id"] == stored.pk and received["message"]["body"] == stored.body
    assert typing["user_id"] == patient_user.pk and typing["is_typing"] is True
    assert receipt == {"type": "receipt", "user_id": doctor.pk, "delivered_id": stored.pk, "read_id": stored.pk}
    assert ConversationMember.objects.get(conversation=conversation, user=doctor).last_read_id == stored.pk


def test_a_dropped_connection_resumes_without_losing_messages(doctor, patient_user, conversation):
    first = services.message_send(sender=doctor, conversation=conversation, body="第一条")

    async def scenario():
        pat = _communicator(patient_user, conversation.pk)
        assert (await pat.connect(timeout=10))[0]
        await pat.send_json_to({"type": "resume", "last_seen_id": 0})
        seen = [(await _receive_type(pat, "message"))["message"]["id"]]
        await _receive_type(pat, "resumed")
        # The patient's phone loses its connection; the doctor writes three messages meanwhile.
        await pat.disconnect()
        for text in ("第二条", "第三条", "第四条"):
            await database_sync_to_async(services.message_send)(sender=doctor, conversation=conversation, body=text)
        pat = _communicator(patient_user, conversation.pk)
        assert (await pat.connect(timeout=10))[0]
        await pat.send_json_to({"type": "resume", "last_seen_id": seen[-1]})
        while True:
            frame = await pat.receive_json_from(timeout=30)
            if frame["type"] == "resumed":
                break
            if frame["type"] == "message":
                seen.append(frame["message"]["id"])
        # And a live one after the resume arrives exactly once.
        await database_sync_to_async(services.message_send)(sender=doctor, conversation=conversation, body="第五条")
        seen.append((await _receive_type(pat, "message"))["message"]["id"])
        assert await pat.receive_nothing(timeout=0.3)
        await pat.disconnect()
        return seen

    seen = async_to_sync(scenario)()
    stored = list(Message.objects.filter(conversation=conversation).order_by("id").values_list("id", "body"))
    assert seen == [pk for pk, _ in stored]
    assert [body for _, body in stored] == ["第一条", "第二条", "第三条", "第四条", "第五条"]
    assert seen[0] == first.pk


def test_a_retried_send_with_the_same_client_id_is_stored_once(doctor, patient_user, conversation):
    async def scenario():
        pat = _communicator(patient_user, conversation.pk)
        assert (await pat.connect(timeout=10))[0]
        await pat.send_json_to({"type": "send", "client_id": "same", "body": "重发"})
        a = await _receive_type(pat, "ack")
        await pat.send_json_to({"type": "send", "client_id": "same", "body": "重发"})
        b = await _receive_type(pat, "ack")
        await pat.disconnect()
        return a, b

    a, b = async_to_sync(scenario)()
    assert a["message_id"] == b["message_id"]
    assert Message.objects.filter(conversation=conversation).count() == 1


@pytest.mark.parametrize("who", ["other_patient", "other_doctor", "anonymous"])
def test_non_members_cannot_join_a_conversation(who, other_patient_user, other_doctor, conversation):
    from django.contrib.auth.models import AnonymousUser

    user = {"other_patient": other_patient_user, "other_doctor": other_doctor, "anonymous": AnonymousUser()}[who]

    async def scenario():
        communicator = _communicator(user, conversation.pk)
        connected, code = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert not connected
    assert code == (4401 if who == "anonymous" else 4404)


def test_an_annotator_added_before_issue_12_cannot_join(annotator, conversation):
    """An annotator's membership stored before annotators were kept out gives no access any more."""
    ConversationMember.objects.create(conversation=conversation, user=annotator)

    async def scenario():
        communicator = _communicator(annotator, conversation.pk)
        connected, code = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert not connected and code == 4404


def test_a_missing_conversation_is_refused_like_a_foreign_one(patient_user):
    async def scenario():
        communicator = _communicator(patient_user, 999999)
        connected, code = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected, code

    assert async_to_sync(scenario)() == (False, 4404)


def test_bad_frames_get_an_error_and_store_nothing(patient_user, conversation):
    async def scenario():
        pat = _communicator(patient_user, conversation.pk)
        assert (await pat.connect(timeout=10))[0]
        frames = []
        for frame in ({"type": "send", "client_id": "x", "body": "   "}, {"type": "resume", "last_seen_id": "abc"},
                      {"type": "read", "up_to": -1}, {"type": "nonsense"}, ["not", "an", "object"]):
            await pat.send_json_to(frame)
            frames.append(await pat.receive_json_from(timeout=30))
        await pat.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    assert [f["type"] for f in frames] == ["error"] * 5
    assert [f["code"] for f in frames] == ["empty_message", "invalid_request", "invalid_request", "unknown_type",
                                           "invalid_request"]
    assert not Message.objects.filter(conversation=conversation).exists()


def test_the_rate_limit_refuses_over_the_websocket(settings, patient_user, conversation):
    settings.FOLLOWUP_CHAT_RATE_LIMIT = (2, 60)

    async def scenario():
        pat = _communicator(patient_user, conversation.pk)
        assert (await pat.connect(timeout=10))[0]
        replies = []
        for i in range(3):
            await pat.send_json_to({"type": "send", "client_id": f"r{i}", "body": f"第{i}条"})
            while True:
                frame = await pat.receive_json_from(timeout=30)
                if frame["type"] in ("ack", "error"):
                    replies.append(frame)
                    break
        await pat.disconnect()
        return replies

    replies = async_to_sync(scenario)()
    assert [r["type"] for r in replies] == ["ack", "ack", "error"]
    assert replies[2]["code"] == "rate_limited"
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_a_mobile_app_joins_with_a_jwt_subprotocol(patient_user, conversation):
    from django.contrib.auth.models import AnonymousUser
    from rest_framework_simplejwt.tokens import AccessToken

    token = str(AccessToken.for_user(patient_user))

    async def scenario(protocols):
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns),
                                             f"/ws/followup/conversations/{conversation.pk}/", subprotocols=protocols)
        communicator.scope["user"] = AnonymousUser()
        connected, detail = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected, detail

    assert async_to_sync(scenario)(["yixin.jwt", token]) == (True, "yixin.jwt")
    assert async_to_sync(scenario)(["yixin.jwt", token[:-4] + "AAAA"]) == (False, 4401)


def test_the_inbox_socket_is_nudged_by_new_messages_and_notifications(doctor, patient_user, conversation):
    from followup.routing import websocket_urlpatterns as routes

    async def scenario():
        inbox = WebsocketCommunicator(URLRouter(routes), "/ws/followup/inbox/")
        inbox.scope["user"] = doctor
        assert (await inbox.connect(timeout=10))[0]
        message = await database_sync_to_async(services.message_send)(sender=patient_user, conversation=conversation,
                                                                        body="医生，我今天发烧了")
        update = await _receive_type(inbox, "inbox.update")
        await database_sync_to_async(services.notification_create)(user_id=doctor.pk, kind="overdue", title="逾期",
                                                                     send_external=False)
        notification = await _receive_type(inbox, "notification")
        # The sender's own inbox is not nudged by their own message.
        own = WebsocketCommunicator(URLRouter(routes), "/ws/followup/inbox/")
        own.scope["user"] = patient_user
        assert (await own.connect(timeout=10))[0]
        await database_sync_to_async(services.message_send)(sender=patient_user, conversation=conversation, body="再补充")
        quiet = await own.receive_nothing(timeout=0.5)
        await inbox.disconnect()
        await own.disconnect()
        return message, update, notification, quiet

    message, update, notification, quiet = async_to_sync(scenario)()
    assert update == {"type": "inbox.update", "conversation_id": conversation.pk, "message_id": message.pk}
    assert notification["notification"]["title"] == "逾期"
    assert quiet


def test_the_live_inbox_shows_a_notification_in_the_pages_language(doctor):
    from django.utils.translation import gettext_noop

    from followup.routing import websocket_urlpatterns as routes

    async def scenario(headers):
        inbox = WebsocketCommunicator(URLRouter(routes), "/ws/followup/inbox/", headers=headers)
        inbox.scope["user"] = doctor
        assert (await inbox.connect(timeout=10))[0]
        await database_sync_to_async(services.notification_create)(
            user_id=doctor.pk, kind="overdue", send_external=False,
            title_msgid=gettext_noop("Overdue: %(mrn)s · %(title)s (%(due)s)"),
            title_params={"mrn": "FU-1", "title": "胸部CT复查", "due": "2026-11-23"})
        notification = await _receive_type(inbox, "notification")
        await inbox.disconnect()
        return notification["notification"]["title"]

    assert async_to_sync(scenario)([(b"accept-language", b"en")]) == "Overdue: FU-1 · 胸部CT复查 (2026-11-23)"
    assert async_to_sync(scenario)([]) == "逾期：FU-1 · 胸部CT复查（2026-11-23）"


def test_the_inbox_socket_refuses_anonymous_users():
    from django.contrib.auth.models import AnonymousUser

    async def scenario():
        inbox = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/followup/inbox/")
        inbox.scope["user"] = AnonymousUser()
        return await inbox.connect(timeout=10)

    assert async_to_sync(scenario)() == (False, 4401)


def test_the_assistant_is_asked_over_the_websocket(settings, doctor, patient_user, conversation):
    settings.NEO4J_URI = "bolt://127.0.0.1:1"  # the graph is down: the answer says so and hands over
    from knowledge_graph import services as kg_services

    kg_services.graph_clients_close()

    async def scenario():
        pat = _communicator(patient_user, conversation.pk)
        assert (await pat.connect(timeout=10))[0]
        await pat.send_json_to({"type": "ask_assistant", "client_id": "q1", "question": "感冒吃什么药？"})
        frames = [await _receive_type(pat, "message", timeout=20), await _receive_type(pat, "message", timeout=20)]
        await pat.disconnect()
        return frames

    try:
        question, answer = async_to_sync(scenario)()
    finally:
        kg_services.graph_clients_close()
    assert question["message"]["to_assistant"] and question["message"]["body"] == "感冒吃什么药？"
    assert answer["message"]["kind"] == "assistant" and answer["message"]["meta"]["handover"]


def test_a_member_removed_while_connected_is_closed_on_the_next_send(patient_user, conversation):
    async def scenario():
        pat = _communicator(patient_user, conversation.pk)
        assert (await pat.connect(timeout=10))[0]
        await database_sync_to_async(ConversationMember.objects.filter(user=patient_user).delete)()
        await pat.send_json_to({"type": "send", "client_id": "late", "body": "还在吗"})
        closed = await pat.receive_output(timeout=30)
        await pat.disconnect()
        return closed

    closed = async_to_sync(scenario)()
    assert closed == {"type": "websocket.close", "code": 4404}
    assert not Message.objects.exists()


def test_nul_characters_are_refused_over_the_websocket_as_over_the_api(patient_user, conversation):
    from tests.helpers import api_client

    async def scenario():
        pat = _communicator(patient_user, conversation.pk)
        assert (await pat.connect(timeout=10))[0]
        frames = []
        for frame in ({"type": "send", "client_id": "n1", "body": "咳嗽\u0000两周"},
                      {"type": "send", "client_id": "n\u00002", "body": "咳嗽两周"},
                      {"type": "ask_assistant", "client_id": "n3", "question": "肺结节\u0000是什么"}):
            await pat.send_json_to(frame)
            frames.append(await _receive_type_any(pat, ("ack", "error")))
        # The socket stays usable after a refusal.
        await pat.send_json_to({"type": "send", "client_id": "ok", "body": "咳嗽两周"})
        frames.append(await _receive_type_any(pat, ("ack", "error")))
        await pat.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    assert [f["type"] for f in frames] == ["error", "error", "error", "ack"]
    assert {f["code"] for f in frames[:3]} == {"invalid_characters"}
    assert list(Message.objects.filter(conversation=conversation).values_list("body", flat=True)) == ["咳嗽两周"]

    response = api_client(patient_user).post(f"/api/followup/conversations/{conversation.pk}/messages/",
                                             {"body": "咳嗽\u0000两周"}, format="json")
    assert response.status_code == 400
    assert Message.objects.filter(conversation=conversation).count() == 1


async def _receive_type_any(communicator, kinds, timeout: float = 30):
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] in kinds:
            return frame


def test_a_socket_speaks_the_language_of_its_page(settings, patient_user, conversation):
    """Error frames and the assistant's answer follow the language cookie (the language switcher's) or
    Accept-Language of the websocket's handshake, as the API follows the request's (issue 16)."""
    settings.NEO4J_URI = "bolt://127.0.0.1:1"  # the graph is down: the answer is the translated notice
    from knowledge_graph import services as kg_services

    kg_services.graph_clients_close()

    async def exchange(headers, client_id):
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns),
                                             f"/ws/followup/conversations/{conversation.pk}/", headers=headers)
        communicator.scope["user"] = patient_user
        assert (await communicator.connect(timeout=10))[0]
        await communicator.send_json_to({"type": "nonsense"})
        error = await _receive_type(communicator, "error")
        await communicator.send_json_to({"type": "ask_assistant", "client_id": client_id, "question": "感冒吃什么药？"})
        while True:
            frame = await _receive_type(communicator, "message", timeout=20)
            if frame["message"]["kind"] == "assistant":
                break
        await communicator.disconnect()
        return error, frame["message"]

    try:
        by_cookie = async_to_sync(exchange)([(b"cookie", f"{settings.LANGUAGE_COOKIE_NAME}=en".encode()),
                                             (b"accept-language", b"zh-CN,zh;q=0.9")], "q1")
        by_header = async_to_sync(exchange)([(b"accept-language", b"en-US,en;q=0.9")], "q2")
        default = async_to_sync(exchange)([], "q3")
    finally:
        kg_services.graph_clients_close()

    for error, answer in (by_cookie, by_header):
        assert error["code"] == "unknown_type" and error["message"] == "Unknown request type."
        assert answer["meta"]["language"] == "en" and "Your doctor sees this conversation" in answer["body"]
    error, answer = default
    assert error["message"] != "Unknown request type." and answer["meta"]["language"] == "zh-hans"
    assert "您的医生会看到这段对话" in answer["body"]


def test_a_burst_of_messages_arrives_live_in_commit_order(doctor, patient_user, conversation):
    """The services queue their broadcasts for the event loop instead of waiting for Redis in the
    database thread; a burst still reaches the partner live, each message once, in id order."""
    async def scenario():
        doc = _communicator(doctor, conversation.pk)
        pat = _communicator(patient_user, conversation.pk)
        assert (await doc.connect(timeout=10))[0] and (await pat.connect(timeout=10))[0]
        for i in range(30):
            await pat.send_json_to({"type": "send", "client_id": f"b-{i}", "body": f"第{i}条"})
        received = [(await _receive_type(doc, "message"))["message"] for _ in range(30)]
        acks = [(await _receive_type(pat, "ack"))["message_id"] for _ in range(30)]
        assert await doc.receive_nothing(timeout=0.3)
        await doc.disconnect()
        await pat.disconnect()
        return received, acks

    received, acks = async_to_sync(scenario)()
    stored = list(Message.objects.filter(conversation=conversation).order_by("id").values_list("id", "body"))
    assert [m["id"] for m in received] == [pk for pk, _ in stored] == acks
    assert [m["body"] for m in received] == [f"第{i}条" for i in range(30)]


def test_a_message_committed_after_a_higher_id_is_still_delivered_once(doctor, patient_user, conversation):
    """Two senders' transactions (threads, daphne processes) may commit in another order than their
    ids: the lower id arriving second is delivered too, and a repeated event is not."""
    from channels.layers import get_channel_layer

    from followup import events

    first = services.message_send(sender=doctor, conversation=conversation, body="先写入的")
    second = services.message_send(sender=patient_user, conversation=conversation, body="后写入的")
    payloads = {m.pk: events.message_payload(m) for m in (first, second)}

    async def scenario():
        doc = _communicator(doctor, conversation.pk)
        assert (await doc.connect(timeout=10))[0]
        layer = get_channel_layer()
        for message_id in (second.pk, first.pk, second.pk, first.pk):
            await layer.group_send(events.conversation_group(conversation.pk),
                                   {"type": "chat.message", "message": payloads[message_id]})
        got = [(await _receive_type(doc, "message"))["message"]["id"] for _ in range(2)]
        assert await doc.receive_nothing(timeout=0.5)
        await doc.send_json_to({"type": "resume", "last_seen_id": 0})  # a resume replays both, in id order
        replayed = [(await _receive_type(doc, "message"))["message"]["id"] for _ in range(2)]
        resumed = await _receive_type(doc, "resumed")
        await doc.disconnect()
        return got, replayed, resumed

    got, replayed, resumed = async_to_sync(scenario)()
    assert got == [second.pk, first.pk]
    assert replayed == [first.pk, second.pk] and resumed["last_id"] == second.pk
