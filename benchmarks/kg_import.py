"""Time the full CMeKG import (967,409 triples + the entity vocabularies) against a per-row baseline.

Our import parses the file, then writes with batched ``UNWIND … MERGE`` queries. The baseline is
what QASystemOnMedicalKG's ``build_medicalgraph.py`` does (one CREATE/MERGE statement per node and
per relationship): it is run on the first 3,000 node rows and 3,000 relationship rows of the same
batch and extrapolated to the full row counts, since running it in full would take far longer. A
second import of the same data is timed as well (it must create nothing).

Run: ``python benchmarks/kg_import.py`` (starts a private FalkorDB; set NEO4J_URI, NEO4J_USER,
NEO4J_PASSWORD, NEO4J_DATABASE to measure a Neo4j 5 instead; that graph is emptied first).
"""

from __future__ import annotations

import time

from kg_common import TRIPLES, VOCABULARY, bench_graph

from knowledge_graph.graph import store
from knowledge_graph.importers import batch_write, cmekg_parse
from knowledge_graph.importers.cmekg import vocabulary_read

SAMPLE_ROWS = 3000


def baseline_per_row(client, batch) -> tuple[float, float]:
    """Return seconds per node row and per relationship row, one statement per row."""
    nodes = [(label, name) for label, names in batch.nodes.items() for name in sorted(names)][:SAMPLE_ROWS]
    start = time.perf_counter()
    for label, name in nodes:
        client.write(f"MERGE (n:{label} {{name: $name}})", {"name": name})
    node_s = (time.perf_counter() - start) / len(nodes)
    rels = [(key, pair) for key, pairs in batch.relations.items() for pair in sorted(pairs)][:SAMPLE_ROWS]
    start = time.perf_counter()
    for (source, rel, target), pair in rels:
        query = f"MATCH (a:{source} {{name: $s}}) MATCH (b:{target} {{name: $t}}) MERGE (a)-[:{rel}"
        query += " {predicate: $p}]->(b)" if len(pair) == 3 else "]->(b)"
        params = {"s": pair[0], "t": pair[1]} | ({"p": pair[2]} if len(pair) == 3 else {})
        client.write(query, params)
    rel_s = (time.perf_counter() - start) / len(rels)
    return node_s, rel_s


def main() -> None:
    start = time.perf_counter()
    vocabulary = vocabulary_read(VOCABULARY)
    batch = cmekg_parse(TRIPLES, vocabulary=vocabulary)
    parse_s = time.perf_counter() - start
    node_rows = batch.node_count()
    rel_rows = batch.relation_count()
    prop_rows = sum(len(v) for v in batch.properties.values())
    print(
        f"parsed {batch.records:,} triples + {len(vocabulary):,} vocabulary names in {parse_s:.1f} s: "
        f"{node_rows:,} nodes, {rel_rows:,} relationships, {prop_rows:,} property rows"
    )

    with bench_graph() as client:
        print(f"graph: {client.dialect} at {client.uri}")
        summary = batch_write(client, batch, source=TRIPLES.name)
        print(
            f"import (batched UNWIND … MERGE): write {summary.write_s:.1f} s, total {parse_s + summary.write_s:.1f} s; "
            f"created {summary.nodes_created:,} nodes, {summary.relationships_created:,} relationships "
            f"in {summary.queries:,} queries"
        )
        again = batch_write(client, cmekg_parse(TRIPLES, vocabulary=vocabulary), source=TRIPLES.name)
        print(
            f"second import: write {again.write_s:.1f} s; created {again.nodes_created} nodes, "
            f"{again.relationships_created} relationships, set {again.properties_set} properties"
        )
        counts = store.graph_counts(client)
        print("nodes: " + ", ".join(f"{k} {v:,}" for k, v in counts["nodes"].items()))
        print("relationships: " + ", ".join(f"{k} {v:,}" for k, v in counts["relationships"].items()))

        store.graph_clear(client)
        store.schema_ensure(client)
        node_s, rel_s = baseline_per_row(client, batch)
        baseline_s = node_s * node_rows + rel_s * rel_rows
        print(
            f"baseline (one statement per row, {SAMPLE_ROWS:,}-row samples): {node_s * 1000:.2f} ms/node, "
            f"{rel_s * 1000:.2f} ms/relationship → {baseline_s / 60:.1f} min extrapolated"
        )
        print(f"ratio: the batched import is {baseline_s / summary.write_s:.1f}× faster than the per-row baseline")


if __name__ == "__main__":
    main()
