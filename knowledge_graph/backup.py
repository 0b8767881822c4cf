"""The knowledge graph's part of a portal backup (registered in ``KnowledgeGraphConfig.ready``).

The graph is not only the starter graph: administrators import CMeKG and QASystemOnMedicalKG files
(``kg_import``) that the portal does not keep, so the backup exports the graph itself: every node
(labels and properties) and every relationship (type, properties, and its end nodes by label and
name, which is unique within a label) as JSON Lines, read page by page over Bolt. The Cypher used
(``id()``, ``labels()``, ``properties()``, ``type()``, keyset paging on ``id``) runs on both Neo4j 5
and FalkorDB; the restore writes through :mod:`knowledge_graph.graph.store` (``MERGE`` on the
indexed name, FalkorDB's parameter budget respected), so a backup taken from one loads into the other.
Only the schema's labels, relationship types and property keys are accepted, on export already.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .connection import graph_client
from .graph import store
from .graph.client import FALKORDB_PARAM_BUDGET, rendered_size
from .qa.schema import Rel, check_label, check_property, check_relation

NODES_FILE = "nodes.jsonl"
RELATIONSHIPS_FILE = "relationships.jsonl"
_PAGE = 20000
_FALKORDB_ROW_LIMIT = FALKORDB_PARAM_BUDGET - 200
_FLUSH_ROWS = 2000
_PREDICATE_RELS = {str(Rel.RELATED), str(Rel.ATTRIBUTE)}


def _node_key(label: str) -> str:
    return "key" if label == store.META_LABEL else "name"


def _check_node(labels: list[str], props: dict) -> str:
    if len(labels) != 1:
        raise ValueError(f"a graph node has labels {labels!r}; the schema gives every node exactly one")
    label = labels[0]
    if label != store.META_LABEL:
        check_label(label)
        for key in props:
            if key != "name":
                check_property(key)
    if not isinstance(props.get(_node_key(label)), str):
        raise ValueError(  # noqa: TRY004 (a bad graph, not a bad argument type)
            f"a {label} node has no {_node_key(label)}")
    return label


def graph_backup_export(folder: Path) -> dict[str, int]:
    """Write every node and relationship of the configured graph under ``folder``.

    Returns
    -------
    dict
        ``{"nodes": n, "relationships": m}``.

    Raises
    ------
    ValueError
        A node or relationship outside the schema (it could not be restored).
    """
    client = graph_client()
    nodes = relationships = 0
    after = -1
    with open(folder / NODES_FILE, "w", encoding="utf-8") as out:
        while True:
            rows = client.read(
                "MATCH (n) WHERE id(n) > $after RETURN id(n) AS id, labels(n) AS labels, properties(n) AS props "
                "ORDER BY id LIMIT $limit",
                {"after": after, "limit": _PAGE},
            )
            for row in rows:
                label = _check_node(list(row["labels"]), dict(row["props"]))
                line = {"label": label, "props": row["props"]}
                out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
            nodes += len(rows)
            if len(rows) < _PAGE:
                break
            after = rows[-1]["id"]
    after = -1
    with open(folder / RELATIONSHIPS_FILE, "w", encoding="utf-8") as out:
        while True:
            rows = client.read(
                "MATCH (a)-[r]->(b) WHERE id(r) > $after RETURN id(r) AS id, type(r) AS type, properties(r) AS props, "
                "labels(a) AS source_labels, a.name AS source, labels(b) AS target_labels, b.name AS target "
                "ORDER BY id LIMIT $limit",
                {"after": after, "limit": _PAGE},
            )
            for row in rows:
                rel = check_relation(row["type"])
                props = dict(row["props"] or {})
                if set(props) - ({"predicate"} if rel in _PREDICATE_RELS else set()):
                    raise ValueError(f"a {rel} relationship has properties outside the schema: {sorted(props)}")
                line = {
                    "type": rel,
                    "source": [check_label(row["source_labels"][0]), row["source"]],
                    "target": [check_label(row["target_labels"][0]), row["target"]],
                    "predicate": props.get("predicate"),
                }
                out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
            relationships += len(rows)
            if len(rows) < _PAGE:
                break
            after = rows[-1]["id"]
    return {"nodes": nodes, "relationships": relationships}


def _lines(path: Path):
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            if line.strip():
                yield json.loads(line)


def _nodes_flush(client, label: str, rows: list[dict]) -> None:
    if label == store.META_LABEL:
        for props in rows:
            client.write(f"MERGE (m:{store.META_LABEL} {{key: $key}}) SET m += $props",
                         {"key": props["key"], "props": props})
        return
    # One MERGE … SET per batch; a node whose properties exceed FalkorDB's parameter budget goes through
    # the store's piecewise writer instead.
    small = [p for p in rows if not client.is_falkordb or rendered_size(p) < _FALKORDB_ROW_LIMIT]
    large = [p for p in rows if client.is_falkordb and rendered_size(p) >= _FALKORDB_ROW_LIMIT]
    client.write_rows(f"UNWIND $rows AS r MERGE (n:{label} {{name: r.name}}) SET n += r", small)
    if large:
        store.nodes_merge(client, label, [props["name"] for props in large])
        store.nodes_set_properties(client, label,
                                   [(p["name"], {k: v for k, v in p.items() if k != "name"}) for p in large])


def graph_backup_restore(folder: Path) -> dict[str, int]:
    """Write the nodes and relationships of a backup into the configured graph; return the graph's counts.

    The nodes are merged first (by label and name), then the relationships between them; rows are
    written in batches of a few thousand, so the files are never read whole.
    """
    from .services import qa_engines_clear

    client = graph_client()
    store.schema_ensure(client)
    pending: dict[str, list[dict]] = defaultdict(list)
    for row in _lines(folder / NODES_FILE):
        label = _check_node([row["label"]], row["props"])
        pending[label].append(row["props"])
        if len(pending[label]) >= _FLUSH_ROWS:
            _nodes_flush(client, label, pending.pop(label))
    for label, rows in pending.items():
        _nodes_flush(client, label, rows)
    pairs: dict[tuple[str, str, str], list[list[str]]] = defaultdict(list)

    def flush(key):
        source_label, rel, target_label = key
        store.relations_merge(client, source_label, rel, target_label, pairs.pop(key))

    for row in _lines(folder / RELATIONSHIPS_FILE):
        key = (row["source"][0], row["type"], row["target"][0])
        pair = [row["source"][1], row["target"][1]]
        if row["type"] in _PREDICATE_RELS:
            pair.append(row.get("predicate") or "")
        pairs[key].append(pair)
        if len(pairs[key]) >= _FLUSH_ROWS:
            flush(key)
    for key in list(pairs):
        flush(key)
    qa_engines_clear()
    return graph_backup_counts()


def graph_backup_counts() -> dict[str, int]:
    """Return ``{"nodes": n, "relationships": m}`` of the configured graph."""
    client = graph_client()
    nodes = client.read("MATCH (n) RETURN count(n) AS c")[0]["c"]
    relationships = client.read("MATCH ()-[r]->() RETURN count(r) AS c")[0]["c"]
    return {"nodes": int(nodes), "relationships": int(relationships)}


def graph_backup_count() -> int:
    """Return the number of nodes in the configured graph (0: empty)."""
    return graph_backup_counts()["nodes"]


def graph_backup_clear() -> None:
    """Delete the whole graph (``restore --force`` only)."""
    from .services import graph_reset

    graph_reset()
