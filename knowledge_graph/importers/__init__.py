"""Importers: CMeKG triples, QASystemOnMedicalKG ``medical.json`` and entity vocabularies.

Each parser turns a file into a :class:`~.base.GraphBatch`; :func:`~.base.batch_write` writes it.
Imports no Django.
"""

from __future__ import annotations

from pathlib import Path

from ..graph.client import GraphClient
from .base import GraphBatch, ImportSummary, Progress, batch_rows, batch_write
from .cmekg import cmekg_parse, vocabulary_read
from .qasystem import qasystem_parse

FORMATS = ("cmekg", "qasystem", "vocab")


def vocabulary_parse(folder: Path) -> GraphBatch:
    """Turn a folder of vocabularies (``disease.txt`` …) into typed nodes without relations."""
    batch = GraphBatch()
    for name, labels in vocabulary_read(folder).items():
        batch.records += 1
        for label in labels:
            batch.node(label, name)
    return batch


def file_parse(path: Path, *, fmt: str, vocabulary_dir: Path | None = None, limit: int | None = None) -> GraphBatch:
    """Parse ``path`` in format ``fmt`` ("cmekg", "qasystem" or "vocab").

    Raises
    ------
    ValueError
        For an unknown format.
    FileNotFoundError
        When ``path`` (or ``vocabulary_dir``) does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if fmt == "cmekg":
        vocabulary = None
        if vocabulary_dir is not None:
            if not Path(vocabulary_dir).is_dir():
                raise FileNotFoundError(f"no such vocabulary folder: {vocabulary_dir}")
            vocabulary = vocabulary_read(Path(vocabulary_dir))
        return cmekg_parse(path, vocabulary=vocabulary, limit=limit)
    if fmt == "qasystem":
        return qasystem_parse(path, limit=limit)
    if fmt == "vocab":
        return vocabulary_parse(path)
    raise ValueError(f"unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "GraphBatch",
    "GraphClient",
    "ImportSummary",
    "Progress",
    "batch_rows",
    "batch_write",
    "cmekg_parse",
    "file_parse",
    "qasystem_parse",
    "vocabulary_parse",
    "vocabulary_read",
]
