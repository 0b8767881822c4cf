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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .classifier import PRONOUNS, QUESTION_TYPE_ZH, SUBJECT_LABEL, QuestionClassifier
from .classifier import QuestionType as Q
from .composer import (
    AVAILABLE,
    Fact,
    compose_part,
    red_flags_in,
    suggestions_for,
    try_asking,
    unknown_text,
)
from .phrases import ZH, examples, language_of, phrase
from .recognizer import CONTEXT, EDIT_DISTANCE, SYNONYM, Candidate, EntityRecognizer, Mention
from .schema import Label
from .templates import ENTITY_RELATIONS, queries_for

Fetch = Callable[[str, dict[str, Any]], list[dict[str, Any]]]

MAX_QUESTION_CHARS = 300
CONTEXT_VERSION = 1

#: A disease question with no answer, asked with a word that also names a symptom, is retried as
#: this question about the symptom.
SYMPTOM_READING = {Q.DISEASE_DEPARTMENT: Q.SYMPTOM_DEPARTMENT}


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
    suggestions: tuple[str, ...]  # questions to ask next, in Chinese (the language the recogniser reads)
    answered: bool
    safety_notice: str
    context: dict[str, Any]
    elapsed_ms: float = 0.0
    tokens: tuple[str, ...] = field(default=())
    language: str = ZH  # the language of the sentences; graph names stay as stored
    suggestion_glosses: tuple[str, ...] = field(default=())  # what each suggestion asks, in ``language``

    @property
    def understood(self) -> bool:
        """Whether the question was understood (a question type about a known entity)."""
        return bool(self.question_types)

    @property
    def question_type(self) -> str | None:
        """The main question type (None when the question was not understood)."""
        return self.question_types[0] if self.question_types else None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (used by the API and ``kg_ask --json``)."""
        data = asdict(self)
        data["question_type"] = self.question_type
        data["understood"] = self.understood
        data["question_type_zh"] = QUESTION_TYPE_ZH.get(self.question_type or "", "")
        data["facts"] = [{"subject": f.subject, "relation": str(f.relation), "object": f.object} for f in self.facts]
        data["entities"] = [asdict(e) for e in self.entities]
        data["question_types"] = list(self.question_types)
        data["corrections"] = [asdict(c) for c in self.corrections]
        data["red_flags"] = list(self.red_flags)
        data["suggestions"] = list(self.suggestions)
        data["suggestion_glosses"] = list(self.suggestion_glosses)
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


def is_follow_up(text: str, mentions, cues) -> bool:
    """Return whether a question without an entity of its own continues the previous turn.

    A follow-up has its subject elided or replaced by a pronoun ("那它吃什么药？", "要多久才能好")
    *and* a question word that says what it asks. A question with neither ("今天天气怎么样",
    "asdfgh", a question in English) is not understood, whatever came before: answering it with
    the previous turn's entity would answer a question nobody asked.
    """
    if mentions or not cues:
        return False
    # One-character question words (吃, 药, 忌) turn up in everyday talk ("今天吃饭了吗"): alone they
    # make a follow-up only next to a pronoun.
    return any(cue.end - cue.start >= 2 for cue in cues) or any(p in text for p in PRONOUNS)


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
        if not mentions and previous and is_follow_up(text, mentions, cues):
            mentions = [
                Mention("", len(text), len(text), tuple(Candidate(name, label, CONTEXT) for name, label in previous))
            ]
        # The previous question types are reused only for a question that names its entity and has
        # no question word of its own ("那高血压呢？"), or one that points back with a pronoun.
        refers_back = any(p in text for p in PRONOUNS)
        previous_types = context_types(context) if mentions and (refers_back or not cues) else ()
        classification = self.classifier.classify(text, mentions, cues=cues, previous_types=previous_types)
        return text, mentions, classification, corrections

    # -- answering -------------------------------------------------------------------------

    def answer(self, question: str, context: dict[str, Any] | None = None, *, language: str = ZH) -> Answer:
        """Answer ``question``, using and returning the multi-turn ``context``.

        Parameters
        ----------
        question : str
            The question in Chinese.
        context : dict, optional
            The ``context`` of the previous :class:`Answer` of the same conversation.
        language : str
            The language of the answer's sentences, notices and glosses: ``"zh-hans"`` (default) or
            ``"en"`` (other codes: see :func:`~.phrases.language_of`). Graph names, stored text and
            the suggested questions stay Chinese.

        Returns
        -------
        Answer
            Text, facts, recognised entities, corrections, red flags and the new context.
        """
        start = time.perf_counter()
        lang = language_of(language)
        text, mentions, classification, corrections = self.understand(question, context)
        flags = red_flags_in(text, [c.name for m in mentions for c in m.candidates])
        parts, facts, suggestions = [], [], []
        answered = False
        for question_type in list(classification.question_types):
            subjects = [name for name, _ in classification.subjects.get(question_type, ())]
            if not subjects:
                continue
            label = SUBJECT_LABEL[question_type]
            groups = [subjects] if label == "Symptom" else [[s] for s in subjects]
            for names in groups:
                results = self._run(question_type, names)
                # Graph names are joined as the graph writes lists (、), in every language.
                subject = "、".join(names)
                part = compose_part(
                    question_type, subject, results, others=classification.others, limit=self.list_limit,
                    language=lang,
                )
                if not part.found and question_type in SYMPTOM_READING:
                    classification, part, label = self._symptom_reading(question_type, names, mentions,
                                                                         classification, part, label, lang)
                if part.found:
                    answered = True
                    parts.append(part.text)
                    facts.extend(part.facts)
                else:
                    parts.append(unknown_text(question_type, subject, label, language=lang))
                    suggestions.extend(self._suggest(names[0], label, exclude=[question_type], language=lang))
        entities = self._entities(mentions, classification)
        if not classification.question_types:
            if mentions:
                first = mentions[0].candidates[0]
                parts.append(unknown_text(None, first.name, first.label, language=lang))
                suggestions.extend(self._suggest(first.name, first.label, exclude=[], language=lang))
            else:
                parts.append(phrase("not_understood", lang))
            if not suggestions:
                suggestions.extend(examples(lang))
        if not answered and not suggestions:
            suggestions.extend(examples(lang))
        first_gloss: dict[str, str] = {}
        for question_text, gloss in suggestions:
            first_gloss.setdefault(question_text, gloss)
        suggestions = list(first_gloss.items())[:4]
        lines = []
        if flags:
            lines.append(phrase("urgent_notice", lang, flags=phrase("list_separator", lang).join(flags)))
        if corrections:
            corrected = phrase("list_separator", lang).join(dict.fromkeys(c.corrected for c in corrections))
            lines.append(phrase("did_you_mean", lang, names=corrected))
        lines.extend(parts)
        if suggestions and not answered:
            lines.append(try_asking(suggestions, lang))
        safety_notice = phrase("safety_notice", lang)
        lines.append(safety_notice)
        new_context = self._context(classification, entities, context)
        return Answer(
            question=question,
            question_types=tuple(classification.question_types),
            entities=tuple(entities),
            text="\n".join(lines),
            facts=tuple(dict.fromkeys(facts)),
            corrections=tuple(corrections),
            red_flags=tuple(flags),
            suggestions=tuple(question for question, _ in suggestions),
            answered=answered,
            safety_notice=safety_notice,
            context=new_context,
            elapsed_ms=(time.perf_counter() - start) * 1000.0,
            language=lang,
            suggestion_glosses=tuple(gloss for _, gloss in suggestions),
        )

    def _symptom_reading(self, question_type, names, mentions, classification, part, label, language=ZH):
        """Answer a disease question about a word that also names a symptom through the symptom.

        In CMeKG 头痛 is both a disease (with no department of its own) and a symptom of many
        diseases: "头痛挂什么科" then asks about the symptom. Returns the classification with the
        question type swapped when the symptom reading has an answer, else everything unchanged.
        """
        symptoms = [
            name
            for name in names
            if any(c.name == name and c.label == Label.SYMPTOM for m in mentions for c in m.candidates)
        ]
        if not symptoms or len(classification.subjects.get(question_type, ())) != 1:
            return classification, part, label
        swapped = SYMPTOM_READING[question_type]
        results = self._run(swapped, symptoms)
        symptom_part = compose_part(swapped, "、".join(symptoms), results, limit=self.list_limit, language=language)
        if not symptom_part.found:
            return classification, part, label
        types = tuple(swapped if t == question_type else t for t in classification.question_types)
        subjects = {t: v for t, v in classification.subjects.items() if t != question_type}
        subjects[swapped] = tuple((name, Label.SYMPTOM) for name in symptoms)
        return replace(classification, question_types=types, subjects=subjects), symptom_part, Label.SYMPTOM

    def _run(self, question_type: str, names: list[str]) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for query in queries_for(question_type, names, limit=self.fetch_limit):
            rows = self.fetch(query.cypher, query.params)
            if query.key in ("symptom_diseases", "symptom_departments"):
                results[query.key] = rows
            elif query.key == "properties":
                results[query.key] = dict(rows[0]["props"]) if rows and rows[0].get("props") else {}
            else:
                results[query.key] = rows[0] if rows else {}
        return results

    def _suggest(self, name: str, label: str, *, exclude: list[str], language: str = ZH) -> list[tuple[str, str]]:
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
        return suggestions_for(name, list(dict.fromkeys(available)), exclude=exclude, language=language)

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
