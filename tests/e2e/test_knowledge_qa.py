"""The knowledge-graph QA page in a browser (issue 16): a question it does not understand gets a plain
"not understood" answer with examples instead of the previous turn's disease, the conversation shows
every turn, and no internal code (``disease_symptom``, ``(Disease)``) reaches the page text."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.e2e]

DESKTOP = {"width": 1280, "height": 800}
INTERNAL_CODE = re.compile(
    r"\b(disease|symptom|drug|food|check)_[a-z_]+\b|\b(Disease|Symptom|Drug|Food|Check|Department)\b"
)


@pytest.fixture
def starter_graph_loaded(portal_server):
    """The shipped starter graph in the graph the portal reads (the session's FalkorDB)."""
    from django.conf import settings

    from knowledge_graph import services
    from knowledge_graph.graph import graph_client_create, store
    from knowledge_graph.importers import batch_write, qasystem_parse

    client = graph_client_create(uri=settings.NEO4J_URI, user=settings.NEO4J_USER,
                                 password=settings.NEO4J_PASSWORD, database=settings.NEO4J_DATABASE)
    try:
        store.graph_clear(client)
        batch_write(client, qasystem_parse(services.STARTER_GRAPH_PATH), source="starter")
        yield
    finally:
        store.graph_clear(client)
        client.close()


def ask(page, question):
    page.fill("#kg-question", question)
    page.click("#kg-ask")
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
