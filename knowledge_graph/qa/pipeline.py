"""The question-answering pipeline: normalise, recognise, classify, query, compose.

:class:`QAPipeline` knows nothing of Bolt or Django: it receives a ``fetch(cypher, params) -> rows``
callable and a built :class:`~.recognizer.EntityRecognizer`. The multi-turn context is a plain dict
(JSON-serialisable) that the caller keeps between turns and passes back; it holds the entities and
question types of the last answered turn, never the question text.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .classifier import PRONOUNS, QUESTION_TYPE_ZH, SUBJECT_LABEL, QuestionClassifier
from .composer import (
    AVAILABLE,
    EXAMPLES,
    SAFETY_NOTICE,
    URGENT_NOTICE,
    Fact,
    compose_part,
    red_flags_in,
    suggestions_for,
    unknown_text,
)
from .recognizer import CONTEXT, EDIT_DISTANCE, SYNONYM, Candidate, EntityRecognizer, Mention
from .templates import ENTITY_RELATIONS, queries_for

Fetch = Callable[[str, dict[str, Any]], list[dict[str, Any]]]

MAX_QUESTION_CHARS = 300
CONTEXT_VERSION = 1


@dataclass(frozen=True)
class RecognizedEntity:
    """An entity the answer is about: its graph name and label, and how it was found."""

    name: str
    label: str
    text: str  # the words of the question ("" when carried over from the previous turn)
    via: str  # exact | synonym | edit_distance | context


@dataclass(frozen=True)
class Correction:
    """A word of the question read as another (shown as "您是不是想问：…")."""

    original: str
    corrected: str
    kind: str  # synonym | edit_distance


@dataclass(frozen=True)
class Answer:
    """The answer to one question, with everything needed to show or audit it."""

    question: str
    question_types: tuple[str, ...]
    entities: tuple[RecognizedEntity, ...]
    text: str
    facts: tuple[Fact, ...]
    corrections: tuple[Correction, ...]
    red_flags: tuple[str, ...]
    suggestions: tuple[str, ...]
    answered: bool
    safety_notice: str
    context: dict[str, Any]
    elapsed_ms: float = 0.0
    tokens: tuple[str, ...] = field(default=())

    @property
    def question_type(self) -> str | None:
        """The main question type (None when the question was not understood)."""
        return self.question_types[0] if self.question_types else None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (used by the API and ``kg_ask --json``)."""
        data = asdict(self)
        data["question_type"] = self.question_type
        data["question_type_zh"] = QUESTION_TYPE_ZH.get(self.question_type or "", "")
        data["facts"] = [{"subject": f.subject, "relation": str(f.relation), "object": f.object} for f in self.facts]
        data["entities"] = [asdict(e) for e in self.entities]
        data["question_types"] = list(self.question_types)
        data["corrections"] = [asdict(c) for c in self.corrections]
        data["red_flags"] = list(self.red_flags)
        data["suggestions"] = list(self.suggestions)
        data["tokens"] = list(self.tokens)
        return data


def normalize(question: str) -> str:
    """Return the question in NFKC form (full-width letters and digits become half-width), trimmed.

    NFKC maps one character to one character for the CJK text and ASCII we meet, so offsets into
    the normalised text are offsets into what the user typed, less the trimmed blanks.
    """
    text = unicodedata.normalize("NFKC", question or "")
    return " ".join(text.split())[:MAX_QUESTION_CHARS]


def context_entities(context: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Return the (name, label) pairs a context carries (empty for a missing or foreign context)."""
    if not isinstance(context, dict) or context.get("v") != CONTEXT_VERSION:
        return []
    out = []
    for item in context.get("entities") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("label"), str):
            out.append((item["name"], item["label"]))
    return out[:5]


def context_types(context: dict[str, Any] | None) -> list[str]:
    if not isinstance(context, dict) or context.get("v") != CONTEXT_VERSION:
        return []
    return [t for t in context.get("question_types") or [] if isinstance(t, str) and t in SUBJECT_LABEL][:3]


class QAPipeline:
    """Answer Chinese medical questions from the graph.

    Parameters
    ----------
    recognizer : EntityRecognizer
        Entity recognition over the graph's vocabulary.
    fetch : callable
        ``fetch(cypher, params)`` runs one read and returns its rows as dicts.
    classifier : QuestionClassifier, optional
        The question classifier (the default rules when omitted).
    list_limit : int
        Most items shown per list in an answer.
    fetch_limit : int
        Most items fetched per list (the total is counted by the query).
    """

    def __init__(
        self,
        recognizer: EntityRecognizer,
        fetch: Fetch,
        *,
        classifier: QuestionClassifier | None = None,
        list_limit: int = 10,
        fetch_limit: int = 30,
    ):
        self.recognizer = recognizer
        self.fetch = fetch
        self.classifier = classifier or QuestionClassifier()
        self.list_limit = list_limit
        self.fetch_limit = fetch_limit

    # -- understanding ---------------------------------------------------------------------

    def understand(self, question: str, context: dict[str, Any] | None = None):
        """Return (normalised text, mentions, classification, corrections) without querying the graph."""
        text = normalize(question)
        mentions = self.recognizer.exact(text)
        # A question word longer than an entity name it contains wins ("容易感染" is not the
        # disease 感染); otherwise names win ("食欲不振" is not the food word 食).
        free_cues = self.classifier.find_cues(text)
        mentions = [
            m
            for m in mentions
            if not any(c.start <= m.start and m.end <= c.end and c.end - c.start > m.end - m.start for c in free_cues)
        ]
        cues = self.classifier.find_cues(text, blocked=[(m.start, m.end) for m in mentions])
        corrections: list[Correction] = []
        near = self.recognizer.near_misses(text, blocked=[(c.start, c.end) for c in cues], exact=mentions)
        if near:
            kept = [m for m in mentions if not any(n.start <= m.start and m.end <= n.end for n in near)]
            mentions = sorted(kept + near, key=lambda m: m.start)
            cues = self.classifier.find_cues(text, blocked=[(m.start, m.end) for m in mentions])
        for mention in mentions:
            first = mention.candidates[0]
            if first.via in (SYNONYM, EDIT_DISTANCE):
                corrections.append(Correction(mention.text, first.name, first.via))
        previous = context_entities(context)
        if not mentions and previous:
            mentions = [
                Mention("", len(text), len(text), tuple(Candidate(name, label, CONTEXT) for name, label in previous))
            ]
        refers_back = any(p in text for p in PRONOUNS) or not mentions
        classification = self.classifier.classify(
            text, mentions, cues=cues, previous_types=context_types(context) if refers_back or not cues else ()
        )
        return text, mentions, classification, corrections

    # -- answering -------------------------------------------------------------------------

    def answer(self, question: str, context: dict[str, Any] | None = None) -> Answer:
        """Answer ``question``, using and returning the multi-turn ``context``.

        Parameters
        ----------
        question : str
            The question in Chinese.
        context : dict, optional
            The ``context`` of the previous :class:`Answer` of the same conversation.

        Returns
        -------
        Answer
            Text, facts, recognised entities, corrections, red flags and the new context.
        """
        start = time.perf_counter()
        text, mentions, classification, corrections = self.understand(question, context)
        flags = red_flags_in(text, [c.name for m in mentions for c in m.candidates])
        entities = self._entities(mentions, classification)
        parts, facts, suggestions = [], [], []
        answered = False
        for question_type in classification.question_types:
            subjects = [name for name, _ in classification.subjects.get(question_type, ())]
            if not subjects:
                continue
            label = SUBJECT_LABEL[question_type]
            groups = [subjects] if label == "Symptom" else [[s] for s in subjects]
            for names in groups:
                results = self._run(question_type, names)
                subject = "、".join(names)
                part = compose_part(
                    question_type, subject, results, others=classification.others, limit=self.list_limit
                )
                if part.found:
                    answered = True
                    parts.append(part.text)
                    facts.extend(part.facts)
                else:
                    parts.append(unknown_text(question_type, subject, label))
                    suggestions.extend(self._suggest(names[0], label, exclude=[question_type]))
        if not classification.question_types:
            if mentions:
                first = mentions[0].candidates[0]
                parts.append(unknown_text(None, first.name, first.label).replace("的相关信息", "的这类信息"))
                suggestions.extend(self._suggest(first.name, first.label, exclude=[]))
            else:
                parts.append(unknown_text(None, None))
            if not suggestions:
                suggestions.extend(EXAMPLES)
        if not answered and not suggestions:
            suggestions.extend(EXAMPLES)
        suggestions = list(dict.fromkeys(suggestions))[:4]
        lines = []
        if flags:
            lines.append(URGENT_NOTICE.format(flags="、".join(flags)))
        if corrections:
            lines.append("您是不是想问：" + "、".join(dict.fromkeys(c.corrected for c in corrections)) + "？")
        lines.extend(parts)
        if suggestions and not answered:
            lines.append("您可以试着问：" + " ".join(suggestions))
        lines.append(SAFETY_NOTICE)
        new_context = self._context(classification, entities, context)
        return Answer(
            question=question,
            question_types=tuple(classification.question_types),
            entities=tuple(entities),
            text="\n".join(lines),
            facts=tuple(dict.fromkeys(facts)),
            corrections=tuple(corrections),
            red_flags=tuple(flags),
            suggestions=tuple(suggestions),
            answered=answered,
            safety_notice=SAFETY_NOTICE,
            context=new_context,
            elapsed_ms=(time.perf_counter() - start) * 1000.0,
        )

    def _run(self, question_type: str, names: list[str]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for query in queries_for(question_type, names, limit=self.fetch_limit):
            rows = self.fetch(query.cypher, query.params)
            if query.key == "symptom_diseases":
                results[query.key] = rows
            elif query.key == "properties":
                results[query.key] = dict(rows[0]["props"]) if rows and rows[0].get("props") else {}
            else:
                results[query.key] = rows[0] if rows else {}
        return results

    def _suggest(self, name: str, label: str, *, exclude: list[str]) -> list[str]:
        cypher = ENTITY_RELATIONS.get(label)
        if cypher is None:
            return []
        available = []
        for row in self.fetch(cypher, {"name": name}):
            question_type = AVAILABLE.get((row["rel"], bool(row["outgoing"])))
            if question_type:
                available.append(question_type)
        if label == "Disease":
            props = self.fetch(queries_for("disease_desc", [name], limit=1)[0].cypher, {"name": name})
            keys = set((props[0].get("props") or {}).keys()) if props else set()
            available.extend(AVAILABLE[(key, None)] for key in ("desc", "cause", "prevent", "cure_way") if key in keys)
        return suggestions_for(name, list(dict.fromkeys(available)), exclude=exclude)

    def _entities(self, mentions, classification) -> list[RecognizedEntity]:
        chosen: list[RecognizedEntity] = []
        wanted = {e for ents in classification.subjects.values() for e in ents} | set(classification.others)
        for mention in mentions:
            picked = [c for c in mention.candidates if (c.name, c.label) in wanted] or list(mention.candidates[:1])
            for candidate in picked:
                entity = RecognizedEntity(candidate.name, candidate.label, mention.text, candidate.via)
                if entity not in chosen:
                    chosen.append(entity)
        return chosen

    def _context(self, classification, entities: list[RecognizedEntity], previous) -> dict[str, Any]:
        if not classification.question_types:
            return previous if isinstance(previous, dict) and previous.get("v") == CONTEXT_VERSION else {}
        subjects = []
        for question_type in classification.question_types:
            for name, label in classification.subjects.get(question_type, ()):
                if {"name": name, "label": label} not in subjects:
                    subjects.append({"name": name, "label": label})
        turn = int(previous.get("turn", 0)) if isinstance(previous, dict) else 0
        return {
            "v": CONTEXT_VERSION,
            "entities": subjects[:5],
            "question_types": list(classification.question_types),
            "turn": turn + 1,
        }
