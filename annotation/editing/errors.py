"""The error of the editing package: an edit or refinement that cannot be carried out."""

from __future__ import annotations

from typing import Any

__all__ = ["EditError", "N_"]


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for a no-op marker
    """Mark ``message`` as a msgid (English, ``%(name)s`` parameters); the portal translates it."""
    return message


class EditError(ValueError):
    """An edit or refinement that cannot be carried out (a stable ``code`` and a message safe to show).

    ``template`` and ``params`` let the portal translate the message; ``message`` is the English text.
    """

    def __init__(self, message: str, *, params: dict[str, Any] | None = None, code: str = "bad_edit"):
        self.template = message
        self.params = dict(params) if params else {}
        self.message = message % self.params if self.params else message
        self.code = code
        super().__init__(self.message)
