"""The OpenAPI schema is part of the product: generating it emits no warning and no error (every view
documents its request and response, component and enum names are unique, operation ids do not
collide), and ``check --deploy`` runs drf-spectacular's own schema check."""

from __future__ import annotations

import pytest
from django.urls import path
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.response import Response
from rest_framework.views import APIView


@pytest.fixture
def emitted(monkeypatch):
    """Record every warning and error drf-spectacular emits (instead of printing them)."""
    seen: dict[str, list[str]] = {"warning": [], "error": []}
    monkeypatch.setattr(GENERATOR_STATS, "emit", lambda msg, severity: seen[severity].append(str(msg)))
    return seen


def test_the_schema_generates_without_warnings_or_errors(emitted):
    schema = SchemaGenerator().get_schema(request=None, public=True)

    assert emitted == {"warning": [], "error": []}
    operation_ids = [op["operationId"] for methods in schema["paths"].values() for op in methods.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_followup_operation_documents_a_success_response(emitted):
    schema = SchemaGenerator().get_schema(request=None, public=True)

    followup = {(p, m): op for p, methods in schema["paths"].items() if p.startswith("/api/followup/")
                for m, op in methods.items()}
    undocumented = [f"{m} {p}" for (p, m), op in followup.items()
                    if not any(code.startswith("2") and response.get("content") for code, response in op["responses"].items())]
    assert undocumented == []
    assert {"followup_conversations_list", "followup_conversations_retrieve", "followup_questionnaires_list",
            "followup_questionnaires_retrieve", "followup_me_reports_list",
            "followup_me_reports_retrieve"} <= {op["operationId"] for op in followup.values()}


class _Undocumented(APIView):
    def get(self, request):
        return Response({})


def test_the_recorder_sees_a_view_without_a_schema(emitted):
    """The zero above means something: a view drf-spectacular cannot document is reported."""
    SchemaGenerator(patterns=[path("undocumented/", _Undocumented.as_view())]).get_schema(request=None, public=True)

    assert any("unable to guess serializer" in e for e in emitted["error"])


def test_the_deploy_check_runs_the_schema_check():
    from drf_spectacular.checks import schema_check
    from drf_spectacular.settings import spectacular_settings

    GENERATOR_STATS.reset()  # the check reports what this generation leaves in the stats' caches

    assert spectacular_settings.ENABLE_DJANGO_DEPLOY_CHECK is True
    assert schema_check(None) == []
