"""Follow-up plans and the reminder pass that Celery beat runs: occurrences, in-app notifications,
external backends (console by default; the SMS gateway is outside the product and is mocked),
overdue tracking, and the doctor's list of patients needing attention."""

from __future__ import annotations

import datetime as dt
import io
import json
from unittest import mock

import pytest
from django.utils import timezone

from followup import services
from followup.models import Notification, PlanItem, PlanOccurrence, QuestionnaireAssignment
from followup.notify import ConsoleBackend, OutgoingNotification, SmsGatewayBackend
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 21)


@pytest.fixture
def plan(doctor, patient):
    return services.plan_create(actor=doctor, patient=patient, title="肺结节随访")


def test_a_reexamination_every_two_weeks_is_reminded_ahead_and_then_overdue(doctor, patient_user, plan):
    item = services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.REEXAM, title="胸部CT复查", modality="CT",
                                  start_date=TODAY + dt.timedelta(days=2), interval_days=14, grace_days=3)

    first = services.reminders_dispatch(today=TODAY)  # 2 days ahead: within the 3-day notice
    repeat = services.reminders_dispatch(today=TODAY)
    assert first["reminded"] == 1 and repeat["reminded"] == 0
    reminders = Notification.objects.filter(user=patient_user, kind="reexam")
    assert [n.title for n in reminders] == [f"复查提醒：胸部CT复查（{(TODAY + dt.timedelta(days=2)).isoformat()}）"]

    late = services.reminders_dispatch(today=TODAY + dt.timedelta(days=6))  # due +2, grace 3 → overdue from day 6
    assert late["overdue"] == 1
    assert PlanOccurrence.objects.get(item=item, due_date=TODAY + dt.timedelta(days=2)).status == "overdue"
    assert Notification.objects.filter(user=doctor, kind="overdue").count() == 1
    attention = api_client(doctor).get("/api/followup/attention/").json()["results"]
    assert attention[0]["patient"]["id"] == plan.patient_id
    assert attention[0]["reasons"][0]["code"] == "overdue_reexam"


def test_missed_intervals_are_caught_up_and_completion_schedules_the_next(doctor, patient_user, plan):
    item = services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.MEDICATION, title="阿司匹林 100mg",
                                  start_date=TODAY, interval_days=1, end_date=TODAY + dt.timedelta(days=10))
    services.reminders_dispatch(today=TODAY + dt.timedelta(days=3))  # the beat was down for three days
    assert list(item.occurrences.order_by("due_date").values_list("due_date", flat=True)) == [
        TODAY + dt.timedelta(days=n) for n in range(4)]

    today_occ = item.occurrences.get(due_date=TODAY + dt.timedelta(days=3))
    response = api_client(patient_user).post(f"/api/followup/occurrences/{today_occ.pk}/complete/")
    again = api_client(patient_user).post(f"/api/followup/occurrences/{today_occ.pk}/complete/")
    assert response.status_code == 200 and response.json()["status"] == "done"
    assert again.status_code == 409
    assert item.occurrences.filter(due_date=TODAY + dt.timedelta(days=4)).exists()


def test_the_plan_ends_on_its_end_date(doctor, plan):
    item = services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.MEDICATION, title="药",
                                  start_date=TODAY, interval_days=7, end_date=TODAY + dt.timedelta(days=10))
    services.reminders_dispatch(today=TODAY + dt.timedelta(days=40))
    assert list(item.occurrences.values_list("due_date", flat=True).order_by("due_date")) == [TODAY, TODAY + dt.timedelta(days=7)]


def test_a_questionnaire_item_assigns_the_questionnaire(doctor, patient, patient_user, plan):
    phq9 = services.instruments_install()[0]
    item = services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.QUESTIONNAIRE, title="PHQ-9",
                                  questionnaire=phq9, start_date=TODAY, interval_days=28, grace_days=5)
    counts = services.reminders_dispatch(today=TODAY)
    assignment = QuestionnaireAssignment.objects.get(patient=patient, plan_item=item)
    assert counts["assigned"] == 1 and assignment.due_date == TODAY + dt.timedelta(days=5)
    assert Notification.objects.get(user=patient_user, kind="questionnaire").url == f"/followup/me/questionnaires/{assignment.pk}/"
    services.assignment_submit(user=patient_user, assignment=assignment,
                               answers={f"phq9_{n}": "0" for n in range(1, 10)})
    assert item.occurrences.get(due_date=TODAY).status == "done"


@pytest.mark.parametrize("data,code", [
    ({"kind": "reexam", "title": "CT", "start_date": "2026-12-01", "interval_days": 0}, "invalid_input"),
    ({"kind": "reexam", "title": "CT", "start_date": "2026-12-01", "interval_days": 7, "end_date": "2026-11-01"},
     "invalid_dates"),
    ({"kind": "questionnaire", "title": "Q", "start_date": "2026-12-01", "interval_days": 7}, "questionnaire_required"),
    ({"kind": "yoga", "title": "Q", "start_date": "2026-12-01", "interval_days": 7}, "invalid_input"),
])
def test_invalid_plan_items_are_refused(data, code, doctor, plan):
    response = api_client(doctor).post(f"/api/followup/plans/{plan.pk}/items/", data, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert not PlanItem.objects.exists()


def test_other_hospitals_and_annotators_cannot_edit_plans(annotator, other_doctor, plan, patient):
    item = {"kind": "reexam", "title": "CT", "start_date": "2026-12-01", "interval_days": 14}
    assert api_client(other_doctor).post(f"/api/followup/plans/{plan.pk}/items/", item, format="json").status_code == 404
    assert api_client(other_doctor).get(f"/api/followup/patients/{patient.pk}/plans/").status_code == 404
    assert api_client(annotator).post(f"/api/followup/plans/{plan.pk}/items/", item, format="json").status_code == 403
    assert api_client(annotator).post(f"/api/followup/patients/{patient.pk}/plans/", {"title": "x"},
                                      format="json").status_code == 403


def test_reminders_go_through_the_configured_backends_and_a_failing_gateway_does_not_stop_them(
        settings, doctor, patient_user, plan):
    settings.FOLLOWUP_NOTIFICATION_BACKENDS = ["followup.notify.SmsGatewayBackend", "followup.notify.ConsoleBackend"]
    settings.FOLLOWUP_NOTIFICATION_OPTIONS = {"followup.notify.SmsGatewayBackend": {"url": "https://sms.example/send",
                                                                                    "token": "t"}}
    services.contact_preference_set(user=patient_user, phone="+86 138 0000 0000")
    services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.MEDICATION, title="二甲双胍",
                           start_date=TODAY, interval_days=1)

    sent = []

    class Response:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(request, timeout):
        sent.append(json.loads(request.data))
        return Response()

    with mock.patch("followup.notify.urllib.request.urlopen", fake_urlopen):
        services.reminders_dispatch(today=TODAY)
    notification = Notification.objects.get(user=patient_user, kind="medication")
    assert sent == [{"to": "+86 138 0000 0000", "text": "用药提醒：二甲双胍 " + settings.PORTAL_BASE_URL + "/followup/me/plan/"}]
    assert notification.delivered_via == ["in_app", "sms", "console"]

    def broken_urlopen(request, timeout):
        raise OSError("gateway down")

    services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.MEDICATION, title="降压药",
                           start_date=TODAY, interval_days=1)
    with mock.patch("followup.notify.urllib.request.urlopen", broken_urlopen):
        services.reminders_dispatch(today=TODAY)
    second = Notification.objects.get(user=patient_user, title__contains="降压药")
    assert second.delivered_via == ["in_app", "console"]


def test_the_console_backend_names_the_user_by_id_only():
    stream = io.StringIO()
    ConsoleBackend(stream=stream).send(OutgoingNotification(notification_id=5, user_id=9, email="a@b.c", phone="138",
                                                           title="复查提醒", body="", url="http://x/y"))
    assert stream.getvalue() == "[notification 5 → user 9] 复查提醒 http://x/y\n"


def test_the_sms_backend_skips_users_without_a_number():
    assert SmsGatewayBackend(url="https://sms.example").send(OutgoingNotification(1, 2, "", "", "t", "", "")) is False


def test_the_beat_schedule_runs_the_reminder_task(settings):
    from followup.tasks import reminders_dispatch

    assert settings.CELERY_BEAT_SCHEDULE["followup-reminders"]["task"] == reminders_dispatch.name


def test_the_patient_sees_plan_and_reminders(doctor, patient_user, plan):
    services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.REEXAM, title="胸部CT复查",
                           start_date=timezone.localdate(), interval_days=14)
    data = api_client(patient_user).get("/api/followup/me/plan/").json()
    assert [p["title"] for p in data["plans"]] == ["肺结节随访"]
    assert [u["item"]["title"] for u in data["upcoming"]] == ["胸部CT复查"]


def test_notifications_are_listed_and_marked_read(patient_user):
    n = services.notification_create(user_id=patient_user.pk, kind="medication", title="提醒", send_external=False)
    client = api_client(patient_user)
    assert client.get("/api/followup/notifications/").json()["unread"] == 1
    assert client.post(f"/api/followup/notifications/{n.pk}/read/").json()["read"] is True
    assert client.get("/api/followup/notifications/").json()["unread"] == 0


def test_the_reminder_command_prints_its_counts(doctor, plan):
    from django.core.management import CommandError, call_command

    services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.MEDICATION, title="药", start_date=TODAY,
                           interval_days=1)
    out = io.StringIO()
    call_command("followup_reminders", "--date", TODAY.isoformat(), stdout=out)
    assert json.loads(out.getvalue()) == {"created": 0, "reminded": 1, "overdue": 0, "assigned": 0}
    with pytest.raises(CommandError):
        call_command("followup_reminders", "--date", "tomorrow")


def test_notification_titles_are_shown_in_each_readers_language(doctor, patient_user, plan):
    """Issue 16: titles were stored in Chinese and shown so in the English UI. They are now msgids
    with parameters: Chinese for a Chinese reader and for e-mail/SMS, English for an English one."""
    services.plan_item_add(actor=doctor, plan=plan, kind=PlanItem.Kind.REEXAM, title="胸部CT复查", modality="CT",
                           start_date=TODAY + dt.timedelta(days=2), interval_days=14, grace_days=3)
    services.reminders_dispatch(today=TODAY)
    services.reminders_dispatch(today=TODAY + dt.timedelta(days=6))
    due = (TODAY + dt.timedelta(days=2)).isoformat()

    chinese = api_client(patient_user).get("/api/followup/notifications/").json()["results"]
    english = api_client(patient_user).get("/api/followup/notifications/", HTTP_ACCEPT_LANGUAGE="en").json()["results"]
    assert [n["title"] for n in chinese] == [f"复查提醒：胸部CT复查（{due}）"]
    assert [n["title"] for n in english] == [f"Re-examination reminder: 胸部CT复查 ({due})"]
    overdue = api_client(doctor).get("/api/followup/notifications/", HTTP_ACCEPT_LANGUAGE="en").json()["results"]
    assert [n["title"] for n in overdue] == [f"Overdue: {plan.patient.mrn} · 胸部CT复查 ({due})"]
    # The stored title (e-mail, SMS, admin) is the default language's.
    assert Notification.objects.get(user=patient_user).title == f"复查提醒：胸部CT复查（{due}）"
