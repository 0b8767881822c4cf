"""Pages, management commands and the data that ships (starter graph, evaluation set)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from knowledge_graph import services
from knowledge_graph.importers import qasystem_parse
from knowledge_graph.models import Synonym
from knowledge_graph.qa.evaluation import evaluation_read
from portal.models import Role
from tests.factories import UserFactory

EVALUATION_SET = services.STARTER_GRAPH_PATH.parent / "evaluation.tsv"


def signed_in(client, role=Role.DOCTOR):
    user = UserFactory(role=role)
    client.force_login(user)
    return user


@pytest.mark.django_db
def test_index_page_answers_and_remembers_the_conversation(client, starter_graph):
    signed_in(client, Role.PATIENT)
    client.post(reverse("knowledge_graph:index"), {"question": "糖尿病有哪些症状？"})

    response = client.post(reverse("knowledge_graph:index"), {"question": "那它吃什么药？"})

    assert response.status_code == 200
    assert "二甲双胍" in response.content.decode()


@pytest.mark.django_db
def test_entity_page_shows_neighbours_and_synonym_form_for_doctors(client, starter_graph):
    signed_in(client, Role.DOCTOR)
    page = client.get(reverse("knowledge_graph:entity", args=["Disease", "高血压"])).content.decode()
    assert "氨氯地平" in page and "添加同义词" in page


@pytest.mark.django_db
def test_patient_sees_no_synonym_form_and_cannot_post_one(client, starter_graph):
    signed_in(client, Role.PATIENT)
    page = client.get(reverse("knowledge_graph:entity", args=["Disease", "高血压"])).content.decode()
    response = client.post(
        reverse("knowledge_graph:synonym-add"), {"alias": "血压病", "canonical": "高血压", "label": "Disease"}
    )
    assert "添加同义词" not in page and response.status_code == 403


@pytest.mark.django_db
def test_doctor_adds_a_synonym_from_the_entity_page(client, starter_graph):
    signed_in(client, Role.DOCTOR)
    response = client.post(
        reverse("knowledge_graph:synonym-add"), {"alias": "血压病", "canonical": "高血压", "label": "Disease"}
    )
    assert response.status_code == 302 and Synonym.objects.filter(alias="血压病").exists()


@pytest.mark.django_db
def test_search_page_lists_matching_entities(client, starter_graph):
    signed_in(client)
    assert "偏头痛" in client.get(reverse("knowledge_graph:search"), {"q": "头痛"}).content.decode()


@pytest.mark.django_db
def test_pages_need_a_signed_in_user(client):
    assert client.get(reverse("knowledge_graph:index")).status_code == 302


@pytest.mark.django_db
def test_kg_ask_json_prints_type_entities_answer_and_facts(starter_graph):
    out = StringIO()
    call_command("kg_ask", "感冒吃什么药？", "--json", stdout=out)

    data = json.loads(out.getvalue())
    assert data["question_type"] == "disease_drug"
    assert (data["entities"][0]["name"], data["entities"][0]["label"]) == ("感冒", "Disease")
    assert "对乙酰氨基酚" in data["text"] and data["facts"] and data["tokens"][0] == "感冒"


@pytest.mark.django_db
def test_kg_load_starter_twice_creates_nothing_the_second_time(empty_graph):
    call_command("kg_load_starter", stdout=StringIO())
    out = StringIO()
    call_command("kg_load_starter", stdout=out)
    assert "created now: 0 nodes, 0 relationships" in out.getvalue()


@pytest.mark.django_db
def test_kg_import_reports_a_missing_file():
    with pytest.raises(CommandError):
        call_command("kg_import", "/no/such/file.json", "--format", "qasystem", stdout=StringIO())


@pytest.mark.django_db
def test_kg_evaluate_reaches_the_target_accuracy_on_the_starter_graph(starter_graph):
    out = StringIO()
    call_command("kg_evaluate", "--json", stdout=out)

    scores = json.loads(out.getvalue())
    assert scores["questions"] >= 300
    assert scores["classification_accuracy"] >= 0.95 and scores["entity_accuracy"] >= 0.95


def test_starter_graph_has_a_hundred_described_diseases():
    batch = qasystem_parse(services.STARTER_GRAPH_PATH)
    described = batch.properties["Disease"]
    assert batch.records >= 100 and batch.skipped == 0
    for rel in ("HAS_SYMPTOM", "COMMON_DRUG", "NEEDS_CHECK", "BELONGS_TO", "SHOULD_EAT", "SHOULD_NOT_EAT"):
        subjects = {s for (src, r, _), pairs in batch.relations.items() if r == rel for s, _ in pairs}
        assert len(subjects) >= 100, rel
    assert sum(1 for p in described.values() if {"desc", "cause", "prevent"} <= set(p)) >= 100


def test_evaluation_set_covers_every_type_typos_synonyms_and_follow_ups():
    items = evaluation_read(EVALUATION_SET)
    assert len(items) >= 300
    assert len({t for item in items for t in item.types}) == 20
    assert sum(item.follow for item in items) >= 10
    assert sum(1 for item in items if "您是不是想问" in "".join(item.facts)) >= 3
