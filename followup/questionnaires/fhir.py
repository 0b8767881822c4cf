"""HL7 FHIR R4 ``Questionnaire`` and ``QuestionnaireResponse`` import and export. Imports no Django.

Mapping of our item types (FHIR R4 Questionnaire.item.type, https://hl7.org/fhir/R4/questionnaire.html):

- single_choice → ``choice`` with ``answerOption.valueCoding`` (code = option value); the option's
  score travels in the ``ordinalValue`` extension (http://hl7.org/fhir/StructureDefinition/ordinalValue).
- multiple_choice → ``choice`` with ``repeats: true``.
- likert → ``integer`` with ``minValue``/``maxValue`` extensions and the ``questionnaire-itemControl``
  extension set to ``slider``.
- number → ``decimal`` with ``questionnaire-unit`` (UCUM coding) and ``minValue``/``maxValue``.
- date → ``date``; text → ``text`` (``maxLength``).
- enable_when → ``enableWhen`` (operators ``exists = != > < >= <=``) and ``enableBehavior``.
- scoring rules have no FHIR core element: they travel as JSON in the extension :data:`SCORING_URL`.

Validation uses the pydantic models of ``fhir.resources``. Version 8 of that package ships FHIR R5,
R4B (4.3.0) and STU3 models; Questionnaire and QuestionnaireResponse did not change between R4 (4.0.1)
and R4B, so the R4B models validate R4 documents of these two resources.
"""

from __future__ import annotations

import json
from typing import Any

from .definition import definition_validate
from .errors import DefinitionError, N_

SCORING_URL = "https://yixin-portal.org/fhir/StructureDefinition/questionnaire-scoring"
TEXT_EN_URL = "https://yixin-portal.org/fhir/StructureDefinition/text-en"
ORDINAL_URL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
MIN_URL = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_URL = "http://hl7.org/fhir/StructureDefinition/maxValue"
UNIT_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
ITEM_CONTROL_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
UCUM = "http://unitsofmeasure.org"
OPTION_SYSTEM = "https://yixin-portal.org/fhir/CodeSystem/answer"


class FhirError(ValueError):
    """A FHIR document is invalid or uses something this mapping does not support (an ``N_`` template)."""

    def __init__(self, message: str, *, params: dict[str, Any] | None = None):
        self.template = message
        self.params = dict(params) if params else {}
        self.message = message % self.params if self.params else message
        super().__init__(self.message)


def _validate(resource_type: str, data: dict) -> dict:
    """Validate ``data`` with the fhir.resources R4B model and return its JSON form."""
    if resource_type == "Questionnaire":
        from fhir.resources.R4B.questionnaire import Questionnaire as Model
    else:
        from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse as Model
    from pydantic import ValidationError

    if not isinstance(data, dict) or data.get("resourceType") != resource_type:
        raise FhirError(N_("expected a FHIR %(resource_type)s resource"), params={"resource_type": resource_type})
    try:
        model = Model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise FhirError(N_("invalid FHIR %(resource_type)s: %(where)s: %(get)s"),
                        params={"resource_type": resource_type, "where": where, "get": first.get('msg', exc)}) from None
    return json.loads(model.model_dump_json(exclude_none=True))


def _ext(url: str, **value) -> dict:
    return {"url": url, **value}


def _find_ext(element: dict, url: str) -> dict | None:
    return next((e for e in element.get("extension", []) if e.get("url") == url), None)


def _answer_key(item: dict) -> str:
    return {"single_choice": "valueCoding", "multiple_choice": "valueCoding", "likert": "valueInteger",
            "number": "valueDecimal", "date": "valueDate", "text": "valueString"}[item["type"]]


def _condition_answer(item: dict, condition: dict) -> dict:
    if condition["operator"] == "exists":
        return {"answerBoolean": condition.get("answer", True) in (None, True)}
    value = condition["answer"]
    if item["type"] in ("single_choice", "multiple_choice"):
        return {"answerCoding": {"system": OPTION_SYSTEM, "code": str(value)}}
    if item["type"] == "likert":
        return {"answerInteger": int(value)}
    if item["type"] == "number":
        return {"answerDecimal": float(value)}
    if item["type"] == "date":
        return {"answerDate": str(value)}
    return {"answerString": str(value)}


def questionnaire_to_fhir(definition: dict, *, code: str, title: str, version: int, url: str,
                          description: str = "", status: str = "active") -> dict:
    """Return a validated FHIR R4 ``Questionnaire`` (JSON dict) for a definition.

    Raises
    ------
    FhirError
        When the result does not validate (should not happen for a validated definition).
    """
    by_id = {i["link_id"]: i for i in definition["items"]}
    items = []
    for item in definition["items"]:
        kind = item["type"]
        out: dict = {"linkId": item["link_id"], "text": item["text"], "required": item.get("required", False)}
        extensions = []
        if item.get("text_en"):
            extensions.append(_ext(TEXT_EN_URL, valueString=item["text_en"]))
        if kind in ("single_choice", "multiple_choice"):
            out["type"] = "choice"
            out["repeats"] = kind == "multiple_choice"
            options = []
            for option in item["options"]:
                entry: dict = {"valueCoding": {"system": OPTION_SYSTEM, "code": option["value"], "display": option["label"]}}
                option_ext = []
                if option.get("score") is not None:
                    option_ext.append(_ext(ORDINAL_URL, valueDecimal=float(option["score"])))
                if option.get("label_en"):
                    option_ext.append(_ext(TEXT_EN_URL, valueString=option["label_en"]))
                if option_ext:
                    entry["extension"] = option_ext
                options.append(entry)
            out["answerOption"] = options
        elif kind == "likert":
            out["type"] = "integer"
            extensions += [
                _ext(MIN_URL, valueInteger=item["min"]), _ext(MAX_URL, valueInteger=item["max"]),
                _ext(ITEM_CONTROL_URL, valueCodeableConcept={"coding": [{
                    "system": "http://hl7.org/fhir/questionnaire-item-control", "code": "slider"}]}),
            ]
        elif kind == "number":
            out["type"] = "decimal"
            if item.get("unit"):
                extensions.append(_ext(UNIT_URL, valueCoding={"system": UCUM, "code": item["unit"], "display": item["unit"]}))
            if item.get("min") is not None:
                extensions.append(_ext(MIN_URL, valueDecimal=float(item["min"])))
            if item.get("max") is not None:
                extensions.append(_ext(MAX_URL, valueDecimal=float(item["max"])))
        elif kind == "date":
            out["type"] = "date"
        else:
            out["type"] = "text"
            out["maxLength"] = item.get("max_length", 2000)
        if item.get("enable_when"):
            out["enableWhen"] = [
                {"question": c["question"], "operator": c["operator"], **_condition_answer(by_id[c["question"]], c)}
                for c in item["enable_when"]
            ]
            if len(item["enable_when"]) > 1:
                out["enableBehavior"] = item.get("enable_behavior", "all")
        if extensions:
            out["extension"] = extensions
        items.append(out)
    resource = {
        "resourceType": "Questionnaire",
        "url": url,
        "version": str(version),
        "name": code.replace("-", "_").upper(),
        "title": title,
        "status": status,
        "item": items,
    }
    if description:
        resource["description"] = description
    if definition.get("scoring"):
        resource["extension"] = [_ext(SCORING_URL, valueString=json.dumps(definition["scoring"], ensure_ascii=False))]
    return _validate("Questionnaire", resource)


def _ext_value(element: dict, url: str):
    ext = _find_ext(element, url)
    if ext is None:
        return None
    return next((v for k, v in ext.items() if k.startswith("value")), None)


def _condition_from_fhir(condition: dict) -> dict:
    out = {"question": condition["question"], "operator": condition["operator"]}
    if condition["operator"] == "exists":
        out["answer"] = bool(condition.get("answerBoolean", True))
        return out
    for key, value in condition.items():
        if key.startswith("answer"):
            out["answer"] = value["code"] if key == "answerCoding" else value
    return out


def questionnaire_from_fhir(resource: dict) -> dict:
    """Read a FHIR R4 ``Questionnaire`` into ``{"code", "title", "version", "description", "definition"}``.

    Groups (``type: group``) are flattened; ``display`` items are skipped.

    Raises
    ------
    FhirError
        When the resource does not validate or has an item type with no equivalent here
        (attachment, reference, url, quantity, time, dateTime, boolean, open-choice).
    DefinitionError
        When the resulting definition is invalid (e.g. a condition on a later question).
    """
    data = _validate("Questionnaire", resource)

    def walk(items):
        for item in items or []:
            if item.get("type") == "group":
                yield from walk(item.get("item"))
            elif item.get("type") != "display":
                yield item

    items = []
    for item in walk(data.get("item")):
        kind = item.get("type")
        out: dict = {"link_id": item["linkId"], "text": item.get("text") or item["linkId"],
                     "required": bool(item.get("required", False))}
        text_en = _ext_value(item, TEXT_EN_URL)
        if text_en:
            out["text_en"] = text_en
        if kind == "choice":
            out["type"] = "multiple_choice" if item.get("repeats") else "single_choice"
            options = []
            for option in item.get("answerOption", []):
                coding = option.get("valueCoding")
                if coding is None:
                    value = next((str(v) for k, v in option.items() if k.startswith("value")), None)
                    coding = {"code": value, "display": value}
                entry = {"value": coding["code"], "label": coding.get("display") or coding["code"]}
                score = _ext_value(option, ORDINAL_URL)
                if score is None:
                    score = _ext_value(coding, ORDINAL_URL)
                if score is not None:
                    entry["score"] = score
                label_en = _ext_value(option, TEXT_EN_URL)
                if label_en:
                    entry["label_en"] = label_en
                options.append(entry)
            out["options"] = options
        elif kind == "integer" and _find_ext(item, ITEM_CONTROL_URL) and _ext_value(item, MIN_URL) is not None:
            out.update(type="likert", min=int(_ext_value(item, MIN_URL)), max=int(_ext_value(item, MAX_URL)))
        elif kind in ("integer", "decimal"):
            out["type"] = "number"
            unit = _ext_value(item, UNIT_URL)
            if unit:
                out["unit"] = unit.get("code") or unit.get("display", "")
            for key, url in (("min", MIN_URL), ("max", MAX_URL)):
                value = _ext_value(item, url)
                if value is not None:
                    out[key] = value
        elif kind == "date":
            out["type"] = "date"
        elif kind in ("string", "text"):
            out["type"] = "text"
            if item.get("maxLength"):
                out["max_length"] = item["maxLength"]
        else:
            raise FhirError(N_("item %(link_id)r: FHIR item type %(kind)r is not supported"),
                            params={"link_id": item['linkId'], "kind": kind})
        if item.get("enableWhen"):
            out["enable_when"] = [_condition_from_fhir(c) for c in item["enableWhen"]]
            out["enable_behavior"] = item.get("enableBehavior", "all")
        items.append(out)
    definition: dict = {"items": items}
    scoring = _ext_value(data, SCORING_URL)
    if scoring:
        try:
            definition["scoring"] = json.loads(scoring)
        except ValueError:
            raise FhirError(N_("the scoring extension does not hold JSON")) from None
    definition = definition_validate(definition)
    code = (data.get("name") or data.get("id") or "imported").lower().replace("_", "-")[:64]
    return {
        "code": code,
        "title": data.get("title") or code,
        "version": int(data["version"]) if str(data.get("version", "")).isdigit() else 1,
        "description": data.get("description", ""),
        "definition": definition,
    }


def response_to_fhir(definition: dict, answers: dict, *, questionnaire_url: str, status: str,
                     authored: str | None = None, subject_reference: str | None = None,
                     score: float | None = None) -> dict:
    """Return a validated FHIR R4 ``QuestionnaireResponse`` for answers to a definition.

    ``status`` is ``in-progress`` or ``completed``; ``authored`` an ISO 8601 date-time; the total score
    (if any) travels in the SDC ``questionnaire-scores`` style as an extension on the response.
    """
    items = []
    for item in definition["items"]:
        value = answers.get(item["link_id"])
        if value in (None, "", []):
            continue
        key = _answer_key(item)
        values = value if isinstance(value, list) else [value]
        answer_list = []
        for v in values:
            if key == "valueCoding":
                label = next((o["label"] for o in item["options"] if o["value"] == v), v)
                answer_list.append({key: {"system": OPTION_SYSTEM, "code": v, "display": label}})
            elif key == "valueDecimal":
                answer_list.append({key: float(v)})
            else:
                answer_list.append({key: v})
        items.append({"linkId": item["link_id"], "text": item["text"], "answer": answer_list})
    resource: dict = {"resourceType": "QuestionnaireResponse", "questionnaire": questionnaire_url, "status": status}
    if items:
        resource["item"] = items
    if authored:
        resource["authored"] = authored
    if subject_reference:
        resource["subject"] = {"reference": subject_reference}
    if score is not None:
        resource["extension"] = [_ext(SCORING_URL + "-total", valueDecimal=float(score))]
    return _validate("QuestionnaireResponse", resource)


def response_from_fhir(definition: dict, resource: dict) -> dict:
    """Read answers ``{link_id: value}`` from a FHIR R4 ``QuestionnaireResponse`` for ``definition``.

    Raises
    ------
    FhirError
        When the resource does not validate or answers a question the definition does not have.
    """
    data = _validate("QuestionnaireResponse", resource)
    by_id = {i["link_id"]: i for i in definition["items"]}
    answers: dict = {}

    def walk(items):
        for item in items or []:
            yield item
            yield from walk(item.get("item"))

    for item in walk(data.get("item")):
        if not item.get("answer"):
            continue
        question = by_id.get(item["linkId"])
        if question is None:
            raise FhirError(N_("the response answers %(link_id)r, which the questionnaire does not have"),
                            params={"link_id": item['linkId']})
        values = []
        for answer in item["answer"]:
            key, value = next(((k, v) for k, v in answer.items() if k.startswith("value")), (None, None))
            if key == "valueCoding":
                value = value["code"]
            values.append(value)
        answers[item["linkId"]] = values if question["type"] == "multiple_choice" else values[0]
    return answers


__all__ = ["FhirError", "DefinitionError", "questionnaire_to_fhir", "questionnaire_from_fhir",
           "response_to_fhir", "response_from_fhir"]


def score_observation(*, observation_id: str, questionnaire_code: str, questionnaire_title: str,
                      patient_id: int, total: float, max_total: float | None, band_label: str,
                      submitted_at: str | None) -> dict:
    """Return a validated FHIR R4 ``Observation`` (survey category) of one questionnaire's total score.

    PHQ-9 and GAD-7 are coded with the LOINC codes the issue names (44249-1, 69737-5: LOINC *panel*
    codes) and carry their LOINC *total score* term (44261-6, 70274-6) on a ``component`` with the
    same value (table and sources: :mod:`diagnosis.fhir.codes`); another questionnaire is coded by its
    portal code in :data:`diagnosis.fhir.codes.QUESTIONNAIRE_SYSTEM`. The value is a UCUM
    ``{score}`` quantity; ``band_label`` (the severity band) is the interpretation's text;
    ``submitted_at`` (ISO 8601) is both ``effectiveDateTime`` and ``issued``.

    Raises
    ------
    diagnosis.fhir.resources.FhirBuildError
        When the resource does not validate (a bug, not bad input).
    """
    from diagnosis.fhir import codes
    from diagnosis.fhir.resources import resource_validate

    value = int(total) if float(total).is_integer() else float(total)
    quantity = {"value": value, "unit": "{score}", "system": codes.UCUM, "code": "{score}"}
    known = codes.QUESTIONNAIRE_SCORE_CODES.get(questionnaire_code)
    if known:
        code = {"coding": [{"system": codes.LOINC, "code": known.panel, "display": known.panel_display}],
                "text": questionnaire_title}
    else:
        code = {"coding": [{"system": codes.QUESTIONNAIRE_SYSTEM, "code": questionnaire_code}],
                "text": questionnaire_title}
    data: dict = {
        "resourceType": "Observation",
        "id": observation_id,
        "status": "final",
        "category": [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
        "code": code,
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": quantity,
    }
    if known:
        data["component"] = [{"code": {"coding": [{"system": codes.LOINC, "code": known.total,
                                                   "display": known.total_display}]},
                              "valueQuantity": dict(quantity)}]
    if max_total is not None:
        data["referenceRange"] = [{"low": {"value": 0, "unit": "{score}", "system": codes.UCUM, "code": "{score}"},
                                   "high": {"value": int(max_total) if float(max_total).is_integer() else max_total,
                                            "unit": "{score}", "system": codes.UCUM, "code": "{score}"}}]
    if band_label:
        data["interpretation"] = [{"text": band_label}]
    if submitted_at:
        data["effectiveDateTime"] = submitted_at
        data["issued"] = submitted_at
    return resource_validate(data)
