"""Schema set-up, batched writes and the reads the portal needs, as functions over a GraphClient.

Every Cypher text here is a constant or is assembled only from the schema's labels, relationship
types and property keys (checked by :mod:`knowledge_graph.qa.schema`); values always travel as
parameters.

Indexes and constraints differ between the two servers:

- Neo4j 5: ``CREATE CONSTRAINT … IF NOT EXISTS FOR (n:Label) REQUIRE n.name IS UNIQUE`` (which also
  creates the index).
- FalkorDB: ``CREATE INDEX FOR (n:Label) ON (n.name)`` (an exact-match range index), created only
  when ``CALL db.indexes()`` does not list it already (FalkorDB has no ``IF NOT EXISTS`` and fails
  on a second ``CREATE INDEX``). FalkorDB's unique constraints are created with the Redis command
  ``GRAPH.CONSTRAINT CREATE``, which Bolt cannot send; there, uniqueness of names rests on the
  importers writing every node with ``MERGE`` on the indexed name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..qa.schema import Label, Rel, check_label, check_property, check_relation
from .client import FALKORDB_PARAM_BUDGET, GraphClient, ParameterTooLarge, WriteCounters, rendered_size

META_LABEL = "KGMeta"
INDEXED_LABELS: tuple[str, ...] = (*[str(label) for label in Label], META_LABEL)
_META_KEY = {META_LABEL: "key"}


def schema_ensure(client: GraphClient) -> list[str]:
    """Create the name indexes (FalkorDB) or uniqueness constraints (Neo4j) that are missing.

    Returns
    -------
    list of str
        The labels for which an index or constraint was created now (empty when all existed).
    """
    created: list[str] = []
    if client.is_falkordb:
        existing = {
            row["label"]
            for row in client.read("CALL db.indexes() YIELD label, properties RETURN label, properties")
            if "name" in (row.get("properties") or []) or "key" in (row.get("properties") or [])
        }
        for label in INDEXED_LABELS:
            if label in existing:
                continue
            key = _META_KEY.get(label, "name")
            client.write(f"CREATE INDEX FOR (n:{label}) ON (n.{key})")
            created.append(label)
        return created
    existing = {row["name"] for row in client.read("SHOW CONSTRAINTS YIELD name RETURN name")}
    for label in INDEXED_LABELS:
        name = f"kg_{label.lower()}_name"
        if name in existing:
            continue
        key = _META_KEY.get(label, "name")
        client.write(f"CREATE CONSTRAINT {name} IF NOT EXISTS FOR (n:{label}) REQUIRE n.{key} IS UNIQUE")
        created.append(label)
    return created


# -- writes ----------------------------------------------------------------------------------


def nodes_merge(
    client: GraphClient, label: str, names: Sequence[str], *, on_batch: Callable[[int], None] | None = None
) -> WriteCounters:
    """MERGE one node per name under ``label`` (idempotent)."""
    label = check_label(label)
    return client.write_rows(f"UNWIND $rows AS name MERGE (:{label} {{name: name}})", names, on_batch=on_batch)


def nodes_set_properties(
    client: GraphClient,
    label: str,
    rows: Sequence[tuple[str, dict[str, Any]]],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> WriteCounters:
    """Set schema properties on existing nodes, given as ``(name, {key: value})`` rows.

    Values replace what the node had (so a second import changes nothing). A row too large for one
    FalkorDB query is written one property at a time, and a single string or list too large for one
    query is written in pieces (the first piece set, the rest appended).
    """
    label = check_label(label)
    total = WriteCounters()
    small: list[dict[str, Any]] = []
    limit = FALKORDB_PARAM_BUDGET - 200
    for name, props in rows:
        for key in props:
            check_property(key)
        row = {"name": name, "props": props}
        if not client.is_falkordb or rendered_size(row) < limit:
            small.append(row)
            continue
        for key, value in props.items():
            total.add(_property_set_large(client, label, name, key, value, limit=limit))
    total.add(
        client.write_rows(
            f"UNWIND $rows AS r MATCH (n:{label} {{name: r.name}}) SET n += r.props", small, on_batch=on_batch
        )
    )
    return total


def _property_set_large(
    client: GraphClient, label: str, name: str, key: str, value: Any, *, limit: int
) -> WriteCounters:
    pieces: list[Any]
    budget = limit - rendered_size(name) - 64
    if rendered_size(value) < budget:
        pieces = [value]
    elif isinstance(value, str):
        pieces, piece = [], ""
        for char in value:
            if rendered_size(piece + char) >= budget:
                pieces.append(piece)
                piece = ""
            piece += char
        pieces.append(piece)
    elif isinstance(value, (list, tuple)):
        pieces, piece = [], []
        for item in value:
            if rendered_size(item) + 4 >= budget:
                raise ParameterTooLarge(f"one list item of {key!r} on {name!r} is too large for FalkorDB")
            if piece and rendered_size([*piece, item]) >= budget:
                pieces.append(piece)
                piece = []
            piece.append(item)
        pieces.append(piece)
    else:
        raise ParameterTooLarge(f"property {key!r} of {name!r} is too large for FalkorDB")
    total = WriteCounters()
    total.add(
        client.write(f"MATCH (n:{label} {{name: $name}}) SET n.{key} = $value", {"name": name, "value": pieces[0]})
    )
    for piece in pieces[1:]:
        total.add(
            client.write(
                f"MATCH (n:{label} {{name: $name}}) SET n.{key} = n.{key} + $value", {"name": name, "value": piece}
            )
        )
    return total


def relations_merge(
    client: GraphClient,
    source_label: str,
    rel: str,
    target_label: str,
    pairs: Sequence[Sequence[str]],
    *,
    on_batch: Callable[[int], None] | None = None,
) -> WriteCounters:
    """MERGE ``(source)-[:rel]->(target)`` for ``(source name, target name)`` pairs.

    For :attr:`Rel.RELATED` and :attr:`Rel.ATTRIBUTE` each pair carries a third item, the
    predicate, stored on the relationship. Both end nodes must exist (merge them first).
    """
    source_label, target_label, rel = check_label(source_label), check_label(target_label), check_relation(rel)
    if rel in (Rel.RELATED, Rel.ATTRIBUTE):
        query = (
            f"UNWIND $rows AS r MATCH (a:{source_label} {{name: r[0]}}) MATCH (b:{target_label} {{name: r[1]}}) "
            f"MERGE (a)-[:{rel} {{predicate: r[2]}}]->(b)"
        )
    else:
        query = (
            f"UNWIND $rows AS r MATCH (a:{source_label} {{name: r[0]}}) MATCH (b:{target_label} {{name: r[1]}}) "
            f"MERGE (a)-[:{rel}]->(b)"
        )
    return client.write_rows(query, [list(p) for p in pairs], on_batch=on_batch)


def degrees_update(client: GraphClient, labels: Iterable[str] | None = None) -> None:
    """Store on every entity node the number of its typed relationships (``degree``).

    Answers list the best-connected neighbours first, so a shortened list keeps the common ones.
    Generic ``ATTRIBUTE`` edges to literal terms do not count.
    """
    for label in labels or [str(label) for label in Label if label != Label.TERM]:
        label = check_label(label)
        client.write(
            f"MATCH (n:{label}) OPTIONAL MATCH (n)-[r]-() WHERE type(r) <> 'ATTRIBUTE' "
            "WITH n, count(r) AS c SET n.degree = c"
        )


def version_bump(client: GraphClient) -> str:
    """Record that the graph changed (the QA pipeline reloads its vocabulary when this changes)."""
    value = f"{time.time():.6f}"
    client.write(f"MERGE (m:{META_LABEL} {{key: 'version'}}) SET m.value = $value", {"value": value})
    return value


def version_get(client: GraphClient) -> str:
    """Return the graph's change marker ("" for a graph never written by an importer)."""
    rows = client.read(f"MATCH (m:{META_LABEL} {{key: 'version'}}) RETURN m.value AS value")
    return str(rows[0]["value"]) if rows else ""


def graph_clear(client: GraphClient, *, batch: int = 20000) -> int:
    """Delete every node and relationship of the graph database, in batches. Return nodes deleted."""
    deleted = 0
    while True:
        rows = client.write_returning(
            "MATCH (n) WITH n LIMIT $batch DETACH DELETE n RETURN count(*) AS deleted", {"batch": batch}
        )
        count = int(rows[0]["deleted"]) if rows else 0
        deleted += count
        if count < batch:
            return deleted


def graph_counts(client: GraphClient) -> dict[str, dict[str, int]]:
    """Return ``{"nodes": {label: count}, "relationships": {type: count}}`` for the schema's types."""
    nodes = {}
    for label in Label:
        rows = client.read(f"MATCH (n:{label}) RETURN count(n) AS c")
        nodes[str(label)] = int(rows[0]["c"])
    rels = {}
    for rel in Rel:
        rows = client.read(f"MATCH ()-[r:{rel}]->() RETURN count(r) AS c")
        rels[str(rel)] = int(rows[0]["c"])
    return {"nodes": nodes, "relationships": rels}


# -- reads -----------------------------------------------------------------------------------


def vocabulary_rows(client: GraphClient, label: str, *, page: int = 20000) -> list[dict[str, Any]]:
    """Return ``name``, ``aliases`` and ``degree`` of every node of ``label``, read page by page."""
    label = check_label(label)
    rows: list[dict[str, Any]] = []
    skip = 0
    while True:
        chunk = client.read(
            f"MATCH (n:{label}) RETURN n.name AS name, n.aliases AS aliases, n.degree AS degree "
            "ORDER BY n.name SKIP $skip LIMIT $limit",
            {"skip": skip, "limit": page},
        )
        rows.extend(chunk)
        if len(chunk) < page:
            return rows
        skip += page


def entity_properties(client: GraphClient, label: str, name: str) -> dict[str, Any] | None:
    """Return the properties of the ``label`` node called ``name``, or None."""
    label = check_label(label)
    rows = client.read(f"MATCH (n:{label} {{name: $name}}) RETURN properties(n) AS props", {"name": name})
    return dict(rows[0]["props"]) if rows else None


def entity_neighbours(client: GraphClient, label: str, name: str, *, limit: int = 300) -> list[dict[str, Any]]:
    """Return the relationships of one node: direction, type, predicate and the other node."""
    label = check_label(label)
    return client.read(
        f"MATCH (n:{label} {{name: $name}})-[r]-(m) "
        "RETURN type(r) AS rel, r.predicate AS predicate, startNode(r) = n AS outgoing, "
        "labels(m)[0] AS label, m.name AS name, coalesce(m.degree, 0) AS degree "
        "ORDER BY rel, predicate, degree DESC, name LIMIT $limit",
        {"name": name, "limit": limit},
    )


def entity_search(client: GraphClient, text: str, *, limit: int = 30) -> list[dict[str, Any]]:
    """Return entities whose name starts with or contains ``text`` (best connected first)."""
    found: list[dict[str, Any]] = []
    for label in Label:
        if label == Label.TERM:
            continue
        found.extend(
            client.read(
                f"MATCH (n:{label}) WHERE n.name CONTAINS $text "
                "RETURN labels(n)[0] AS label, n.name AS name, coalesce(n.degree, 0) AS degree "
                "ORDER BY degree DESC, name LIMIT $limit",
                {"text": text, "limit": limit},
            )
        )
    found.sort(key=lambda row: (not row["name"].startswith(text), -row["degree"], len(row["name"])))
    return found[:limit]


__all__ = [
    "META_LABEL",
    "degrees_update",
    "entity_neighbours",
    "entity_properties",
    "entity_search",
    "graph_clear",
    "graph_counts",
    "nodes_merge",
    "nodes_set_properties",
    "relations_merge",
    "schema_ensure",
    "version_bump",
    "version_get",
    "vocabulary_rows",
]
