"""Questionnaire errors speak the request's language: Chinese by default, English on Accept-Language: en."""

from __future__ import annotations

import pytest

from tests.helpers import api_client

pytestmark = pytest.mark.django_db

ONE_OPTION = {"items": [{"link_id": "a", "type": "single_choice", "text": "?", "options": [{"value": "x"}]}]}


def test_a_bad_questionnaire_definition_is_refused_in_the_request_language_with_its_place(doctor):
    body = {"code": "bad", "title": "坏", "definition": ONE_OPTION}

    chinese = api_client(doctor).post("/api/followup/questionnaires/", body, format="json")
    english = api_client(doctor).post("/api/followup/questionnaires/", body, format="json", HTTP_ACCEPT_LANGUAGE="en")

    assert chinese.json()["error"]["code"] == english.json()["error"]["code"] == "invalid_definition"
    assert chinese.json()["error"]["message"] == "items[0].options: 选择题至少需要两个选项"
    assert english.json()["error"]["message"] == "items[0].options: a choice question needs at least two options"
