"""Fixtures of the knowledge-graph tests: the real graph (embedded FalkorDB or NEO4J_URI) and its data.

The graph database is "kg_test" (``NEO4J_TEST_DATABASE`` overrides it for an external Neo4j). The
embedded FalkorDB ignores database names over Bolt (see ``knowledge_graph.graph.client``), so there
the isolation comes from the test session's own FalkorDB server; fixtures clear the graph before
loading what a test needs.
"""

from __future__ import annotations

import os

import pytest

from knowledge_graph import services
from knowledge_graph.graph import graph_client_create, store
from knowledge_graph.importers import batch_write, qasystem_parse

TEST_DATABASE = os.environ.get("NEO4J_TEST_DATABASE", "kg_test")
_loaded = {"starter": False}


@pytest.fixture(autouse=True)
def _kg_test_database(settings):
    settings.NEO4J_DATABASE = TEST_DATABASE


@pytest.fixture(scope="session")
def kg_client(embedded_services):
    """A client of the test graph for the whole session."""
    from django.conf import settings

    client = graph_client_create(
        uri=settings.NEO4J_URI, user=settings.NEO4J_USER, password=settings.NEO4J_PASSWORD, database=TEST_DATABASE
    )
    yield client
    client.close()
    services.graph_clients_close()


@pytest.fixture
def empty_graph(kg_client):
    """An empty graph; the starter graph is loaded again by the next test that needs it."""
    store.graph_clear(kg_client)
    _loaded["starter"] = False
    services.qa_engines_clear()
    yield kg_client
    store.graph_clear(kg_client)
    _loaded["starter"] = False
    services.qa_engines_clear()


@pytest.fixture
def starter_graph(kg_client):
    """The shipped starter graph (loaded once, again after a test emptied the graph)."""
    if not _loaded["starter"]:
        store.graph_clear(kg_client)
        batch_write(kg_client, qasystem_parse(services.STARTER_GRAPH_PATH), source="starter")
        _loaded["starter"] = True
        services.qa_engines_clear()
    return kg_client
