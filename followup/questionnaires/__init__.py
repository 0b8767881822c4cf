"""Questionnaire definitions, conditional display, scoring and FHIR R4 conversion (plain Python, no Django)."""

from .definition import AnswerError, DefinitionError, answers_validate, definition_validate, visible_items
from .scoring import ScoreResult, score_response

__all__ = ["AnswerError", "DefinitionError", "ScoreResult", "answers_validate", "definition_validate",
           "score_response", "visible_items"]
