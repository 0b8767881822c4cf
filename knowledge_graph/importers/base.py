"""What every importer produces (a :class:`GraphBatch`) and how it is written to the graph.

Parsing is separate from writing: an importer turns a file into nodes, properties and relations held
in memory (deduplicated), and :func:`batch_write` writes them with batched ``UNWIND … MERGE`` queries
in a fixed order (schema, nodes, properties, relations, degrees, version marker). Every write is a
MERGE or a property SET to the same value, so importing the same file twice changes nothing; the
summary's ``created`` counts come from the server's counters and are zero the second time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..graph import store
from ..graph.client import GraphClient, WriteCounters
from ..qa.schema import REL_ENDPOINTS, Label, Rel

#: Called as ``progress(stage, rows_done_now)``; ``stage`` names the part being written.
Progress = Callable[[str, int], None]


@dataclass
class GraphBatch:
    """Nodes, node properties and relations parsed from one source, ready to be written."""

    nodes: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    properties: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    relations: dict[tuple[str, str, str], set[tuple[str, ...]]] = field(default_factory=lambda: defaultdict(set))
    records: int = 0  # input records read (lines, triples, objects)
    skipped: int = 0  # input records ignored (malformed or empty)

    def node(self, label: str, name: str) -> str | None:
        """Add a node; return its cleaned name (None when the name is empty)."""
        name = clean_name(name)
        if name:
            self.nodes[label].add(name)
        return name or None

    def relate(
        self, source_label: str, source: str, rel: str, target_label: str, target: str, predicate: str = ""
    ) -> None:
        """Add both nodes and the relation between them."""
        s = self.node(source_label, source)
        t = self.node(target_label, target)
        if not s or not t or (s == t and source_label == target_label):
            return
        key = (source_label, rel, target_label)
        self.relations[key].add((s, t, predicate) if rel in (Rel.RELATED, Rel.ATTRIBUTE) else (s, t))

    def set_property(self, label: str, name: str, key: str, value: Any) -> None:
        """Set one property value (replacing what this batch had for it)."""
        name = clean_name(name)
        if not name or value in (None, "", []):
            return
        self.nodes[label].add(name)
        self.properties[label].setdefault(name, {})[key] = value

    def add_to_list(self, label: str, name: str, key: str, values: list[str]) -> None:
        """Append values to a list property, keeping the first occurrence of each."""
        name = clean_name(name)
        values = [v for v in (clean_text(v) for v in values) if v]
        if not name or not values:
            return
        self.nodes[label].add(name)
        current = self.properties[label].setdefault(name, {}).setdefault(key, [])
        seen = set(current)
        for value in values:
            if value not in seen:
                current.append(value)
                seen.add(value)

    def relation_count(self) -> int:
        return sum(len(v) for v in self.relations.values())

    def node_count(self) -> int:
        return sum(len(v) for v in self.nodes.values())


@dataclass
class ImportSummary:
    """What an import read and wrote."""

    source: str
    records: int = 0
    skipped: int = 0
    nodes: dict[str, int] = field(default_factory=dict)  # in the batch, by label
    relations: dict[str, int] = field(default_factory=dict)  # in the batch, by type
    nodes_created: int = 0
    relationships_created: int = 0
    properties_set: int = 0
    queries: int = 0
    parse_s: float = 0.0
    write_s: float = 0.0

    def lines(self) -> list[str]:
        """Return the summary as printable lines."""
        out = [
            f"source: {self.source}",
            f"records read: {self.records}  skipped: {self.skipped}",
            "nodes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.nodes.items()) if v),
            "relations: " + ", ".join(f"{k} {v}" for k, v in sorted(self.relations.items()) if v),
            f"created now: {self.nodes_created} nodes, {self.relationships_created} relationships; "
            f"properties set: {self.properties_set}; queries: {self.queries}",
            f"time: parse {self.parse_s:.1f} s, write {self.write_s:.1f} s",
        ]
        return out

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def clean_name(value: Any) -> str:
    """Return an entity name stripped of surrounding blanks and with inner whitespace collapsed."""
    if not isinstance(value, str):
        return ""
    return " ".join(value.split()).strip()


def clean_text(value: Any) -> str:
    """Return a text value stripped of surrounding blanks ("" for non-strings)."""
    return value.strip() if isinstance(value, str) else ""


def batch_write(
    client: GraphClient, batch: GraphBatch, *, source: str, progress: Progress | None = None
) -> ImportSummary:
    """Write ``batch`` to the graph and return the summary.

    Parameters
    ----------
    client : GraphClient
        The target graph.
    batch : GraphBatch
        Parsed nodes, properties and relations.
    source : str
        Shown in the summary (a file name).
    progress : callable, optional
        ``progress(stage, rows)`` after each query; the total is :func:`batch_rows`.
    """
    start = time.perf_counter()
    summary = ImportSummary(source=source, records=batch.records, skipped=batch.skipped)
    counters = WriteCounters()

    def tick(stage: str) -> Callable[[int], None] | None:
        if progress is None:
            return None
        return lambda rows: progress(stage, rows)

    store.schema_ensure(client)
    for label in _ordered_labels(batch.nodes):
        names = sorted(batch.nodes[label])
        summary.nodes[str(label)] = len(names)
        counters.add(store.nodes_merge(client, label, names, on_batch=tick(f"nodes {label}")))
    for label, by_name in batch.properties.items():
        rows = sorted(by_name.items())
        counters.add(store.nodes_set_properties(client, label, rows, on_batch=tick(f"properties {label}")))
    for (source_label, rel, target_label), pairs in sorted(batch.relations.items()):
        summary.relations[str(rel)] = summary.relations.get(str(rel), 0) + len(pairs)
        counters.add(
            store.relations_merge(
                client, source_label, rel, target_label, sorted(pairs), on_batch=tick(f"relations {rel}")
            )
        )
    store.degrees_update(client, [label for label in batch.nodes if label != Label.TERM])
    store.version_bump(client)
    summary.nodes_created = counters.nodes_created
    summary.relationships_created = counters.relationships_created
    summary.properties_set = counters.properties_set
    summary.queries = counters.queries
    summary.write_s = time.perf_counter() - start
    return summary


def batch_rows(batch: GraphBatch) -> int:
    """Return the number of rows :func:`batch_write` sends (the progress bar's total)."""
    return batch.node_count() + sum(len(v) for v in batch.properties.values()) + batch.relation_count()


def _ordered_labels(nodes: dict[str, set[str]]) -> list[str]:
    order = [str(label) for label in Label]
    return sorted(nodes, key=lambda label: order.index(label) if label in order else len(order))


def endpoints(rel: Rel) -> tuple[str, str]:
    """Return the (source label, target label) of a typed relation."""
    source, target = REL_ENDPOINTS[rel]
    return str(source), str(target)
