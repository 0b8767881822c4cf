"""Evaluate the pipeline on a question set: classification, entity recognition, answer facts, latency.

The set is a UTF-8 TSV file, one question a line (``#`` starts a comment)::

    question <TAB> types <TAB> entities <TAB> facts <TAB> flags

- ``types``: the expected question types, comma-separated (usually one);
- ``entities``: ``name:Label`` pairs separated by ``;`` (the entities the answer is about, after
  synonym and typo correction);
- ``facts``: words the answer text must contain, separated by ``;`` (may be empty);
- ``flags``: ``follow`` when the line continues the conversation of the line above (its context is
  passed), ``empty`` when no entity should be recognised.

Metrics: a question is classified correctly when the predicted set of types equals the expected set;
its entities are recognised correctly when the predicted (name, label) set equals the expected one.
Entity precision and recall are micro-averaged. Latency is the wall time of ``answer()``.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pipeline import QAPipeline


@dataclass(frozen=True)
class EvalItem:
    """One question of the evaluation set."""

    question: str
    types: tuple[str, ...]
    entities: tuple[tuple[str, str], ...]
    facts: tuple[str, ...]
    follow: bool = False
    line: int = 0


@dataclass
class EvalResult:
    """Scores of one run."""

    total: int = 0
    type_correct: int = 0
    entity_correct: int = 0
    entity_tp: int = 0
    entity_fp: int = 0
    entity_fn: int = 0
    facts_expected: int = 0
    facts_found: int = 0
    answered: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    by_type: Counter = field(default_factory=Counter)
    by_type_correct: Counter = field(default_factory=Counter)

    @property
    def classification_accuracy(self) -> float:
        return self.type_correct / self.total if self.total else 0.0

    @property
    def entity_accuracy(self) -> float:
        return self.entity_correct / self.total if self.total else 0.0

    @property
    def entity_precision(self) -> float:
        found = self.entity_tp + self.entity_fp
        return self.entity_tp / found if found else 0.0

    @property
    def entity_recall(self) -> float:
        expected = self.entity_tp + self.entity_fn
        return self.entity_tp / expected if expected else 0.0

    @property
    def fact_recall(self) -> float:
        return self.facts_found / self.facts_expected if self.facts_expected else 0.0

    def latency_ms(self, q: float) -> float:
        """Return the ``q`` quantile (0–1) of the answer latency in milliseconds."""
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    def summary(self) -> dict[str, Any]:
        return {
            "questions": self.total,
            "classification_accuracy": round(self.classification_accuracy, 4),
            "entity_accuracy": round(self.entity_accuracy, 4),
            "entity_precision": round(self.entity_precision, 4),
            "entity_recall": round(self.entity_recall, 4),
            "fact_recall": round(self.fact_recall, 4),
            "answered_rate": round(self.answered / self.total, 4) if self.total else 0.0,
            "latency_ms_p50": round(self.latency_ms(0.5), 2),
            "latency_ms_p95": round(self.latency_ms(0.95), 2),
            "latency_ms_mean": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0.0,
            "per_type_accuracy": {t: round(self.by_type_correct[t] / n, 3) for t, n in sorted(self.by_type.items())},
        }


def evaluation_read(path: Path) -> list[EvalItem]:
    """Read an evaluation set (see the module docstring).

    Raises
    ------
    ValueError
        For a line with fewer than two columns or a malformed entity.
    """
    items: list[EvalItem] = []
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cols = raw.split("\t")
        if len(cols) < 2:
            raise ValueError(f"{path}:{number}: expected question<TAB>types…")
        cols += [""] * (5 - len(cols))
        question, types, entities, facts, flags = (c.strip() for c in cols[:5])
        pairs = []
        for item in filter(None, (e.strip() for e in entities.split(";"))):
            name, sep, label = item.rpartition(":")
            if not sep or not name:
                raise ValueError(f"{path}:{number}: entity {item!r} is not name:Label")
            pairs.append((name, label))
        items.append(
            EvalItem(
                question=question,
                types=tuple(t.strip() for t in types.split(",") if t.strip()),
                entities=tuple(pairs),
                facts=tuple(f.strip() for f in facts.split(";") if f.strip()),
                follow="follow" in flags.split(","),
                line=number,
            )
        )
    return items


def evaluate(pipeline: QAPipeline, items: list[EvalItem], *, repeat_latency: int = 1) -> EvalResult:
    """Answer every question and score it (see the module docstring).

    Parameters
    ----------
    pipeline : QAPipeline
        A built pipeline (warm it first for latency figures).
    items : list of EvalItem
        The evaluation set in order (``follow`` items continue the previous item's context).
    repeat_latency : int
        Answer each question this many times and keep every latency (more samples for p95).
    """
    result = EvalResult()
    context: dict | None = None
    for item in items:
        ctx = context if item.follow else None
        start = time.perf_counter()
        answer = pipeline.answer(item.question, context=ctx)
        result.latencies_ms.append((time.perf_counter() - start) * 1000.0)
        for _ in range(repeat_latency - 1):
            start = time.perf_counter()
            pipeline.answer(item.question, context=ctx)
            result.latencies_ms.append((time.perf_counter() - start) * 1000.0)
        context = answer.context
        result.total += 1
        main_type = item.types[0] if item.types else "(none)"
        result.by_type[main_type] += 1
        predicted_types = set(answer.question_types)
        predicted_entities = {(e.name, str(e.label)) for e in answer.entities}
        expected_entities = set(item.entities)
        type_ok = predicted_types == set(item.types)
        entity_ok = predicted_entities == expected_entities
        result.type_correct += type_ok
        result.by_type_correct[main_type] += type_ok
        result.entity_correct += entity_ok
        result.entity_tp += len(predicted_entities & expected_entities)
        result.entity_fp += len(predicted_entities - expected_entities)
        result.entity_fn += len(expected_entities - predicted_entities)
        missing = [f for f in item.facts if f not in answer.text]
        result.facts_expected += len(item.facts)
        result.facts_found += len(item.facts) - len(missing)
        result.answered += answer.answered
        if not (type_ok and entity_ok) or missing:
            result.errors.append(
                {
                    "line": item.line,
                    "question": item.question,
                    "expected_types": list(item.types),
                    "predicted_types": [str(t) for t in answer.question_types],
                    "expected_entities": sorted(expected_entities),
                    "predicted_entities": sorted(predicted_entities),
                    "missing_facts": missing,
                }
            )
    return result
