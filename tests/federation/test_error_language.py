"""Federation errors speak the request's language: Chinese by default, English on Accept-Language: en."""

from __future__ import annotations

import pytest
from django.urls import reverse

from federation.models import FederatedTask
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


def test_secure_aggregation_with_too_few_clients_is_refused_in_the_request_language(doctor):
    body = {"name": "海马体联邦", "label_table": [{"index": 1, "name": "Anterior", "color": "#ff0000"}],
            "rounds": 3, "local_epochs": 1, "min_clients": 2, "secure_aggregation": True}

    chinese = api_client(doctor).post(reverse("federation-task-list"), body, format="json")
    english = api_client(doctor).post(reverse("federation-task-list"), body, format="json", HTTP_ACCEPT_LANGUAGE="en")

    assert chinese.json()["error"]["code"] == english.json()["error"]["code"] == "secagg_min_clients"
    assert chinese.json()["error"]["message"].startswith("安全聚合每轮至少需要 ")
    assert english.json()["error"]["message"].startswith("Secure aggregation needs at least ")
    assert not FederatedTask.objects.exists()
