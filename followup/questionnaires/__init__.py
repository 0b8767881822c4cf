"""Questionnaire definitions, conditional display, scoring and FHIR R4 conversion (plain Python, no Django).

Modules, each importing only those listed before it: :mod:`.errors`, :mod:`.conditions` (the
condition language), :mod:`.scoring`, :mod:`.definition`, :mod:`.fhir`.
"""

from .conditions import OPERATORS, condition_compare, visible_items
from .definition import answers_validate, definition_validate
from .errors import AnswerError, DefinitionError
from .scoring import ScoreResult, score_response

__all__ = ["OPERATORS", "AnswerError", "DefinitionError", "ScoreResult", "answers_validate", "condition_compare",
           "definition_validate", "score_response", "visible_items"]
