"""The graph-independent NLU and answer composition of the knowledge-graph assistant.

Imports no Django and opens no connection: :func:`vocabulary_build` takes rows read from the graph,
:class:`QAPipeline` takes a ``fetch(cypher, params)`` callable. See :mod:`.recognizer`,
:mod:`.classifier`, :mod:`.templates`, :mod:`.composer` and :mod:`.pipeline`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .classifier import QUESTION_TYPE_ZH, QuestionClassifier, QuestionType
from .composer import SAFETY_NOTICE, Fact
from .pipeline import Answer, Correction, QAPipeline, RecognizedEntity, normalize
from .recognizer import EntityRecognizer, Vocabulary
from .synonyms import BUILTIN_SYNONYMS


def vocabulary_build(
    rows_by_label: Mapping[str, Iterable[Mapping]],
    *,
    synonyms: Iterable[tuple[str, str, str | None]] = (),
    builtin: bool = True,
) -> Vocabulary:
    """Build a :class:`Vocabulary` from graph rows and synonym pairs.

    Parameters
    ----------
    rows_by_label : mapping
        Label → rows with ``name``, optional ``aliases`` (list) and ``degree``.
    synonyms : iterable of (alias, canonical name, label or None)
        Extra synonyms (staff-added); a label of None applies to every label having the name.
    builtin : bool
        Add :data:`~.synonyms.BUILTIN_SYNONYMS`.
    """
    vocabulary = Vocabulary()
    for label, rows in rows_by_label.items():
        for row in rows:
            name = row.get("name")
            if isinstance(name, str) and name:
                vocabulary.add_name(label, name, row.get("degree") or 0)
    for label, rows in rows_by_label.items():
        for row in rows:
            aliases = row.get("aliases") or []
            if isinstance(aliases, str):
                aliases = [aliases]
            for alias in aliases:
                if isinstance(alias, str):
                    vocabulary.add_alias(" ".join(alias.split()), row["name"], label)
    if builtin:
        for alias, name in BUILTIN_SYNONYMS.items():
            vocabulary.add_alias(alias, name)
    for alias, name, label in synonyms:
        vocabulary.add_alias(alias, name, label)
    return vocabulary


def pipeline_build(vocabulary: Vocabulary, fetch, *, fuzzy: bool = True) -> QAPipeline:
    """Return a :class:`QAPipeline` over ``vocabulary`` that reads the graph with ``fetch``."""
    classifier = QuestionClassifier(degree=vocabulary.degree)
    recognizer = EntityRecognizer(vocabulary, stop_surfaces=classifier.words(), fuzzy=fuzzy)
    return QAPipeline(recognizer, fetch, classifier=classifier)


__all__ = [
    "BUILTIN_SYNONYMS",
    "QUESTION_TYPE_ZH",
    "SAFETY_NOTICE",
    "Answer",
    "Correction",
    "EntityRecognizer",
    "Fact",
    "QAPipeline",
    "QuestionClassifier",
    "QuestionType",
    "RecognizedEntity",
    "Vocabulary",
    "normalize",
    "pipeline_build",
    "vocabulary_build",
]
