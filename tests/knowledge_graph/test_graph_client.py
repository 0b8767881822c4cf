"""The Bolt client against the real graph (the embedded FalkorDB, or Neo4j when NEO4J_URI is set)."""

from __future__ import annotations

import pytest

from knowledge_graph.graph import ParameterTooLarge, store
from knowledge_graph.graph.client import FALKORDB_PARAM_BUDGET, escape_value, rendered_size

INJECTIONS = [
    "a' MATCH (n) DETACH DELETE n //",
    "x'}) DETACH DELETE n RETURN 1 //",
    "反斜杠\\' 和引号 \\\\b \\t",
    '"; MATCH (n) DELETE n; //',
]


def node_count(client) -> int:
    return client.read("MATCH (n) RETURN count(n) AS c")[0]["c"]


def test_escape_value_escapes_backslashes_and_quotes_recursively():
    assert escape_value({"k": ["a'b", "c\\d"]}) == {"k": ["a\\'b", "c\\\\d"]}
    assert escape_value(3) == 3


def test_rendered_size_counts_utf8_bytes_quotes_and_escapes():
    assert rendered_size("糖") == 5
    assert rendered_size("a'") == 5
    assert rendered_size(["a", "b"]) == 2 + 2 * (3 + 2)


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_strings_round_trip_as_plain_values_and_delete_nothing(empty_graph, name):
    client = empty_graph
    store.nodes_merge(client, "Disease", ["感冒", name])
    before = node_count(client)

    rows = client.read("MATCH (n:Disease {name: $name}) RETURN n.name AS name", {"name": name})

    assert [r["name"] for r in rows] == [name]
    assert node_count(client) == before == 2


def test_oversized_parameters_are_refused_before_they_reach_the_server(empty_graph):
    if not empty_graph.is_falkordb:
        pytest.skip("only FalkorDB's Bolt server has the parameter buffer limit")
    with pytest.raises(ParameterTooLarge):
        empty_graph.read("RETURN $x AS x", {"x": "字" * FALKORDB_PARAM_BUDGET})
    assert empty_graph.read("RETURN 1 AS one") == [{"one": 1}]


def test_many_rows_are_written_in_batches_without_losing_any(empty_graph):
    names = [f"症状{i:05d}" for i in range(3000)]

    counters = store.nodes_merge(empty_graph, "Symptom", names)

    assert counters.nodes_created == 3000
    assert counters.queries > 1
    assert node_count(empty_graph) == 3000


def test_a_property_larger_than_one_query_is_written_in_pieces(empty_graph):
    store.nodes_merge(empty_graph, "Disease", ["长文本病"])
    text = "很长的描述。" * 1500
    aliases = [f"别名{i}" for i in range(800)]

    store.nodes_set_properties(empty_graph, "Disease", [("长文本病", {"desc": text, "aliases": aliases})])

    props = store.entity_properties(empty_graph, "Disease", "长文本病")
    assert props["desc"] == text and props["aliases"] == aliases


def test_schema_ensure_creates_indexes_once(empty_graph):
    store.schema_ensure(empty_graph)
    assert store.schema_ensure(empty_graph) == []


def test_unknown_label_never_reaches_cypher(empty_graph):
    with pytest.raises(ValueError):
        store.nodes_merge(empty_graph, "Disease) DETACH DELETE (n", ["x"])


def test_version_marker_changes_on_each_bump(empty_graph):
    first = store.version_bump(empty_graph)
    assert store.version_get(empty_graph) == first
    assert store.version_bump(empty_graph) != first
