"""Knowledge-graph errors speak the request's language: Chinese by default, English on Accept-Language: en."""

from __future__ import annotations

import pytest

from portal.models import Role
from tests.factories import UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def test_an_empty_entity_search_is_refused_in_the_request_language():
    client = api_client(UserFactory(role=Role.DOCTOR))

    chinese = client.get("/api/kg/entities/", {"q": " "})
    english = client.get("/api/kg/entities/", {"q": " "}, HTTP_ACCEPT_LANGUAGE="en")

    assert chinese.status_code == english.status_code == 400
    assert chinese.json()["error"] == {"code": "invalid_input", "message": "请在 q 参数中给出名称的一部分。"}
    assert english.json()["error"] == {"code": "invalid_input", "message": "Give part of a name in the q parameter."}
