"""The knowledge-graph QA page in a browser (issue 16): a question it does not understand gets a plain
"not understood" answer with examples instead of the previous turn's disease, the conversation shows
every turn, and no internal code (``disease_symptom``, ``(Disease)``) reaches the page text."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import wait_for_js

pytestmark = [pytest.mark.e2e]

DESKTOP = {"width": 1280, "height": 800}
INTERNAL_CODE = re.compile(
    r"\b(disease|symptom|drug|food|check)_[a-z_]+\b|\b(Disease|Symptom|Drug|Food|Check|Department)\b"
)


CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+")


def ask(page, question):
    page.fill("#kg-question", question)
    page.click("#kg-ask")
    page.wait_for_load_state("networkidle")


def sign_in(page, base, password):
    page.goto(f"{base}/login/")
    page.fill("#id_username", "patient")
    page.fill("#id_password", password)
    page.click("#login-submit")
    page.wait_for_load_state("networkidle")


def test_unknown_question_is_not_answered_with_the_previous_disease(portal_server, starter_graph_loaded,
                                                                     browser_page):
    page = browser_page
    page.set_viewport_size(DESKTOP)
    base = portal_server["url"]
    page.goto(f"{base}/login/")
    page.fill("#id_username", "patient")
    page.fill("#id_password", portal_server["password"])
    page.click("#login-submit")
    page.wait_for_load_state("networkidle")

    page.goto(f"{base}/kg/")
    ask(page, "糖尿病有哪些症状？")
    ask(page, "今天天气怎么样")

    turns = page.locator("#kg-history .kg-turn")
    assert turns.count() == 2
    first, second = turns.nth(0).inner_text(), turns.nth(1).inner_text()
    assert "糖尿病有哪些症状？" in first and "多饮" in first and "疾病的症状" in first
    assert "今天天气怎么样" in second and "没有理解这个问题" in second and "您可以试着问" in second
    assert "多饮" not in second and "糖尿病的常见症状" not in second
    body = page.inner_text("body")
    assert not INTERNAL_CODE.search(body), INTERNAL_CODE.search(body)


def test_english_page_answers_in_english_around_the_chinese_graph_names(portal_server, starter_graph_loaded,
                                                                       browser_page):
    page = browser_page
    page.set_viewport_size(DESKTOP)
    base = portal_server["url"]
    sign_in(page, base, portal_server["password"])
    page.context.add_cookies([{"name": "django_language", "value": "en", "url": base}])
    symptoms = {row["name"] for row in starter_graph_loaded.read(
        "MATCH (:Disease {name: $name})-[:HAS_SYMPTOM]->(s:Symptom) RETURN s.name AS name", {"name": "感冒"})}

    page.goto(f"{base}/kg/")
    ask(page, "感冒有什么症状")
    wait_for_js(page, "document.querySelector('#kg-answer .kg-reply p') !== null", timeout=10_000)

    assert page.evaluate("document.documentElement.lang") == "en"
    answer = page.inner_text("#kg-answer .kg-reply p")
    assert answer.startswith("Common symptoms of 感冒: ") and answer.endswith(".")
    named = [run for run in CJK.findall(answer) if run != "感冒"]
    assert named and set(named) <= symptoms, (named, symptoms)
    turn = page.inner_text("#kg-answer")
    assert "感冒有什么症状" in turn and "Symptoms of a disease" in turn and "Note: this comes from" in turn
    leftover = CJK.findall(turn.replace("感冒有什么症状", " "))
    assert set(leftover) <= symptoms | {"感冒"}, leftover
    content = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")
    assert "Questions are understood in Chinese" in content and "医学知识问答" not in content
    box = page.locator("#kg-answer").bounding_box()
    assert box is not None and box["x"] + box["width"] <= DESKTOP["width"]  # the answer fits the window
