"""Writes and the QA engine of the knowledge-graph assistant.

- The graph client comes from :func:`knowledge_graph.connection.graph_client`, the one factory that
  builds a :class:`~.graph.GraphClient` from settings; :func:`graph_clients_close` closes the
  clients and drops the QA engines built on them.
- :func:`kg_answer` answers one question (the follow-up chat calls it and keeps ``answer.context``);
  :func:`conversation_ask` does the same for the REST API, keeping the context per conversation.
- :func:`graph_import` and :func:`starter_load` write the graph; :func:`synonym_create` and
  :func:`synonym_delete` manage staff-added synonyms.

The QA engine (vocabulary, automaton, jieba dictionary, edit-distance index) is built once per
process and rebuilt when the graph's version marker (checked at most every
:data:`GRAPH_VERSION_CHECK_S` seconds) or the synonym table changes.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from . import connection
from .graph import store
from .importers import ImportSummary, Progress, batch_write, file_parse
from .models import Conversation, QuestionLog, Synonym
from .qa import Answer, QAPipeline, pipeline_build, vocabulary_build
from .qa.schema import ENTITY_LABELS
from .selectors import conversation_get

STARTER_GRAPH_PATH = Path(__file__).resolve().parent / "data" / "starter_graph.jsonl"
GRAPH_VERSION_CHECK_S = 5.0
CONVERSATION_IDLE = timedelta(minutes=30)
MAX_QUESTION_CHARS = 300

_lock = threading.RLock()
_engines: dict[tuple[str, str, str], _Engine] = {}


@dataclass
class _Engine:
    pipeline: QAPipeline
    graph_version: str
    synonyms_version: tuple
    checked_at: float
    built_s: float


def graph_clients_close() -> None:
    """Close every client of this process and drop the QA engines built on them.

    Tests and management commands call this on exit.
    """
    with _lock:
        connection.graph_clients_close()
        _engines.clear()


def qa_engines_clear() -> None:
    """Forget the built QA engines (the next question rebuilds from the graph)."""
    with _lock:
        _engines.clear()


def _synonyms_version() -> tuple:
    agg = Synonym.objects.aggregate(n=Count("id"), last=Max("id"))
    return (agg["n"], agg["last"])


def qa_pipeline(*, refresh: bool = False) -> QAPipeline:
    """Return the QA pipeline for the configured graph, building or rebuilding it when needed."""
    key = connection.graph_key()
    synonyms_version = _synonyms_version()
    now = time.monotonic()
    with _lock:
        engine = _engines.get(key)
        if (
            engine is not None
            and not refresh
            and engine.synonyms_version == synonyms_version
            and now - engine.checked_at < GRAPH_VERSION_CHECK_S
        ):
            return engine.pipeline
        client = connection.graph_client()
        graph_version = store.version_get(client)
        if (
            engine is not None
            and not refresh
            and engine.synonyms_version == synonyms_version
            and engine.graph_version == graph_version
        ):
            engine.checked_at = now
            return engine.pipeline
        start = time.perf_counter()
        rows = {str(label): store.vocabulary_rows(client, label) for label in ENTITY_LABELS}
        synonyms = list(Synonym.objects.values_list("alias", "canonical", "label"))
        vocabulary = vocabulary_build(rows, synonyms=synonyms)
        pipeline = pipeline_build(vocabulary, client.read)
        pipeline.recognizer.tokenizer()  # build jieba's dictionary now, not during a question
        _engines[key] = _Engine(pipeline, graph_version, synonyms_version, now, time.perf_counter() - start)
        return pipeline


def kg_warm() -> float:
    """Build the QA engine now (at start-up rather than on the first question); return seconds taken."""
    start = time.perf_counter()
    qa_pipeline()
    return time.perf_counter() - start


def kg_answer(
    question: str,
    *,
    context: dict | None = None,
    channel: str = QuestionLog.Channel.CHAT,
    log: bool = True,
    language: str = "zh-hans",
) -> Answer:
    """Answer a Chinese medical question from the knowledge graph.

    Parameters
    ----------
    question : str
        The question (at most 300 characters are read).
    context : dict, optional
        ``answer.context`` of the previous turn of the same conversation; a follow-up such as
        "那它吃什么药？" is about the entities it holds.
    channel : str
        Where the question came from (for the statistics).
    log : bool
        Record a :class:`QuestionLog` row (types, entity names, latency; never the text).
    language : str
        The language of the answer's sentences (``"zh-hans"`` or ``"en"``; the caller passes the
        request's ``get_language()``). Graph names stay as stored.

    Returns
    -------
    knowledge_graph.qa.Answer
        ``text``, ``question_types``, ``entities``, ``facts``, ``corrections``, ``red_flags`` and the
        new ``context`` to pass with the next question.
    """
    answer = qa_pipeline().answer(question, context=context, language=language)
    if log:
        QuestionLog.objects.create(
            question_types=list(answer.question_types),
            entities=[[e.name, e.label] for e in answer.entities],
            answered=answer.answered,
            corrected=bool(answer.corrections),
            red_flag=bool(answer.red_flags),
            latency_ms=round(answer.elapsed_ms, 2),
            channel=channel,
        )
    return answer


@transaction.atomic
def conversation_ask(
    *,
    user: User,
    question: str,
    conversation_id=None,
    channel: str = QuestionLog.Channel.API,
    language: str = "zh-hans",
) -> tuple[Conversation, Answer]:
    """Answer ``question`` within the user's conversation (a new one when no id is given), in ``language``.

    Raises
    ------
    ServiceError
        404 when the conversation does not exist or belongs to another user; 400 for an empty
        question.
    """
    if not (question or "").strip():
        raise ServiceError(_("The question is empty."), code="empty_question")
    if conversation_id is not None:
        conversation = conversation_get(user=user, conversation_id=conversation_id, for_update=True)
    else:
        conversation = Conversation(owner=user)
    context = conversation.context
    if conversation.updated_at and timezone.now() - conversation.updated_at > CONVERSATION_IDLE:
        context = {}
    answer = kg_answer(question[:MAX_QUESTION_CHARS], context=context, channel=channel, language=language)
    conversation.context = answer.context
    conversation.turns += 1
    conversation.full_clean()
    conversation.save()
    return conversation, answer


# -- synonyms ------------------------------------------------------------------------------------


def _clean_alias(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text or "").split())


@transaction.atomic
def synonym_create(*, actor: User | None, alias: str, canonical: str, label: str) -> Synonym:
    """Add a synonym for an existing graph entity and record it in the audit log.

    Raises
    ------
    django.core.exceptions.ValidationError
        When the alias is too short, equals the name, already exists for this type, or when no
        entity of ``label`` is called ``canonical``.
    """
    alias = _clean_alias(alias)
    canonical = _clean_alias(canonical)
    if len(alias) < 2:
        raise ValidationError({"alias": _("A synonym needs at least two characters.")})
    if alias == canonical:
        raise ValidationError({"alias": _("The synonym is the entity's own name.")})
    synonym = Synonym(alias=alias, canonical=canonical, label=label, created_by=actor)
    synonym.full_clean()
    if store.entity_properties(connection.graph_client(), label, canonical) is None:
        raise ValidationError({"canonical": _("The knowledge graph has no %(label)s called “%(canonical)s”.")
                               % {"label": label, "canonical": canonical}})
    synonym.save()
    audit_record(
        actor=actor,
        action=AuditLog.Action.CREATE,
        target_type="kg_synonym",
        target_id=synonym.pk,
        detail={"label": label},
    )
    return synonym


@transaction.atomic
def synonym_delete(*, actor: User | None, synonym: Synonym) -> None:
    """Delete a synonym and record it in the audit log."""
    pk = synonym.pk
    synonym.delete()
    audit_record(actor=actor, action=AuditLog.Action.DELETE, target_type="kg_synonym", target_id=pk)


# -- imports -------------------------------------------------------------------------------------


def graph_import(
    *,
    path: Path,
    fmt: str,
    vocabulary_dir: Path | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    on_parsed=None,
    actor: User | None = None,
) -> ImportSummary:
    """Import a file into the configured graph (idempotent) and return the summary.

    Parameters
    ----------
    path : Path
        The file (or, for ``fmt="vocab"``, the folder of vocabularies).
    fmt : {"cmekg", "qasystem", "vocab"}
        Its format.
    vocabulary_dir : Path, optional
        For CMeKG: vocabularies (``disease.txt`` …) that type ambiguous subjects.
    limit : int, optional
        Read only the first ``limit`` records.
    progress : callable, optional
        ``progress(stage, rows)`` after each write query.
    on_parsed : callable, optional
        Called with the parsed batch before writing (to size a progress bar).
    """
    start = time.perf_counter()
    batch = file_parse(Path(path), fmt=fmt, vocabulary_dir=vocabulary_dir, limit=limit)
    parse_s = time.perf_counter() - start
    if on_parsed is not None:
        on_parsed(batch)
    summary = batch_write(connection.graph_client(), batch, source=Path(path).name, progress=progress)
    summary.parse_s = parse_s
    audit_record(
        actor=actor,
        action=AuditLog.Action.CREATE,
        target_type="kg_import",
        target_id=Path(path).name,
        detail={
            "format": fmt,
            "records": summary.records,
            "nodes_created": summary.nodes_created,
            "relationships_created": summary.relationships_created,
        },
    )
    return summary


def starter_load(*, progress: Progress | None = None, on_parsed=None) -> ImportSummary:
    """Load the starter graph that ships with the product (idempotent)."""
    return graph_import(path=STARTER_GRAPH_PATH, fmt="qasystem", progress=progress, on_parsed=on_parsed)


def graph_reset() -> int:
    """Delete everything in the configured graph database; return the number of nodes deleted."""
    deleted = store.graph_clear(connection.graph_client())
    with _lock:
        _engines.pop(connection.graph_key(), None)
    return deleted


# --------------------------------------------------------------------------------------------------
# Entity mentions in free text (report impressions, finding kinds, the patient's summary)
# --------------------------------------------------------------------------------------------------

#: Entity types linked in clinical text: foods, drug products and producers are left out (one-
#: character food names and brand names match inside ordinary words of a report).
LINK_LABELS: tuple[str, ...] = ("Disease", "Symptom", "Check", "Department", "Drug")
MAX_MENTION_TEXT_CHARS = 5000


def entity_mentions(text: str, *, labels: tuple[str, ...] = LINK_LABELS) -> list[dict]:
    """Return the graph entities named in ``text``: longest non-overlapping matches, in text order.

    The names and synonyms are those of the QA assistant's engine (:func:`qa_pipeline`, built
    once per process and rebuilt when the graph or the synonyms change), matched with its
    Aho-Corasick automaton (:meth:`~.qa.recognizer.EntityRecognizer.exact`); a longer name wins over
    the names inside it (肺结节 over 结节). Where one word names several entities, the assistant's
    order decides (disease first).

    Parameters
    ----------
    text : str
        Any text; NFKC-normalised for matching (one character to one, so offsets hold).
    labels : tuple of str
        Entity types to link.

    Returns
    -------
    list of dict
        ``start``, ``end`` (character offsets into ``text``), ``text`` (the matched words),
        ``label`` and ``name`` (the entity; ``name`` differs from ``text`` for a synonym).

    Raises
    ------
    ValueError
        ``text`` is longer than :data:`MAX_MENTION_TEXT_CHARS`.
    """
    if not text:
        return []
    if len(text) > MAX_MENTION_TEXT_CHARS:
        raise ValueError(f"text longer than {MAX_MENTION_TEXT_CHARS} characters")
    normalised = unicodedata.normalize("NFKC", text)
    if len(normalised) != len(text):
        normalised = text  # a character that NFKC expands: match the text as typed
    found = []
    for mention in qa_pipeline().recognizer.exact(normalised):
        candidate = next((c for c in mention.candidates if c.label in labels), None)
        if candidate is None:
            continue
        found.append({"start": mention.start, "end": mention.end, "text": text[mention.start:mention.end],
                      "label": candidate.label, "name": candidate.name})
    return found


def text_link_segments(text: str, *, labels: tuple[str, ...] = LINK_LABELS) -> list[dict]:
    """Split ``text`` into plain and linked pieces for a template.

    Returns
    -------
    list of dict
        In order, covering ``text`` exactly: ``{"text": ...}`` for plain pieces and
        ``{"text", "label", "name"}`` for entity mentions (:func:`entity_mentions`). Text over
        :data:`MAX_MENTION_TEXT_CHARS` comes back as one plain piece.
    """
    try:
        mentions = entity_mentions(text, labels=labels)
    except ValueError:
        mentions = []
    segments, at = [], 0
    for m in mentions:
        if m["start"] > at:
            segments.append({"text": text[at:m["start"]]})
        segments.append({"text": m["text"], "label": m["label"], "name": m["name"]})
        at = m["end"]
    if at < len(text or ""):
        segments.append({"text": text[at:]})
    return segments
