"""Request bodies built to exhaust the server get a 400, never a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from portal.parsers import json_depth_exceeds
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT, "[" * 100000 + "]" * 100000])
def test_deep_json_to_the_token_endpoint_is_a_400_without_login(client, body):
    response = client.post(reverse("token-obtain"), data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_deep_json_to_an_authenticated_endpoint_is_a_400(doctor):
    response = api_client(doctor).post(reverse("label-set-list"), data=DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_json_within_the_depth_limit_still_parses(doctor, settings):
    nested = "[" * settings.API_JSON_MAX_DEPTH + "]" * settings.API_JSON_MAX_DEPTH
    response = api_client(doctor).post(reverse("label-set-list"), data=nested, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] != "parse_error"  # the serializer's own refusal


def test_depth_is_counted_without_recursion():
    value: list = []
    for _ in range(50000):
        value = [value]
    assert json_depth_exceeds(value, 64)
    assert not json_depth_exceeds({"a": [1, {"b": 2}]}, 3)
    assert json_depth_exceeds({"a": [1, {"b": [2]}]}, 3)
