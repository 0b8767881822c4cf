"""Errors raised while checking questionnaire definitions and answers. Imports no Django.

They sit below :mod:`.definition` and :mod:`.scoring`, which both raise :class:`DefinitionError`, so
that neither module has to import the other for it.
"""

from __future__ import annotations


class DefinitionError(ValueError):
    """A questionnaire definition is malformed; ``path`` says where (e.g. ``items[3].options``)."""

    def __init__(self, message: str, *, path: str = ""):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class AnswerError(ValueError):
    """Answers do not fit the definition; ``errors`` maps link_id to a message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors
