"""Answer latency over the evaluation set on the full graph (CMeKG + vocabularies + starter graph).

Loads the full graph into a private FalkorDB (or the graph of NEO4J_URI), builds the QA engine
(vocabulary, Aho–Corasick automaton, jieba dictionary, edit-distance index), answers every question
of the evaluation set once to warm up, then three more times, and prints p50/p95/max of the answer
latency (recognition, classification, graph queries and composition), the engine build time and
the classification accuracy on this graph. Baseline, measured in the same run: entity recognition
by scanning every name with ``str.find`` (what a dictionary scan without an automaton costs) against
the Aho–Corasick pass.

Run: ``python benchmarks/kg_latency.py``
"""

from __future__ import annotations

import statistics
import time

from kg_common import REPO, TRIPLES, VOCABULARY, bench_graph

from knowledge_graph.graph import store
from knowledge_graph.importers import batch_write, cmekg_parse, qasystem_parse
from knowledge_graph.importers.cmekg import vocabulary_read
from knowledge_graph.qa import pipeline_build, vocabulary_build
from knowledge_graph.qa.evaluation import evaluate, evaluation_read
from knowledge_graph.qa.schema import ENTITY_LABELS

DATA = REPO / "knowledge_graph" / "data"
REPEATS = 3


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    items = evaluation_read(DATA / "evaluation.tsv")
    with bench_graph() as client:
        start = time.perf_counter()
        batch_write(client, cmekg_parse(TRIPLES, vocabulary=vocabulary_read(VOCABULARY)), source="cmekg")
        batch_write(client, qasystem_parse(DATA / "starter_graph.jsonl"), source="starter")
        print(f"full graph loaded in {time.perf_counter() - start:.1f} s ({client.dialect})")

        start = time.perf_counter()
        rows = {str(label): store.vocabulary_rows(client, label) for label in ENTITY_LABELS}
        vocabulary = vocabulary_build(rows)
        pipeline = pipeline_build(vocabulary, client.read)
        pipeline.recognizer.tokenizer()
        build_s = time.perf_counter() - start
        print(
            f"QA engine built in {build_s:.1f} s over {vocabulary.size():,} names and "
            f"{len(vocabulary.aliases):,} aliases"
        )

        evaluate(pipeline, items)  # warm-up
        result = evaluate(pipeline, items, repeat_latency=REPEATS)
        latencies = result.latencies_ms
        print(
            f"answers: {len(latencies)} ({len(items)} questions × {REPEATS}); latency p50 "
            f"{quantile(latencies, 0.5):.2f} ms, p95 {quantile(latencies, 0.95):.2f} ms, "
            f"max {max(latencies):.2f} ms, mean {statistics.fmean(latencies):.2f} ms"
        )
        print(
            f"on this graph: classification accuracy {result.classification_accuracy:.1%}, entity recognition "
            f"(exact set) {result.entity_accuracy:.1%}, answer fact recall {result.fact_recall:.1%}"
        )

        names = [surface for surface in pipeline.recognizer._surfaces]
        questions = [item.question for item in items]
        start = time.perf_counter()
        for question in questions:
            pipeline.recognizer.exact(question)
        automaton_s = (time.perf_counter() - start) / len(questions)
        start = time.perf_counter()
        for question in questions[:40]:
            [name for name in names if question.find(name) >= 0]
        scan_s = (time.perf_counter() - start) / 40
        print(
            f"recognition per question: Aho–Corasick {automaton_s * 1e3:.3f} ms, name-by-name scan "
            f"{scan_s * 1e3:.1f} ms over {len(names):,} names → ratio {scan_s / automaton_s:.0f}×"
        )


if __name__ == "__main__":
    main()
