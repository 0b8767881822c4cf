"""The condition language of questionnaires: operators, comparison and conditional display. Imports no Django.

A condition compares the answer of an earlier question with a value::

    {"question": "q0", "operator": "=", "answer": "yes"}

Questions show or hide by their ``enable_when`` conditions (combined by ``enable_behavior``,
``"all"`` or ``"any"``), and scoring alerts fire by the same conditions. The semantics are those of
HL7 FHIR R4 ``Questionnaire.item.enableWhen`` (https://hl7.org/fhir/R4/questionnaire.html), with
``"="`` and ``"!="`` on a multiple-choice answer meaning "was ticked" and "was not ticked".
"""

from __future__ import annotations

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "exists")


def condition_compare(value, operator: str, expected) -> bool:
    """Return whether an answer meets one condition.

    Parameters
    ----------
    value : str, list of str, int, float or None
        The answer: an option's value (single choice), the ticked values (multiple choice), a
        number (Likert, number), ``YYYY-MM-DD`` (date) or text; ``None``, ``""`` or ``[]`` when
        unanswered.
    operator : str
        One of :data:`OPERATORS`.
    expected : object
        The value to compare with. For ``"exists"``: ``True`` or ``None`` asks for an answer,
        anything else for none.

    Returns
    -------
    bool
        ``"exists"`` tests for an answer. Any other operator is False for an unanswered question.
        On a list (multiple choice) ``"="`` means ``expected`` was ticked, ``"!="`` that it was not,
        and the order operators are False. ``">"``, ``">="``, ``"<"``, ``"<="`` compare as numbers
        (False when either side is not a number); ``"="`` and ``"!="`` compare as text.
    """
    if operator == "exists":
        present = value not in (None, "", [])
        return present if expected in (None, True) else not present
    if value in (None, "", []):
        return False
    if isinstance(value, list):
        # multiple choice: "=" means "was ticked", "!=" means "was not ticked"
        if operator == "=":
            return expected in value
        if operator == "!=":
            return expected not in value
        return False
    try:
        if operator in (">", ">=", "<", "<="):
            left, right = float(value), float(expected)
            return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[operator]
    except (TypeError, ValueError):
        return False
    if operator == "=":
        return str(value) == str(expected)
    return str(value) != str(expected)


def visible_items(definition: dict, answers: dict) -> list[str]:
    """Return the link_ids shown for ``answers``, in order (FHIR ``enableWhen`` semantics).

    A question whose conditions refer to a hidden question sees that question as unanswered.

    Parameters
    ----------
    definition : dict
        A definition whose items carry ``enable_when`` (list of conditions) and
        ``enable_behavior`` (``"all"``, the default, or ``"any"``); a condition's operator
        defaults to ``"="``.
    answers : dict
        ``{link_id: value}``.

    Returns
    -------
    list of str
        The link_ids of the questions shown, in the definition's order.
    """
    shown: list[str] = []
    effective: dict = {}
    for item in definition["items"]:
        conditions = item.get("enable_when") or []
        if conditions:
            results = [
                condition_compare(effective.get(c["question"]), c.get("operator", "="), c.get("answer"))
                for c in conditions
            ]
            enabled = all(results) if item.get("enable_behavior", "all") == "all" else any(results)
        else:
            enabled = True
        if enabled:
            shown.append(item["link_id"])
            if item["link_id"] in answers:
                effective[item["link_id"]] = answers[item["link_id"]]
    return shown
