"""The knowledge graph's part of a portal backup: exported over Bolt and written back identical."""

from __future__ import annotations

import json

import pytest

from knowledge_graph.backup import graph_backup_counts, graph_backup_export, graph_backup_restore
from knowledge_graph.graph import store

# The backup part reads the configured graph: conftest points NEO4J_DATABASE at the tests' graph (kg_client's).
pytestmark = pytest.mark.django_db


def _everything(client) -> list[str]:
    nodes = client.read("MATCH (n) RETURN labels(n) AS labels, properties(n) AS props")
    rels = client.read("MATCH (a)-[r]->(b) RETURN a.name AS a, type(r) AS t, properties(r) AS p, b.name AS b")
    return sorted(json.dumps(row, ensure_ascii=False, sort_keys=True) for row in nodes + rels)


def test_graph_restored_from_its_export_is_identical(empty_graph, tmp_path):
    client = empty_graph
    long_desc = "肺炎是指终末气道、肺泡和肺间质的炎症。" * 300  # ~ 17 KB: beyond FalkorDB's parameter budget
    store.nodes_merge(client, "Disease", ["肺炎", "it's a \\ name"])
    store.nodes_merge(client, "Symptom", ["咳嗽"])
    store.nodes_merge(client, "Term", ["秋冬季"])
    store.nodes_set_properties(client, "Disease", [("肺炎", {"desc": long_desc, "aliases": ["肺部感染", "肺 炎"],
                                                           "cured_prob": "70%"}),
                                                  ("it's a \\ name", {"desc": "quote ' and backslash \\ kept"})])
    store.relations_merge(client, "Disease", "HAS_SYMPTOM", "Symptom", [["肺炎", "咳嗽"]])
    store.relations_merge(client, "Disease", "ATTRIBUTE", "Term", [["肺炎", "秋冬季", "高发季节"]])
    store.degrees_update(client)
    store.version_bump(client)
    before = _everything(client)

    counts = graph_backup_export(tmp_path)
    store.graph_clear(client)
    restored = graph_backup_restore(tmp_path)

    assert counts == restored == {"nodes": 5, "relationships": 2}
    assert _everything(client) == before
    assert graph_backup_counts() == counts


def test_export_refuses_a_label_outside_the_schema(empty_graph, tmp_path):
    empty_graph.write("CREATE (:Alien {name: 'x'})")

    with pytest.raises(ValueError, match="Alien"):
        graph_backup_export(tmp_path)


def test_export_refuses_a_property_outside_the_schema(empty_graph, tmp_path):
    store.nodes_merge(empty_graph, "Disease", ["肺炎"])
    empty_graph.write("MATCH (n:Disease) SET n.secret = 'x'")

    with pytest.raises(ValueError, match="secret"):
        graph_backup_export(tmp_path)
