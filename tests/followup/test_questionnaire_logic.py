"""Plain-Python questionnaire logic: definitions, conditional display, answer checking, scoring
(PHQ-9 and GAD-7 bands from the papers), FHIR R4 round trips validated by fhir.resources."""

from __future__ import annotations

import copy

import pytest

from followup.instruments import instruments_load
from followup.questionnaires import AnswerError, DefinitionError, answers_validate, definition_validate, score_response, visible_items
from followup.questionnaires.fhir import (
    FhirError,
    questionnaire_from_fhir,
    questionnaire_to_fhir,
    response_from_fhir,
    response_to_fhir,
)

YES_NO = [{"value": "no", "label": "否", "score": 0}, {"value": "yes", "label": "是", "score": 1}]


def sample_definition() -> dict:
    return definition_validate({
        "items": [
            {"link_id": "smoker", "type": "single_choice", "text": "您吸烟吗？", "required": True, "options": YES_NO},
            {"link_id": "packs", "type": "number", "text": "每天几包？", "unit": "包/天", "min": 0, "max": 10,
             "required": True, "enable_when": [{"question": "smoker", "operator": "=", "answer": "yes"}]},
            {"link_id": "symptoms", "type": "multiple_choice", "text": "症状", "options": [
                {"value": "cough", "label": "咳嗽", "score": 2}, {"value": "fever", "label": "发热", "score": 3},
                {"value": "none", "label": "无", "score": 0}]},
            {"link_id": "breath", "type": "likert", "text": "气短程度", "min": 0, "max": 4, "required": True},
            {"link_id": "onset", "type": "date", "text": "开始日期"},
            {"link_id": "note", "type": "text", "text": "其他", "max_length": 20},
        ],
        "scoring": {"method": "sum", "items": ["smoker", "symptoms", "breath"],
                    "bands": [{"min": 0, "max": 3, "code": "low", "label": "低"},
                              {"min": 4, "max": 9, "code": "high", "label": "高", "attention": True}],
                    "alerts": [{"question": "symptoms", "operator": "=", "answer": "fever", "code": "fever"}]},
    })


def test_conditional_question_appears_only_when_its_condition_holds():
    d = sample_definition()
    assert "packs" not in visible_items(d, {"smoker": "no"})
    assert "packs" in visible_items(d, {"smoker": "yes"})


def test_a_hidden_required_question_is_not_required_and_its_answer_is_dropped():
    d = sample_definition()
    kept = answers_validate(d, {"smoker": "no", "packs": 3, "breath": 1}, complete=True)
    assert kept == {"smoker": "no", "breath": 1}


def test_missing_and_malformed_answers_are_reported_per_question():
    d = sample_definition()
    with pytest.raises(AnswerError) as exc:
        answers_validate(d, {"smoker": "yes", "packs": 11, "symptoms": ["cough", "flu"], "onset": "2026-13-40",
                             "note": "x" * 21, "ghost": 1}, complete=True)
    assert exc.value.errors == {
        "ghost": "no such question", "packs": "at most 10 包/天", "symptoms": "a list of the options",
        "breath": "required", "onset": "a date (YYYY-MM-DD)", "note": "at most 20 characters"}


def test_autosave_accepts_partial_answers():
    assert answers_validate(sample_definition(), {"smoker": "yes"}, complete=False) == {"smoker": "yes"}


def test_score_sums_choices_multiple_choice_and_likert_and_finds_the_band():
    result = score_response(sample_definition(), {"smoker": "yes", "packs": 1, "symptoms": ["cough", "fever"], "breath": 2})
    # smoker 1 + symptoms (2 + 3) + breath 2 = 8
    assert result.total == 8 and result.band == "high" and result.attention
    assert [a["code"] for a in result.alerts] == ["fever"]
    assert result.max_total == 1 + 5 + 4


def test_score_is_none_until_every_scored_question_is_answered():
    result = score_response(sample_definition(), {"smoker": "no"})
    assert result.total is None and result.band is None


@pytest.mark.parametrize("mutate,where", [
    (lambda d: d["items"].append(dict(d["items"][0])), "duplicate link_id"),
    (lambda d: d["items"][0].update(type="slider"), "type must be one of"),
    (lambda d: d["items"][0].update(options=[{"value": "a", "label": "A"}]), "at least two options"),
    (lambda d: d["items"][1].update(min=5, max=1), "min is larger than max"),
    (lambda d: d["items"][1].update(enable_when=[{"question": "breath", "operator": "=", "answer": 1}]),
     "refers to an earlier question"),
    (lambda d: d["items"][3].update(min=1, max=20), "2 to 11 points"),
    (lambda d: d["scoring"].update(items=["note"]), "cannot be scored"),
    (lambda d: d["scoring"]["bands"].append({"min": 9, "max": 12, "code": "x"}), "bands overlap"),
    (lambda d: d.update(items=[]), "at least one question"),
])
def test_invalid_definitions_are_refused_with_the_place(mutate, where):
    raw = copy.deepcopy(sample_definition())
    mutate(raw)
    with pytest.raises(DefinitionError, match=where):
        definition_validate(raw)


@pytest.mark.parametrize("code,answers,total,band", [
    # PHQ-9 bands (Kroenke et al. 2001): 0-4, 5-9, 10-14, 15-19, 20-27
    ("phq-9", ["0"] * 9, 0, "minimal"), ("phq-9", ["1"] * 4 + ["0"] * 5, 4, "minimal"),
    ("phq-9", ["1"] * 5 + ["0"] * 4, 5, "mild"), ("phq-9", ["1"] * 9 + [], 9, "mild"),
    ("phq-9", ["2"] * 5 + ["0"] * 4, 10, "moderate"), ("phq-9", ["3"] * 5 + ["0"] * 4, 15, "moderately_severe"),
    ("phq-9", ["3"] * 6 + ["1"] * 2 + ["0"], 20, "severe"), ("phq-9", ["3"] * 9, 27, "severe"),
    # GAD-7 (Spitzer et al. 2006): 0-4, 5-9, 10-14, 15-21
    ("gad-7", ["0"] * 7, 0, "minimal"), ("gad-7", ["1"] * 5 + ["0"] * 2, 5, "mild"),
    ("gad-7", ["2"] * 5 + ["0"] * 2, 10, "moderate"), ("gad-7", ["3"] * 5 + ["0"] * 2, 15, "severe"),
    ("gad-7", ["3"] * 7, 21, "severe"),
])
def test_standard_instruments_score_into_the_published_bands(code, answers, total, band):
    instrument = next(i for i in instruments_load() if i["code"] == code)
    d = definition_validate(instrument["definition"])
    prefix = "phq9" if code == "phq-9" else "gad7"
    result = score_response(d, {f"{prefix}_{n}": v for n, v in enumerate(answers, start=1)})
    assert result.total == total and result.band == band


def test_phq9_item_9_raises_an_alert_whatever_the_total():
    instrument = next(i for i in instruments_load() if i["code"] == "phq-9")
    d = definition_validate(instrument["definition"])
    answers = {f"phq9_{n}": "0" for n in range(1, 9)} | {"phq9_9": "1"}
    result = score_response(d, answers)
    assert result.total == 1 and result.band == "minimal"
    assert [a["code"] for a in result.alerts] == ["self_harm_thoughts"] and result.attention
    # The difficulty question shows only once a problem was ticked.
    assert "phq9_difficulty" in visible_items(d, answers)
    assert "phq9_difficulty" not in visible_items(d, {f"phq9_{n}": "0" for n in range(1, 10)})


def test_instruments_carry_their_source():
    for instrument in instruments_load():
        assert "Kroenke" in instrument["definition"]["scoring"]["source"] or "Spitzer" in instrument["definition"]["scoring"]["source"]


def test_fhir_questionnaire_round_trip_keeps_the_definition():
    d = sample_definition()
    resource = questionnaire_to_fhir(d, code="smoking", title="吸烟", version=2, url="https://example.org/q/smoking")
    assert resource["resourceType"] == "Questionnaire" and resource["version"] == "2"
    by_id = {i["linkId"]: i for i in resource["item"]}
    assert by_id["smoker"]["type"] == "choice" and by_id["symptoms"]["repeats"] is True
    assert by_id["packs"]["type"] == "decimal" and by_id["packs"]["enableWhen"][0]["answerCoding"]["code"] == "yes"
    assert by_id["breath"]["type"] == "integer" and by_id["onset"]["type"] == "date"
    back = questionnaire_from_fhir(resource)
    assert back["definition"] == d and back["code"] == "smoking" and back["version"] == 2


def test_fhir_response_round_trip_keeps_the_answers():
    d = sample_definition()
    answers = {"smoker": "yes", "packs": 1.5, "symptoms": ["cough", "fever"], "breath": 3, "onset": "2026-10-01",
               "note": "夜间加重"}
    resource = response_to_fhir(d, answers, questionnaire_url="https://example.org/q/smoking|2", status="completed",
                                subject_reference="Patient/7", score=9)
    assert resource["subject"]["reference"] == "Patient/7"
    assert response_from_fhir(d, resource) == answers


@pytest.mark.parametrize("resource,message", [
    ({"resourceType": "Patient"}, "expected a FHIR Questionnaire"),
    ({"resourceType": "Questionnaire", "status": "active", "item": "not-a-list"}, "invalid FHIR Questionnaire"),
    ({"resourceType": "Questionnaire", "item": [{"linkId": "a", "type": "string"}]}, "invalid FHIR Questionnaire"),
    ({"resourceType": "Questionnaire", "status": "active", "item": [{"linkId": "a", "type": "attachment", "text": "x"}]},
     "not supported"),
])
def test_invalid_fhir_questionnaires_are_refused(resource, message):
    with pytest.raises(FhirError, match=message):
        questionnaire_from_fhir(resource)


def test_a_fhir_response_to_an_unknown_question_is_refused():
    resource = {"resourceType": "QuestionnaireResponse", "status": "completed",
                "item": [{"linkId": "ghost", "answer": [{"valueString": "x"}]}]}
    with pytest.raises(FhirError, match="ghost"):
        response_from_fhir(sample_definition(), resource)


def test_a_fhir_questionnaire_with_groups_is_flattened():
    resource = {"resourceType": "Questionnaire", "status": "active", "name": "GROUPED", "item": [
        {"linkId": "g", "type": "group", "text": "组", "item": [
            {"linkId": "intro", "type": "display", "text": "说明"},
            {"linkId": "age", "type": "integer", "text": "年龄"},
            {"linkId": "name", "type": "string", "text": "姓名"}]}]}
    parsed = questionnaire_from_fhir(resource)
    assert [(i["link_id"], i["type"]) for i in parsed["definition"]["items"]] == [("age", "number"), ("name", "text")]
