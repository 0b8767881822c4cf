"""Question classification and answer composition without the graph."""

from __future__ import annotations

import pytest

from knowledge_graph.qa import QuestionClassifier, vocabulary_build
from knowledge_graph.qa.composer import SAFETY_NOTICE, compose_part, join_names, red_flags_in, text_of
from knowledge_graph.qa.recognizer import EntityRecognizer

ROWS = {
    "Disease": [{"name": n, "degree": 5} for n in ("感冒", "糖尿病", "高血压", "痛风", "失眠症")],
    "Symptom": [{"name": n, "degree": 5} for n in ("头痛", "发热", "咳嗽", "失眠")],
    "Drug": [{"name": n, "degree": 5} for n in ("布洛芬", "阿莫西林")],
    "Food": [{"name": n, "degree": 5} for n in ("西瓜", "芹菜", "啤酒")],
    "Check": [{"name": n, "degree": 5} for n in ("血常规", "胃镜")],
}


@pytest.fixture(scope="module")
def classify():
    classifier = QuestionClassifier()
    vocabulary = vocabulary_build(ROWS)
    vocabulary.add_alias("失眠", "失眠症", "Disease")
    recognizer = EntityRecognizer(vocabulary, stop_surfaces=classifier.words())

    def run(text, previous=()):
        mentions = recognizer.exact(text)
        return classifier.classify(text, mentions, previous_types=previous)

    return run


@pytest.mark.parametrize(
    ("question", "types"),
    [
        ("感冒有哪些症状", ["disease_symptom"]),
        ("头痛是什么病", ["symptom_disease"]),
        ("糖尿病是怎么引起的", ["disease_cause"]),
        ("糖尿病有哪些并发症", ["disease_acompany"]),
        ("痛风不能吃什么", ["disease_not_food"]),
        ("感冒吃什么好", ["disease_do_food"]),
        ("哪些病不能吃西瓜", ["food_not_disease"]),
        ("芹菜有什么好处", ["food_do_disease"]),
        ("感冒吃什么药", ["disease_drug"]),
        ("布洛芬能治什么病", ["drug_disease"]),
        ("高血压要做什么检查", ["disease_check"]),
        ("胃镜能查出什么病", ["check_disease"]),
        ("怎么预防感冒", ["disease_prevent"]),
        ("感冒多久能好", ["disease_lasttime"]),
        ("糖尿病怎么治疗", ["disease_cureway"]),
        ("糖尿病能治好吗", ["disease_cureprob"]),
        ("哪些人容易得痛风", ["disease_easyget"]),
        ("什么是高血压", ["disease_desc"]),
        ("高血压挂什么科", ["disease_department"]),
        ("头痛挂什么科", ["symptom_department"]),
        ("发热看哪个科", ["symptom_department"]),
        ("糖尿病", ["disease_desc"]),
        ("糖尿病的症状和并发症", ["disease_symptom", "disease_acompany"]),
    ],
)
def test_question_is_classified_into_the_anchor_types(classify, question, types):
    assert list(classify(question).question_types) == types


def test_a_named_drug_turns_an_eating_question_into_a_drug_question(classify):
    result = classify("感冒能吃布洛芬吗")
    assert list(result.question_types) == ["disease_drug"]
    assert ("布洛芬", "Drug") in result.others


def test_a_named_food_stays_a_food_question_about_that_food(classify):
    result = classify("痛风可以喝啤酒吗")
    assert list(result.question_types) == ["disease_do_food"]
    assert result.others == (("啤酒", "Food"),)


def test_word_naming_symptom_and_disease_follows_the_question_words(classify):
    assert classify("失眠是什么病").subjects["symptom_disease"] == (("失眠", "Symptom"),)
    assert classify("失眠吃什么药").subjects["disease_drug"] == (("失眠症", "Disease"),)


def test_duration_question_about_medicine_asks_how_long(classify):
    assert list(classify("糖尿病要吃多久的药").question_types) == ["disease_lasttime"]


def test_follow_up_without_question_words_reuses_previous_types(classify):
    assert list(classify("那高血压呢", previous=["disease_check"]).question_types) == ["disease_check"]


def test_question_without_entities_has_no_type(classify):
    assert classify("今天天气怎么样").question_types == ()


def test_join_names_shortens_long_lists_and_tells_the_total():
    assert join_names(["甲", "乙", "丙"], 3) == "甲、乙、丙"
    assert join_names([str(i) for i in range(30)], 120, limit=5) == "0、1、2、3、4等（共 120 项）"


def test_text_of_cuts_long_text_at_a_sentence_end():
    text = "第一句话。" * 100
    out = text_of(text, limit_chars=30)
    assert out.endswith("。……") and len(out) <= 33


def test_composed_answer_cites_the_facts_it_states():
    part = compose_part("disease_symptom", "感冒", {"symptoms": {"names": ["鼻塞", "流涕"], "total": 2}})
    assert part.found and part.text == "感冒的常见症状有：鼻塞、流涕。"
    assert [(f.subject, str(f.relation), f.object) for f in part.facts] == [
        ("感冒", "HAS_SYMPTOM", "鼻塞"),
        ("感冒", "HAS_SYMPTOM", "流涕"),
    ]


def test_symptom_department_answer_names_departments_and_the_diseases_behind_them():
    results = {
        "symptom_departments": [
            {"name": "神经内科", "hits": 4, "diseases": ["偏头痛", "脑卒中", "紧张性头痛"]},
            {"name": "眼科", "hits": 1, "diseases": ["青光眼"]},
        ]
    }

    part = compose_part("symptom_department", "头痛", results)

    assert part.found
    assert "神经内科（偏头痛、脑卒中、紧张性头痛等）" in part.text and "眼科（青光眼）" in part.text
    assert "可先到神经内科就诊" in part.text
    assert ("偏头痛", "HAS_SYMPTOM", "头痛") in {(f.subject, str(f.relation), f.object) for f in part.facts}
    assert ("青光眼", "BELONGS_TO", "眼科") in {(f.subject, str(f.relation), f.object) for f in part.facts}
    assert not compose_part("symptom_department", "头痛", {"symptom_departments": []}).found


def test_composer_reports_nothing_found_for_empty_results():
    assert not compose_part("disease_cause", "感冒", {"properties": {}}).found


def test_red_flags_are_found_in_the_question():
    assert red_flags_in("我胸痛而且说话不清") == ["胸痛", "说话不清"]
    assert red_flags_in("感冒吃什么药") == []


def test_safety_notice_says_it_is_not_a_diagnosis():
    assert "不能代替医生的诊断" in SAFETY_NOTICE
