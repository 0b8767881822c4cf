"""Issue 16: the assistant never answers a question it did not understand, and symptom → department.

Against the real graph: the shipped starter graph and a slice of the real CMeKG triples
(``../shared/data/zh_medical_kg``) in the test session's FalkorDB, over Bolt.
"""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from knowledge_graph import services
from knowledge_graph.importers import batch_write, cmekg_parse
from portal.models import Role
from tests.conftest import shared_data
from tests.factories import UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

NOT_UNDERSTOOD = "没有理解这个问题"
INTERNAL_CODE = re.compile(r"\b(disease|symptom|drug|food|check)_[a-z_]+\b|\((Disease|Symptom|Drug|Food|Check)\)")


@pytest.mark.parametrize(
    ("first", "unknown", "previous_facts"),
    [
        ("糖尿病有哪些症状？", "今天天气怎么样", ["多饮", "糖尿病的"]),
        ("高血压挂什么科", "asdfgh", ["心血管内科", "高血压一般"]),
        ("偏头痛吃什么药", "What should I take for a headache?", ["佐米曲普坦", "偏头痛"]),
        ("糖尿病有哪些症状？", "今天吃饭了吗", ["二甲双胍", "燕麦", "糖尿病患者"]),
    ],
)
def test_question_naming_nothing_is_not_answered_with_the_previous_entity(starter_graph, first, unknown,
                                                                          previous_facts):
    context = services.kg_answer(first).context

    answer = services.kg_answer(unknown, context=context)

    assert not answer.understood and not answer.answered
    assert answer.entities == () and answer.question_types == () and answer.facts == ()
    assert NOT_UNDERSTOOD in answer.text and "您可以试着问" in answer.text and answer.suggestions
    for word in previous_facts:
        assert word not in answer.text


def test_a_real_follow_up_still_carries_the_entity_after_a_not_understood_turn(starter_graph):
    first = services.kg_answer("糖尿病有哪些症状？")
    lost = services.kg_answer("今天天气怎么样", context=first.context)

    elided = services.kg_answer("要吃什么药", context=lost.context)
    pronoun = services.kg_answer("它有什么并发症", context=elided.context)

    assert [(e.name, e.via) for e in elided.entities] == [("糖尿病", "context")] and "二甲双胍" in elided.text
    assert pronoun.question_type == "disease_acompany" and "糖尿病肾病" in pronoun.text


def test_symptom_department_question_answers_with_departments_and_the_reasoning(starter_graph):
    answer = services.kg_answer("头疼挂什么科")

    assert answer.question_type == "symptom_department" and answer.answered
    assert [(e.name, e.label) for e in answer.entities] == [("头痛", "Symptom")]
    assert "您是不是想问：头痛" in answer.text
    assert "有此症状的疾病及其就诊科室" in answer.text and "神经内科（" in answer.text and "偏头痛" in answer.text
    facts = {(f.subject, str(f.relation), f.object) for f in answer.facts}
    assert ("偏头痛", "HAS_SYMPTOM", "头痛") in facts and ("偏头痛", "BELONGS_TO", "神经内科") in facts


def test_high_blood_pressure_in_everyday_words_gets_its_departments(starter_graph):
    answer = services.kg_answer("血压高挂哪个科")

    assert answer.question_type == "disease_department" and answer.answered
    assert "您是不是想问：高血压" in answer.text and "心血管内科" in answer.text


def test_symptom_department_on_the_real_cmekg_graph(empty_graph):
    path = shared_data("zh_medical_kg", "cmekg_triples.jsonl.gz")
    batch_write(empty_graph, cmekg_parse(path, limit=20000), source="cmekg-slice")
    services.qa_engines_clear()

    answer = services.kg_answer("头疼挂什么科")

    # In CMeKG 头痛 is also a disease without a department: the symptom reading answers.
    assert answer.question_type == "symptom_department" and answer.answered
    assert [(e.name, e.label) for e in answer.entities] == [("头痛", "Symptom")]
    departments = empty_graph.read(
        "MATCH (d:Disease)-[:HAS_SYMPTOM]->(:Symptom {name: '头痛'}) MATCH (d)-[:BELONGS_TO]->(x:Department) "
        "RETURN DISTINCT x.name AS name"
    )
    named = [row["name"] for row in departments if f"{row['name']}（" in answer.text]
    assert named, answer.text
    for fact in answer.facts:
        if str(fact.relation) == "BELONGS_TO":
            assert empty_graph.read(
                "MATCH (:Disease {name: $d})-[:BELONGS_TO]->(:Department {name: $x}) RETURN 1 AS ok",
                {"d": fact.subject, "x": fact.object},
            )


def test_api_says_it_did_not_understand_and_keeps_the_conversation_going(starter_graph):
    client = api_client(UserFactory(role=Role.PATIENT))
    first = client.post("/api/kg/ask/", {"question": "糖尿病有哪些症状？"}, format="json").data
    conversation = first["conversation_id"]

    unknown = client.post("/api/kg/ask/", {"question": "asdfgh", "conversation_id": conversation}, format="json")
    follow = client.post("/api/kg/ask/", {"question": "那它吃什么药？", "conversation_id": conversation},
                         format="json")

    assert unknown.status_code == 200
    assert unknown.data["understood"] is False and unknown.data["entities"] == []
    assert NOT_UNDERSTOOD in unknown.data["text"] and "多饮" not in unknown.data["text"]
    assert first["understood"] is True
    assert follow.data["understood"] and "二甲双胍" in follow.data["text"]


def _signed_in(client, role=Role.PATIENT):
    user = UserFactory(role=role)
    client.force_login(user)  # axes' backend needs a request to authenticate a password
    return user


def test_qa_page_shows_the_whole_conversation_without_internal_codes(client, starter_graph):
    _signed_in(client)
    client.post(reverse("knowledge_graph:index"), {"question": "糖尿病有哪些症状？"})

    page = client.post(reverse("knowledge_graph:index"), {"question": "今天天气怎么样"}).content.decode()

    assert page.count('class="kg-turn') == 2
    assert page.index("糖尿病有哪些症状？") < page.index("今天天气怎么样")
    assert "多饮" in page and NOT_UNDERSTOOD in page
    assert "（疾病）" in page and "疾病的症状" in page
    visible = re.sub(r"<[^>]+>", " ", page)  # links may carry codes; the text users read may not
    assert not INTERNAL_CODE.search(visible), INTERNAL_CODE.search(visible)
    assert "Disease" not in visible


def test_qa_page_starts_a_new_conversation_on_reset(client, starter_graph):
    _signed_in(client)
    client.post(reverse("knowledge_graph:index"), {"question": "糖尿病有哪些症状？"})

    client.post(reverse("knowledge_graph:index"), {"reset": "1"})
    page = client.get(reverse("knowledge_graph:index")).content.decode()

    assert "kg-turn" not in page and "多饮" not in page


def test_entity_page_explains_reverse_relations_in_words(client, starter_graph):
    _signed_in(client)

    page = client.get(reverse("knowledge_graph:entity", args=["Symptom", "头痛"])).content.decode()

    assert "有此症状的疾病" in page and "偏头痛" in page
    visible = re.sub(r"<[^>]+>", " ", page)
    assert "反向" not in visible and "HAS_SYMPTOM" not in visible and "Symptom" not in visible


def test_entity_page_in_english_names_relations_in_english(client, starter_graph):
    _signed_in(client)

    page = client.get(reverse("knowledge_graph:entity", args=["Symptom", "头痛"]),
                      HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "Diseases with this symptom" in page and "有此症状的疾病" not in page
