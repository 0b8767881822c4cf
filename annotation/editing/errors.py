"""The error of the editing package: an edit or refinement that cannot be carried out."""

from __future__ import annotations

__all__ = ["EditError"]


class EditError(ValueError):
    """An edit or refinement that cannot be carried out (a stable ``code`` and a message safe to show)."""

    def __init__(self, message: str, *, code: str = "bad_edit"):
        super().__init__(message)
        self.message = message
        self.code = code
