"""Follow-up in two browsers at once: the doctor and the patient chat live; the patient's connection
drops and comes back and no message is lost; a questionnaire is assigned, answered on a phone-sized
viewport (390×844) with autosave and resume, and scored."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tests.e2e.conftest import ARTIFACTS, CHROMIUM, csp_violations

pytestmark = [pytest.mark.e2e]

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def browser(request):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        contexts = []

        def new_page(viewport, **options):
            context = browser.new_context(viewport=viewport, locale="zh-CN", **options)
            contexts.append(context)
            page = context.new_page()
            page.console_lines = []
            page.on("console", lambda msg: page.console_lines.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: page.console_lines.append(f"pageerror: {exc}"))
            return page

        yield new_page
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            for i, context in enumerate(contexts):
                for page in context.pages:
                    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{i}.png"), full_page=True)
                    (ARTIFACTS / f"{request.node.name}-{i}.console.txt").write_text("\n".join(page.console_lines))
        lines = [line for context in contexts for page in context.pages for line in page.console_lines]
        for context in contexts:
            context.close()
        browser.close()
        assert not csp_violations(lines), csp_violations(lines)


def login(page, base, username, password):
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_load_state("networkidle")


def send(page, text):
    page.fill("#message-input", text)
    page.click("#send-button")


def bubble(page, text):
    return page.locator("#messages .fu-msg[data-id]", has_text=text)


def test_doctor_and_patient_chat_live_and_nothing_is_lost_when_the_patient_drops(portal_server, browser):
    base, password = portal_server["url"], portal_server["password"]
    doctor = browser({"width": 1280, "height": 900})
    patient = browser(PHONE, is_mobile=True, has_touch=True)
    login(doctor, base, "doctor", password)
    login(patient, base, "patient", password)

    doctor.goto(f"{base}/followup/")
    doctor.click("#new-conversation")
    doctor.wait_for_url(re.compile(r".*/followup/conversations/\d+/$"))
    doctor.wait_for_selector('#connection-state[data-state="open"]')
    conversation_url = doctor.url

    patient.goto(f"{base}/followup/conversations/")
    # Other browser tests of this portal may have started conversations with the same patient.
    conversation_id = conversation_url.rstrip("/").rsplit("/", 1)[1]
    patient.click(f'#conversation-list li[data-conversation="{conversation_id}"] a.conversation-link')
    patient.wait_for_selector('#connection-state[data-state="open"]')

    send(doctor, "您好，请问咳嗽好些了吗？")
    bubble(patient, "您好，请问咳嗽好些了吗？").wait_for()
    patient.fill("#message-input", "好多了")
    doctor.wait_for_selector("#typing:has-text('…')")
    patient.click("#send-button")
    bubble(doctor, "好多了").wait_for()
    # "typing…" ends with the message it announced.
    assert doctor.inner_text("#typing") == ""
    # The doctor's page is visible, so the patient's message is read and the patient sees the receipt.
    patient.wait_for_selector('#messages .fu-msg.mine[data-receipt="read"]')

    # The patient's phone loses its connection.
    patient.context.set_offline(True)
    patient.evaluate("window.yixinChat.socket.ws && window.yixinChat.socket.ws.close()")
    patient.wait_for_selector('#connection-state:not([data-state="open"])')
    send(doctor, "第一条：明天上午复查CT")
    send(doctor, "第二条：记得空腹")
    bubble(doctor, "第二条：记得空腹").wait_for()
    send(patient, "我离线时写的")  # waits in the outbox
    assert bubble(patient, "第一条").count() == 0

    patient.context.set_offline(False)
    patient.evaluate("window.yixinChat.socket.reconnectNow()")
    patient.wait_for_selector('#connection-state[data-state="open"]', timeout=30_000)
    bubble(patient, "第二条：记得空腹").wait_for(timeout=30_000)
    bubble(doctor, "我离线时写的").wait_for(timeout=30_000)

    conversation_id = int(conversation_url.rstrip("/").rsplit("/", 1)[1])
    stored = patient.evaluate(
        "async (id) => (await (await fetch(`/api/followup/conversations/${id}/messages/?limit=200`)).json()).results"
        ".map(m => [m.id, m.body])", conversation_id)
    shown_patient = patient.eval_on_selector_all("#messages .fu-msg[data-id]", "els => els.map(e => Number(e.dataset.id))")
    shown_doctor = doctor.eval_on_selector_all("#messages .fu-msg[data-id]", "els => els.map(e => Number(e.dataset.id))")
    sent = ["您好，请问咳嗽好些了吗？", "好多了", "第一条：明天上午复查CT", "第二条：记得空腹", "我离线时写的"]
    # Each sent once, in order (the conversation may hold earlier messages of other tests of this portal).
    assert [body for _, body in stored if body in sent] == sent
    assert shown_patient == [pk for pk, _ in stored] and shown_doctor == [pk for pk, _ in stored]


def test_a_questionnaire_is_assigned_answered_on_the_phone_and_scored(portal_server, browser):
    base, password = portal_server["url"], portal_server["password"]
    doctor = browser({"width": 1280, "height": 900})
    patient = browser(PHONE, is_mobile=True, has_touch=True)
    login(doctor, base, "doctor", password)
    login(patient, base, "patient", password)

    doctor.goto(f"{base}/followup/")
    doctor.click("a.patient-link")
    doctor.wait_for_selector("#assign-form")
    phq9 = doctor.eval_on_selector("#assign-questionnaire", "s => [...s.options].find(o => /PHQ-9/.test(o.textContent)).value")
    doctor.select_option("#assign-questionnaire", value=phq9)
    doctor.fill("#assign-due", (dt.date.today() + dt.timedelta(days=7)).isoformat())
    before = doctor.locator("#questionnaires li[data-assignment]").count()
    with doctor.expect_navigation():  # the form reloads the page once the assignment is stored
        doctor.click("#assign-button")
    assert doctor.locator("#questionnaires li[data-assignment]").count() == before + 1

    patient.goto(f"{base}/followup/me/questionnaires/")
    # The one just assigned (other browser tests of this portal may have completed others).
    link = patient.locator('#assignment-list li:not([data-status="completed"]) a.assignment-link').last
    assignment_id = link.get_attribute("href").rstrip("/").rsplit("/", 1)[1]
    link.click()
    patient.wait_for_selector(".fu-q")
    assert patient.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert patient.locator('.fu-q[data-link-id="phq9_difficulty"]').is_hidden()

    for n in range(1, 6):
        patient.check(f'.fu-q[data-link-id="phq9_{n}"] input[value="1"]')
    patient.wait_for_selector('#save-state[data-state="saved"]')
    # Leave and come back later: the answers were autosaved.
    patient.reload()
    patient.wait_for_selector(".fu-q")
    assert patient.is_checked('.fu-q[data-link-id="phq9_5"] input[value="1"]')
    assert patient.locator('.fu-q[data-link-id="phq9_difficulty"]').is_visible()

    patient.click("#submit-questionnaire")  # four questions are still unanswered
    patient.wait_for_selector('.fu-q[data-link-id="phq9_6"] .fu-error:not(:empty)')
    for n in range(6, 10):
        patient.check(f'.fu-q[data-link-id="phq9_{n}"] input[value="1"]')
    patient.click("#submit-questionnaire")
    patient.wait_for_selector("#result:not([hidden])")
    assert patient.inner_text("#score-total") == "9"
    assert patient.inner_text("#score-band") == "轻度抑郁"

    doctor.reload()
    assert doctor.inner_text(f'#questionnaires li[data-assignment="{assignment_id}"] .score') == "9"
