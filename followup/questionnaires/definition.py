"""Questionnaire definitions: validation and answer checking. Imports no Django.

A definition is a JSON object::

    {
      "items": [
        {"link_id": "q1", "type": "single_choice", "text": "…", "text_en": "…", "required": true,
         "options": [{"value": "0", "label": "…", "label_en": "…", "score": 0}, …],
         "enable_when": [{"question": "q0", "operator": "=", "answer": "yes"}], "enable_behavior": "all"},
        {"link_id": "q2", "type": "number", "unit": "kg", "min": 20, "max": 300},
        {"link_id": "q3", "type": "likert", "min": 1, "max": 5, "min_label": "…", "max_label": "…"},
        {"link_id": "q4", "type": "multiple_choice", "options": […]},
        {"link_id": "q5", "type": "date"}, {"link_id": "q6", "type": "text", "max_length": 2000}
      ],
      "scoring": {…}   # see :mod:`followup.questionnaires.scoring`
    }

Answers are a dict ``{link_id: value}``: a string for single choice (the option's value), a list of
strings for multiple choice, an int for Likert, a number for number, ``YYYY-MM-DD`` for date and a
string for free text. A hidden question (its ``enable_when`` is not met) is never required and its
answer is ignored; conditions are evaluated by :mod:`followup.questionnaires.conditions`.
"""

from __future__ import annotations

import datetime as dt
import re

from .conditions import OPERATORS, visible_items
from .errors import AnswerError, DefinitionError, N_
from .scoring import scoring_validate

ITEM_TYPES = ("single_choice", "multiple_choice", "likert", "number", "date", "text")
_LINK_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
MAX_ITEMS = 200
MAX_TEXT_CHARS = 5000


def _number(value, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DefinitionError(N_("must be a number"), path=path)
    return float(value)


def definition_validate(definition: dict) -> dict:
    """Check a definition and return it normalised (defaults filled in).

    Parameters
    ----------
    definition : dict
        ``{"items": [...], "scoring": {...}?}`` as described in the module docstring.

    Returns
    -------
    dict
        A new dict with ``required`` (False), ``enable_when`` ([]) and ``enable_behavior`` ("all")
        set on every item.

    Raises
    ------
    DefinitionError
        On an unknown type, a duplicate or malformed link_id, choices without options, a range whose
        min exceeds its max, or a condition that refers to a later or unknown question.
    """
    if not isinstance(definition, dict) or not isinstance(definition.get("items"), list):
        raise DefinitionError(N_("a definition is an object with a list of items"))
    items = definition["items"]
    if not items:
        raise DefinitionError(N_("a questionnaire needs at least one question"), path="items")
    if len(items) > MAX_ITEMS:
        raise DefinitionError(N_("at most %(max_items)s questions"), params={"max_items": MAX_ITEMS}, path="items")
    seen: dict[str, dict] = {}
    normalised = []
    for index, raw in enumerate(items):
        path = f"items[{index}]"
        if not isinstance(raw, dict):
            raise DefinitionError(N_("a question is an object"), path=path)
        item = dict(raw)
        link_id = item.get("link_id")
        if not isinstance(link_id, str) or not _LINK_ID.match(link_id):
            raise DefinitionError(N_("link_id must start with a letter and hold letters, digits, '_', '-', '.'"),
                                  path=path)
        if link_id in seen:
            raise DefinitionError(N_("duplicate link_id %(link_id)r"), params={"link_id": link_id}, path=path)
        kind = item.get("type")
        if kind not in ITEM_TYPES:
            raise DefinitionError(N_("type must be one of %(item_types)s"),
                                  params={"item_types": ', '.join(ITEM_TYPES)}, path=path)
        if not isinstance(item.get("text"), str) or not item["text"].strip():
            raise DefinitionError(N_("text is required"), path=path)
        item["required"] = bool(item.get("required", False))
        if kind in ("single_choice", "multiple_choice"):
            options = item.get("options")
            if not isinstance(options, list) or len(options) < 2:
                raise DefinitionError(N_("a choice question needs at least two options"), path=f"{path}.options")
            values = set()
            clean_options = []
            for o_index, option in enumerate(options):
                o_path = f"{path}.options[{o_index}]"
                if not isinstance(option, dict) or not isinstance(option.get("value"), str) or not option["value"]:
                    raise DefinitionError(N_("an option has a non-empty string value"), path=o_path)
                if option["value"] in values:
                    raise DefinitionError(N_("duplicate option value %(value)r"),
                                          params={"value": option['value']}, path=o_path)
                values.add(option["value"])
                if "score" in option and option["score"] is not None:
                    _number(option["score"], f"{o_path}.score")
                clean_options.append({"label": option["value"], **option})
            item["options"] = clean_options
        if kind == "likert":
            low = int(_number(item.get("min", 1), f"{path}.min"))
            high = int(_number(item.get("max", 5), f"{path}.max"))
            if not 2 <= high - low + 1 <= 11:
                raise DefinitionError(N_("a Likert scale has 2 to 11 points"), path=path)
            item["min"], item["max"] = low, high
        if kind == "number":
            for key in ("min", "max"):
                if item.get(key) is not None:
                    _number(item[key], f"{path}.{key}")
            if item.get("min") is not None and item.get("max") is not None and item["min"] > item["max"]:
                raise DefinitionError(N_("min is larger than max"), path=path)
            item["unit"] = str(item.get("unit", ""))
        if kind == "text":
            item["max_length"] = int(item.get("max_length", 2000))
        conditions = item.get("enable_when") or []
        if not isinstance(conditions, list):
            raise DefinitionError(N_("enable_when is a list"), path=f"{path}.enable_when")
        for c_index, condition in enumerate(conditions):
            c_path = f"{path}.enable_when[{c_index}]"
            if not isinstance(condition, dict) or condition.get("question") not in seen:
                raise DefinitionError(N_("a condition refers to an earlier question"), path=c_path)
            if condition.get("operator", "=") not in OPERATORS:
                raise DefinitionError(N_("operator must be one of %(operators)s"),
                                      params={"operators": ' '.join(OPERATORS)}, path=c_path)
            if condition.get("operator", "=") != "exists" and "answer" not in condition:
                raise DefinitionError(N_("a condition needs an answer to compare with"), path=c_path)
        item["enable_when"] = [{"operator": "=", **c} for c in conditions]
        behavior = item.get("enable_behavior", "all")
        if behavior not in ("all", "any"):
            raise DefinitionError(N_("enable_behavior is 'all' or 'any'"), path=path)
        item["enable_behavior"] = behavior
        seen[link_id] = item
        normalised.append(item)
    result = {**definition, "items": normalised}
    if definition.get("scoring"):
        result["scoring"] = scoring_validate(definition["scoring"], normalised)
    return result


def _check_value(item: dict, value) -> tuple[str, dict] | None:
    """Return what is wrong with ``value`` for ``item`` as an ``N_`` template and its parameters, or None."""
    kind = item["type"]
    if kind == "single_choice":
        if not isinstance(value, str) or value not in {o["value"] for o in item["options"]}:
            return N_("not one of the options"), {}
    elif kind == "multiple_choice":
        allowed = {o["value"] for o in item["options"]}
        if not isinstance(value, list) or not all(isinstance(v, str) and v in allowed for v in value):
            return N_("a list of the options"), {}
        if len(set(value)) != len(value):
            return N_("an option was ticked twice"), {}
    elif kind == "likert":
        if isinstance(value, bool) or not isinstance(value, int) or not item["min"] <= value <= item["max"]:
            return N_("a whole number from %(min)s to %(max)s"), {"min": item["min"], "max": item["max"]}
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return N_("a number"), {}
        if item.get("min") is not None and value < item["min"]:
            return N_("at least %(min)s %(unit)s"), {"min": item["min"], "unit": item.get("unit", "")}
        if item.get("max") is not None and value > item["max"]:
            return N_("at most %(max)s %(unit)s"), {"max": item["max"], "unit": item.get("unit", "")}
    elif kind == "date":
        try:
            dt.date.fromisoformat(value)
        except (TypeError, ValueError):
            return N_("a date (YYYY-MM-DD)"), {}
    elif kind == "text":
        if not isinstance(value, str):
            return N_("text"), {}
        if len(value) > min(item.get("max_length", 2000), MAX_TEXT_CHARS):
            return N_("at most %(max_length)s characters"), {"max_length": item.get("max_length", 2000)}
    return None


def answers_validate(definition: dict, answers: dict, *, complete: bool) -> dict:
    """Check answers against a (validated) definition and return those of visible questions.

    Parameters
    ----------
    definition : dict
        Output of :func:`definition_validate`.
    answers : dict
        ``{link_id: value}``; ``None`` or ``""`` means unanswered.
    complete : bool
        True on submission: every visible required question must be answered. False for autosave.

    Returns
    -------
    dict
        The answers of visible questions, unanswered ones dropped.

    Raises
    ------
    AnswerError
        For an unknown link_id, a value of the wrong form or out of range, or (``complete``) a
        missing required answer.
    """
    if not isinstance(answers, dict):
        raise AnswerError({"answers": (N_("an object of link_id → value"), {})})
    by_id = {item["link_id"]: item for item in definition["items"]}
    errors: dict[str, tuple[str, dict]] = {}
    for link_id in answers:
        if link_id not in by_id:
            errors[link_id] = (N_("no such question"), {})
    shown = visible_items(definition, answers)
    kept = {}
    for link_id in shown:
        item = by_id[link_id]
        value = answers.get(link_id)
        if value in (None, "", []):
            if complete and item["required"]:
                errors[link_id] = (N_("required"), {})
            continue
        problem = _check_value(item, value)
        if problem:
            errors[link_id] = problem
        else:
            kept[link_id] = value
    if errors:
        raise AnswerError(errors)
    return kept
