"""Scoring rules of questionnaires. Imports no Django.

A definition's ``scoring`` object::

    {
      "method": "sum" | "mean",
      "items": ["q1", "q2", …],          # default: every choice and Likert question
      "bands": [{"min": 0, "max": 4, "code": "minimal", "label": "…", "label_en": "…", "attention": false}, …],
      "alerts": [{"question": "q9", "operator": ">=", "answer": 1, "code": "…", "label": "…"}],
      "source": "where the bands come from (paper, manual)"
    }

An item's score is its option's ``score`` (single choice), the sum of the ticked options' scores
(multiple choice), the scale point (Likert) or the value of a number question listed in ``items``.
A total is computed only when every scored question that is shown was answered. An alert is a
condition (:mod:`followup.questionnaires.conditions`) on the answer of a question that is shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .conditions import OPERATORS, condition_compare, visible_items
from .errors import DefinitionError, N_


@dataclass(frozen=True)
class ScoreResult:
    """The outcome of scoring one response.

    ``total`` is None when a scored question is unanswered; ``band`` is the matching band's ``code``.
    """

    total: float | None
    item_scores: dict = field(default_factory=dict)
    band: str | None = None
    band_label: str = ""
    band_label_en: str = ""
    attention: bool = False
    alerts: list = field(default_factory=list)
    max_total: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _scored_ids(scoring: dict, items: list[dict]) -> list[str]:
    if scoring.get("items"):
        return list(scoring["items"])
    return [i["link_id"] for i in items if i["type"] in ("single_choice", "multiple_choice", "likert")]


def scoring_validate(scoring: dict, items: list[dict]) -> dict:
    """Check scoring rules against the definition's items and return them normalised.

    Raises
    ------
    DefinitionError
        For an unknown method or question, a scored item of a type that has no score (date, text),
        a choice without option scores, or bands that overlap or whose min exceeds max.
    """
    if not isinstance(scoring, dict):
        raise DefinitionError(N_("scoring is an object"), path="scoring")
    method = scoring.get("method", "sum")
    if method not in ("sum", "mean"):
        raise DefinitionError(N_("method is 'sum' or 'mean'"), path="scoring.method")
    by_id = {i["link_id"]: i for i in items}
    ids = _scored_ids(scoring, items)
    if not ids:
        raise DefinitionError(N_("no question is scored"), path="scoring.items")
    for link_id in ids:
        item = by_id.get(link_id)
        if item is None:
            raise DefinitionError(N_("no question %(link_id)r"), params={"link_id": link_id}, path="scoring.items")
        if item["type"] in ("date", "text"):
            raise DefinitionError(N_("%(link_id)r (%(type)s) cannot be scored"),
                                  params={"link_id": link_id, "type": item['type']}, path="scoring.items")
        if item["type"] in ("single_choice", "multiple_choice") and any(o.get("score") is None for o in item["options"]):
            raise DefinitionError(N_("every option of %(link_id)r needs a score"),
                                  params={"link_id": link_id}, path="scoring.items")
    bands = scoring.get("bands") or []
    previous_max = None
    for b_index, band in enumerate(sorted(bands, key=lambda b: b.get("min", 0))):
        path = f"scoring.bands[{b_index}]"
        if not isinstance(band, dict) or not isinstance(band.get("code"), str):
            raise DefinitionError(N_("a band has a code, min and max"), path=path)
        low, high = band.get("min"), band.get("max")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or low > high:
            raise DefinitionError(N_("a band's min is a number not above its max"), path=path)
        if previous_max is not None and low <= previous_max:
            raise DefinitionError(N_("bands overlap"), path=path)
        previous_max = high
    for a_index, alert in enumerate(scoring.get("alerts") or []):
        path = f"scoring.alerts[{a_index}]"
        if not isinstance(alert, dict) or alert.get("question") not in by_id or alert.get("operator", "=") not in OPERATORS:
            raise DefinitionError(N_("an alert names a question and an operator"), path=path)
    return {**scoring, "method": method, "items": ids, "bands": sorted(bands, key=lambda b: b["min"])}


def _item_score(item: dict, value) -> float | None:
    if value in (None, "", []):
        return None
    kind = item["type"]
    if kind == "single_choice":
        return next((float(o["score"]) for o in item["options"] if o["value"] == value), None)
    if kind == "multiple_choice":
        scores = {o["value"]: float(o["score"]) for o in item["options"]}
        return sum(scores[v] for v in value if v in scores)
    if kind in ("likert", "number"):
        return float(value)
    return None


def _item_max(item: dict) -> float | None:
    kind = item["type"]
    if kind == "single_choice":
        return max(float(o["score"]) for o in item["options"])
    if kind == "multiple_choice":
        return sum(max(float(o["score"]), 0.0) for o in item["options"])
    if kind == "likert":
        return float(item["max"])
    if kind == "number" and item.get("max") is not None:
        return float(item["max"])
    return None


def scale_max(definition: dict) -> float | None:
    """Return the highest total a definition's scoring can give (the sum of its scored items' maxima,
    e.g. 27 for PHQ-9 and 21 for GAD-7), or None for a mean score or an item without a maximum."""
    scoring = definition.get("scoring")
    if not scoring or scoring.get("method") == "mean":
        return None
    by_id = {i["link_id"]: i for i in definition.get("items", [])}
    total = 0.0
    for link_id in scoring.get("items", []):
        item_max = _item_max(by_id[link_id]) if link_id in by_id else None
        if item_max is None:
            return None
        total += item_max
    return total


def score_response(definition: dict, answers: dict) -> ScoreResult:
    """Score answers with the definition's rules.

    Parameters
    ----------
    definition : dict
        A validated definition with a ``scoring`` object.
    answers : dict
        ``{link_id: value}`` (validated by :func:`~.definition.answers_validate`).

    Returns
    -------
    ScoreResult
        ``total`` is the sum (or mean) of item scores over the scored questions that are shown,
        or None when one of them is unanswered; ``band`` is the band whose [min, max] holds the
        total; ``alerts`` lists the codes of alert rules that fired (evaluated even without a total).
    """
    scoring = definition.get("scoring")
    if not scoring:
        return ScoreResult(total=None)
    by_id = {i["link_id"]: i for i in definition["items"]}
    shown = set(visible_items(definition, answers))
    item_scores: dict[str, float] = {}
    complete = True
    max_total = 0.0
    for link_id in scoring["items"]:
        if link_id not in shown:
            continue
        item_max = _item_max(by_id[link_id])
        max_total = None if item_max is None or max_total is None else max_total + item_max
        score = _item_score(by_id[link_id], answers.get(link_id))
        if score is None:
            complete = False
        else:
            item_scores[link_id] = score
    alerts = [
        {"code": a.get("code", a["question"]), "label": a.get("label", ""), "label_en": a.get("label_en", "")}
        for a in scoring.get("alerts") or []
        if a["question"] in shown
        and condition_compare(answers.get(a["question"]), a.get("operator", "="), a.get("answer"))
    ]
    if not complete or not item_scores:
        return ScoreResult(total=None, item_scores=item_scores, alerts=alerts, attention=bool(alerts))
    total = sum(item_scores.values())
    if scoring["method"] == "mean":
        total = total / len(item_scores)
        max_total = None
    band = next((b for b in scoring["bands"] if b["min"] <= total <= b["max"]), None)
    return ScoreResult(
        total=total,
        item_scores=item_scores,
        band=band["code"] if band else None,
        band_label=band.get("label", "") if band else "",
        band_label_en=band.get("label_en", "") if band else "",
        attention=bool(alerts) or bool(band and band.get("attention")),
        alerts=alerts,
        max_total=max_total,
    )
