"""Entity recognition without the graph: Aho–Corasick longest match, synonyms, edit distance."""

from __future__ import annotations

import pytest

from knowledge_graph.qa import QuestionClassifier, vocabulary_build
from knowledge_graph.qa.fuzzy import NearMissIndex, levenshtein
from knowledge_graph.qa.recognizer import EDIT_DISTANCE, EXACT, SYNONYM, EntityRecognizer


def recognizer(rows, synonyms=()):
    vocabulary = vocabulary_build(rows, synonyms=synonyms)
    return EntityRecognizer(vocabulary, stop_surfaces=QuestionClassifier().words())


ROWS = {
    "Disease": [
        {"name": "支气管炎", "degree": 5},
        {"name": "慢性支气管炎", "degree": 5, "aliases": ["老慢支"]},
        {"name": "糖尿病", "degree": 9},
        {"name": "缺铁性贫血", "degree": 20, "aliases": ["贫血"]},
        {"name": "贫血", "degree": 1},
    ],
    "Symptom": [{"name": "头痛", "degree": 8}, {"name": "腹泻", "degree": 4}, {"name": "症状", "degree": 1}],
    "Food": [{"name": "梨", "degree": 2}],
}


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("糖尿病", "糖尿病", 0),
        ("糖尿并", "糖尿病", 1),
        ("高血压", "高压", 1),
        ("kitten", "sitting", 3),
        ("头痛", "头疼脑热", 3),
    ],
)
def test_levenshtein_counts_single_character_edits(a, b, distance):
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


def test_levenshtein_limit_stops_early_with_limit_plus_one():
    assert levenshtein("阿莫西林胶囊", "布洛芬", limit=1) == 2


def test_near_miss_index_finds_substitution_insertion_and_deletion():
    index = NearMissIndex(["糖尿病", "高血压", "支气管哮喘"])
    assert index.near("糖尿并") == [("糖尿病", 1)]
    assert index.near("高血压压") == [("高血压", 1)]
    assert index.near("支气哮喘") == [("支气管哮喘", 1)]
    assert index.near("心脏病") == []


def test_near_miss_index_leaves_out_two_character_names():
    assert len(NearMissIndex(["感冒", "糖尿病"])) == 1


def test_exact_match_prefers_the_longest_name():
    found = recognizer(ROWS).exact("慢性支气管炎吃什么药")
    assert [(m.text, m.candidates[0].name) for m in found] == [("慢性支气管炎", "慢性支气管炎")]


def test_synonym_is_recognised_as_its_entity():
    found = recognizer(ROWS).exact("老慢支怎么治")
    assert found[0].candidates[0].name == "慢性支气管炎"
    assert found[0].candidates[0].via == SYNONYM


def test_builtin_synonym_maps_everyday_word_to_graph_name():
    found = recognizer(ROWS).exact("头疼怎么办")
    assert (found[0].candidates[0].name, found[0].candidates[0].label) == ("头痛", "Symptom")


def test_staff_synonym_with_label_is_recognised():
    found = recognizer(ROWS, synonyms=[("拉稀稀", "腹泻", "Symptom")]).exact("拉稀稀是什么病")
    assert found[0].candidates[0].name == "腹泻"


def test_synonym_for_missing_entity_is_ignored():
    assert recognizer(ROWS, synonyms=[("不存在的词", "不存在", "Disease")]).exact("不存在的词") == []


def test_thin_exact_node_yields_to_well_connected_alias_target():
    found = recognizer(ROWS).exact("贫血有什么症状")
    assert found[0].pick("Disease").name == "缺铁性贫血"


def test_question_words_are_never_entities():
    assert recognizer(ROWS).exact("有什么症状") == []


def test_single_character_food_is_recognised():
    found = recognizer(ROWS).exact("梨适合什么病")
    assert found[0].candidates[0].name == "梨"


def test_near_miss_corrects_a_typo_when_nothing_matched_exactly():
    found = recognizer(ROWS).near_misses("糖尿并有哪些并发症", blocked=[(3, 9)])
    assert [(m.text, m.candidates[0].name, m.candidates[0].via) for m in found] == [("糖尿并", "糖尿病", EDIT_DISTANCE)]


def test_near_miss_never_corrects_latin_words():
    assert recognizer({"Drug": [{"name": "ACTH", "degree": 3}]}).near_misses("MATCH") == []


def test_exact_latin_name_is_not_found_inside_a_longer_latin_word():
    assert recognizer({"Disease": [{"name": "SLE", "degree": 3}]}).exact("SLEEP well") == []


def test_thinly_connected_everyday_word_is_not_an_entity():
    assert recognizer({"Symptom": [{"name": "严重", "degree": 1}]}).exact("严重吗") == []


def test_jieba_keeps_graph_names_whole():
    tokens = recognizer(ROWS).tokens("慢性支气管炎吃什么药")
    assert tokens[0] == "慢性支气管炎"


def test_user_dictionary_lists_every_name_with_a_tag():
    text = recognizer(ROWS).user_dictionary()
    assert "糖尿病 " in text and "nzdisease" in text
    assert all(len(line.split()) == 3 for line in text.strip().splitlines())


def test_exact_match_reports_the_entity_labels_of_a_shared_name():
    rows = {"Disease": [{"name": "头痛", "degree": 3}], "Symptom": [{"name": "头痛", "degree": 9}]}
    found = recognizer(rows).exact("头痛")
    assert found[0].labels() == {"Disease", "Symptom"}
    assert all(c.via == EXACT for c in found[0].candidates)
