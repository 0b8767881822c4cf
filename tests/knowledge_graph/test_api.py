"""REST API of the assistant: success, permissions, validation, query counts, schema."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from portal.models import Role
from tests.factories import UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def test_ask_answers_and_keeps_the_conversation(starter_graph):
    client = api_client(UserFactory(role=Role.PATIENT))

    first = client.post("/api/kg/ask/", {"question": "感冒有哪些症状？"}, format="json")
    follow = client.post(
        "/api/kg/ask/", {"question": "那它吃什么药？", "conversation_id": first.data["conversation_id"]}, format="json"
    )

    assert first.status_code == 200 and first.data["question_type"] == "disease_symptom"
    assert follow.status_code == 200 and follow.data["question_type"] == "disease_drug"
    assert follow.data["entities"][0]["name"] == "感冒" and follow.data["entities"][0]["via"] == "context"
    assert follow.data["conversation_id"] == first.data["conversation_id"]
    assert {"subject", "relation", "object"} <= set(follow.data["facts"][0])


def test_ask_needs_a_signed_in_user(starter_graph):
    response = APIClient().post("/api/kg/ask/", {"question": "感冒吃什么药"}, format="json")
    assert response.status_code in (401, 403)


def test_another_users_conversation_is_not_found(starter_graph):
    owner = api_client(UserFactory(role=Role.PATIENT))
    conversation_id = owner.post("/api/kg/ask/", {"question": "感冒有哪些症状"}, format="json").data["conversation_id"]

    response = api_client(UserFactory(role=Role.PATIENT)).post(
        "/api/kg/ask/", {"question": "那它吃什么药", "conversation_id": conversation_id}, format="json"
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    "payload",
    [{}, {"question": ""}, {"question": "   "}, {"question": "问" * 301}, {"question": "感冒", "conversation_id": "x"}],
)
def test_ask_rejects_invalid_input(starter_graph, payload):
    response = api_client(UserFactory(role=Role.DOCTOR)).post("/api/kg/ask/", payload, format="json")
    assert response.status_code == 400


def test_unknown_conversation_id_is_not_found(starter_graph):
    response = api_client(UserFactory()).post(
        "/api/kg/ask/", {"question": "感冒", "conversation_id": str(uuid.uuid4())}, format="json"
    )
    assert response.status_code == 404


def test_entity_detail_lists_properties_and_neighbours(starter_graph):
    response = api_client(UserFactory(role=Role.PATIENT)).get("/api/kg/entities/Disease/感冒/")

    assert response.status_code == 200
    groups = {g["relation"]: [i["name"] for i in g["items"]] for g in response.data["groups"]}
    assert "鼻塞" in groups["HAS_SYMPTOM"] and "呼吸内科" in groups["BELONGS_TO"]
    assert any(p["key"] == "desc" for p in response.data["properties"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/kg/entities/Disease/不存在/",
        "/api/kg/entities/Term/感冒/",
        "/api/kg/entities/Disease/a' MATCH (n) DETACH DELETE n //x/",
    ],
)
def test_missing_entity_or_type_is_not_found_and_changes_nothing(starter_graph, path):
    before = starter_graph.read("MATCH (n) RETURN count(n) AS c")[0]["c"]
    assert api_client(UserFactory()).get(path).status_code == 404
    assert starter_graph.read("MATCH (n) RETURN count(n) AS c")[0]["c"] == before


def test_entity_search_finds_names_and_needs_text(starter_graph):
    client = api_client(UserFactory())
    found = client.get("/api/kg/entities/", {"q": "糖尿"})
    assert found.status_code == 200 and {"label": "Disease", "label_zh": "疾病", "label_text": "疾病", "name": "糖尿病"} in found.data
    assert client.get("/api/kg/entities/", {"q": ""}).status_code == 400


def test_doctor_adds_a_synonym(starter_graph):
    response = api_client(UserFactory(role=Role.DOCTOR)).post(
        "/api/kg/synonyms/create/", {"alias": "糖病", "canonical": "糖尿病", "label": "Disease"}, format="json"
    )
    assert response.status_code == 201 and response.data["canonical"] == "糖尿病"


@pytest.mark.parametrize("role", [Role.PATIENT, Role.ANNOTATOR])
def test_patients_and_annotators_cannot_add_synonyms(starter_graph, role):
    response = api_client(UserFactory(role=role)).post(
        "/api/kg/synonyms/create/", {"alias": "糖病", "canonical": "糖尿病", "label": "Disease"}, format="json"
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "payload",
    [
        {"alias": "糖病", "canonical": "不存在的病", "label": "Disease"},
        {"alias": "糖", "canonical": "糖尿病", "label": "Disease"},
        {"alias": "糖病", "canonical": "糖尿病", "label": "Term"},
    ],
)
def test_invalid_synonyms_are_rejected(starter_graph, payload):
    response = api_client(UserFactory(role=Role.DOCTOR)).post("/api/kg/synonyms/create/", payload, format="json")
    assert response.status_code == 400


def test_synonym_list_uses_one_query(starter_graph, django_assert_num_queries):
    doctor = UserFactory(role=Role.DOCTOR)
    client = api_client(doctor)
    for alias in ("糖病", "糖尿", "消渴"):
        client.post(
            "/api/kg/synonyms/create/", {"alias": alias, "canonical": "糖尿病", "label": "Disease"}, format="json"
        )
    with django_assert_num_queries(1):
        response = client.get("/api/kg/synonyms/")
    assert [s["alias"] for s in response.data] == ["消渴", "糖尿", "糖病"]


def test_openapi_schema_describes_the_assistant():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert "/api/kg/ask/" in schema["paths"]
    assert "AnswerOutput" in schema["components"]["schemas"]
