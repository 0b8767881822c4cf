"""Errors raised while checking questionnaire definitions and answers. Imports no Django.

They sit below :mod:`.definition` and :mod:`.scoring`, which both raise :class:`DefinitionError`, so
that neither module has to import the other for it.

Messages are English templates with named parameters, marked with ``N_``; the portal translates
``template`` and ``params`` at its boundary, ``str(exc)`` stays English.
"""

from __future__ import annotations

from typing import Any


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for a no-op marker
    """Mark ``message`` as a msgid (English, ``%(name)s`` parameters); the portal translates it."""
    return message


class DefinitionError(ValueError):
    """A questionnaire definition is malformed; ``path`` says where (e.g. ``items[3].options``)."""

    def __init__(self, message: str, *, params: dict[str, Any] | None = None, path: str = ""):
        self.template = message
        self.params = dict(params) if params else {}
        self.message = message % self.params if self.params else message
        self.path = path
        super().__init__(f"{path}: {self.message}" if path else self.message)


class AnswerError(ValueError):
    """Answers do not fit the definition; ``errors`` maps link_id to a message in English.

    Each message is given as a ``(template, params)`` pair (see ``N_``) or plain text; ``templates`` keeps
    the pairs so that the portal can translate them.
    """

    def __init__(self, errors: dict[str, tuple[str, dict[str, Any]] | str]):
        self.templates = {k: v if isinstance(v, tuple) else (v, {}) for k, v in errors.items()}
        self.errors = {k: (t % p if p else t).strip() for k, (t, p) in self.templates.items()}
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))
