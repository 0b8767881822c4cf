"""Issue 16: the assistant answers in the page's language; graph names stay as stored.

The phrase table is checked for completeness; the answers are checked on the real starter graph,
through the API (Accept-Language) and the QA page, in Chinese and in English. An English answer may
hold Chinese only where it cites the graph (the names and stored text in ``facts``, the recognised
entities), repeats the user's words (red-flag words) or shows a question to ask in Chinese (the
``suggestions``, each glossed in English); a Chinese answer holds no English word but the allowed
abbreviations.
"""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from knowledge_graph.qa import phrases
from knowledge_graph.qa.classifier import QuestionType
from knowledge_graph.qa.composer import compose_part, join_names, unknown_text
from knowledge_graph.qa.schema import ENTITY_LABELS
from portal.models import Role
from tests.factories import UserFactory
from tests.helpers import api_client

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+")  # ideographs, CJK punctuation
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
#: Latin words a Chinese answer may hold: none today (120 is digits); listed so that one added is deliberate.
ALLOWED_ABBREVIATIONS: frozenset[str] = frozenset({"CT", "MRI", "B超", "ICU", "HIV", "DNA"})

QUESTIONS = {
    "symptom": "感冒有什么症状",
    "drug": "感冒吃什么药",
    "symptom_department": "头痛挂什么科",
    "unknown": "今天天气怎么样",
    "red_flag": "突然胸痛还呼吸困难怎么办",
}


def cjk_left(text: str, allowed) -> list[str]:
    """Return the runs of Chinese characters left in ``text`` once the ``allowed`` strings are removed."""
    for item in sorted({a for a in allowed if a}, key=len, reverse=True):
        text = text.replace(item, " ")
    return CJK.findall(text)


def cited(answer: dict) -> list[str]:
    """Return what an answer may say in Chinese in any language: graph names and text, user's words, questions."""
    out = [e["name"] for e in answer["entities"]] + [e["text"] for e in answer["entities"]]
    for fact in answer["facts"]:
        out += [fact["subject"], fact["object"], *fact["subject"].split("、"), *fact["object"].split("、")]
    # A gloss repeats the name its Chinese question is about, nothing else.
    for question, gloss in zip(answer["suggestions"], answer["suggestion_glosses"], strict=True):
        out += [run for run in CJK.findall(gloss) if run in question]
    return out + answer["red_flags"] + answer["suggestions"]


def english_words(text: str) -> list[str]:
    return [w for w in LATIN_WORD.findall(text) if w not in ALLOWED_ABBREVIATIONS]


# -- the phrase table ------------------------------------------------------------------------------


def test_every_phrase_key_has_every_language():
    keys = {language: set(table) for language, table in phrases.PHRASES.items()}
    assert set(keys) == set(phrases.LANGUAGES)
    assert keys[phrases.ZH] == keys[phrases.EN], keys[phrases.ZH] ^ keys[phrases.EN]
    for language in phrases.LANGUAGES:
        assert all(phrases.PHRASES[language][key].strip() or key.endswith("separator") for key in keys[language])


def test_english_phrases_hold_no_chinese_and_chinese_phrases_no_english():
    for key, text in phrases.PHRASES[phrases.EN].items():
        assert not CJK.findall(text), (key, text)
    for key, text in phrases.PHRASES[phrases.ZH].items():
        assert not english_words(re.sub(r"\{\w*\}", "", text)), (key, text)


def test_every_question_type_has_its_missing_words_and_every_suggestion_a_gloss_in_each_language():
    for language in phrases.LANGUAGES:
        assert set(QuestionType) <= set(phrases.MISSING[language]) - {""}, language
        assert set(phrases.QUESTION_FORMS) == set(phrases.GLOSSES[language]), language
        assert set(ENTITY_LABELS) <= set(phrases.KINDS[language]), language
    for text in list(phrases.MISSING[phrases.EN].values()) + list(phrases.GLOSSES[phrases.EN].values()):
        assert not CJK.findall(text)


@pytest.mark.parametrize(("code", "language"), [("en", "en"), ("en-gb", "en"), ("EN_us", "en"),
                                                  ("zh-hans", "zh-hans"), ("zh-cn", "zh-hans"), (None, "zh-hans"),
                                                  ("fr", "zh-hans")])
def test_language_codes_map_to_an_answer_language(code, language):
    assert phrases.language_of(code) == language


def test_english_lists_say_how_many_more():
    assert join_names(["鼻塞", "流涕", "咳嗽"], 3, language="en") == "鼻塞, 流涕, 咳嗽"
    assert join_names([str(i) for i in range(30)], 120, limit=5, language="en") == "0, 1, 2, 3, 4 and 115 more (120 in all)"


def test_english_symptom_department_reasoning_keeps_department_and_disease_names():
    results = {"symptom_departments": [
        {"name": "神经内科", "hits": 4, "diseases": ["偏头痛", "脑卒中", "紧张性头痛"]},
        {"name": "眼科", "hits": 1, "diseases": ["青光眼"]},
    ]}

    part = compose_part("symptom_department", "头痛", results, language="en")

    assert "神经内科 (偏头痛, 脑卒中, 紧张性头痛 and others)" in part.text and "眼科 (青光眼)" in part.text
    assert "Start with 神经内科" in part.text
    assert cjk_left(part.text, ["头痛", "神经内科", "眼科", "偏头痛", "脑卒中", "紧张性头痛", "青光眼"]) == []


def test_english_unknown_sentences_name_the_kind_in_english():
    assert unknown_text("disease_drug", "感冒", "Disease", language="en") == (
        "Sorry, the knowledge graph holds no medicines for the disease “感冒” yet.")
    assert unknown_text(None, "感冒", "Disease") == "抱歉，知识图谱里暂时没有疾病“感冒”的这类信息。"


# -- the API on the real graph -------------------------------------------------------------------------


def _ask(client, question, language):
    response = client.post("/api/kg/ask/", {"question": question}, format="json", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(QUESTIONS))
def test_english_answer_holds_chinese_only_where_it_cites_the_graph(starter_graph, kind):
    client = api_client(UserFactory(role=Role.DOCTOR))

    answer = _ask(client, QUESTIONS[kind], "en")

    assert answer["language"] == "en"
    assert cjk_left(answer["text"], cited(answer)) == [], answer["text"]
    assert not CJK.findall(answer["question_type_text"])
    assert "Note: this comes from a medical knowledge graph" in answer["safety_notice"]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(QUESTIONS))
def test_chinese_answer_holds_no_english_words(starter_graph, kind):
    client = api_client(UserFactory(role=Role.DOCTOR))

    answer = _ask(client, QUESTIONS[kind], "zh-hans")

    assert answer["language"] == "zh-hans"
    assert english_words(answer["text"]) == [], answer["text"]
    assert "不能代替医生的诊断" in answer["safety_notice"]


@pytest.mark.django_db
def test_both_languages_state_the_same_facts(starter_graph):
    client = api_client(UserFactory(role=Role.DOCTOR))
    for question in QUESTIONS.values():
        zh, en = _ask(client, question, "zh-hans"), _ask(client, question, "en")

        assert en["facts"] == zh["facts"] and en["question_types"] == zh["question_types"]
        assert en["suggestions"] == zh["suggestions"] and en["red_flags"] == zh["red_flags"]


@pytest.mark.django_db
def test_english_answers_name_what_they_found(starter_graph):
    client = api_client(UserFactory(role=Role.DOCTOR))

    symptom = _ask(client, QUESTIONS["symptom"], "en")
    drug = _ask(client, QUESTIONS["drug"], "en")
    department = _ask(client, QUESTIONS["symptom_department"], "en")

    symptoms = [f["object"] for f in symptom["facts"] if f["relation"] == "HAS_SYMPTOM"]
    assert symptoms and symptom["text"].startswith(f"Common symptoms of 感冒: {symptoms[0]}, ")
    assert symptom["question_type_text"] == "Symptoms of a disease"
    drugs = [f["object"] for f in drug["facts"] if f["relation"] in ("COMMON_DRUG", "RECOMMENDED_DRUG")]
    assert drugs and drugs[0] in drug["text"] and "is for a doctor or pharmacist to decide" in drug["text"]
    first_department = next(f["object"] for f in department["facts"] if f["relation"] == "BELONGS_TO")
    assert department["question_type"] == "symptom_department"
    assert f"Start with {first_department}" in department["text"] and "by department:" in department["text"]


@pytest.mark.django_db
def test_english_not_understood_answer_explains_that_questions_are_asked_in_chinese(starter_graph):
    client = api_client(UserFactory(role=Role.DOCTOR))

    answer = _ask(client, QUESTIONS["unknown"], "en")

    assert not answer["understood"] and "I did not understand this question" in answer["text"]
    assert "understood in Chinese only" in answer["text"]
    assert answer["suggestions"] and len(answer["suggestion_glosses"]) == len(answer["suggestions"])
    for question, gloss in zip(answer["suggestions"], answer["suggestion_glosses"]):
        assert f"{question} ({gloss})" in answer["text"]


@pytest.mark.django_db
def test_every_example_question_is_answered_in_both_languages(starter_graph):
    client = api_client(UserFactory(role=Role.DOCTOR))
    for question, gloss in phrases.examples("en"):
        zh, en = _ask(client, question, "zh-hans"), _ask(client, question, "en")

        assert zh["answered"] and en["answered"], question
        assert cjk_left(en["text"], cited(en)) == [] and all(run in question for run in CJK.findall(gloss))


@pytest.mark.django_db
def test_english_red_flag_answer_puts_the_emergency_first(starter_graph):
    client = api_client(UserFactory(role=Role.DOCTOR))

    answer = _ask(client, QUESTIONS["red_flag"], "en")
    zh = _ask(client, QUESTIONS["red_flag"], "zh-hans")

    assert answer["red_flags"] == ["胸痛", "呼吸困难"]
    first = answer["text"].split("\n")[0]
    assert first.startswith("⚠️ You mentioned “胸痛, 呼吸困难”") and "Call 120" in first
    assert "local emergency number" in first
    assert zh["text"].split("\n")[0].startswith("⚠️ 您提到“胸痛、呼吸困难”") and "120" in zh["text"]


@pytest.mark.django_db
def test_language_cookie_chooses_the_answer_language(starter_graph, settings):
    client = api_client(UserFactory(role=Role.DOCTOR))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"

    answer = client.post("/api/kg/ask/", {"question": "感冒有什么症状"}, format="json").json()

    assert answer["language"] == "en" and answer["text"].startswith("Common symptoms of 感冒")


# -- the page --------------------------------------------------------------------------------------


def _signed_in(client):
    user = UserFactory(role=Role.DOCTOR)
    client.force_login(user)
    return user


def _visible(page: str) -> str:
    """Return the page's visible text, less the elements marked as Chinese (questions to type)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    page = re.sub(r'<code lang="zh-Hans">.*?</code>', " ", page, flags=re.S)
    page = re.sub(r'<option[^>]*>.*?</option>', " ", page, flags=re.S)  # the language menu names itself
    page = re.sub(r"<title>.*?</title>", " ", page, flags=re.S)  # the portal's brand, 医心相印
    placeholders = " ".join(re.findall(r'placeholder="([^"]*)"', page))
    return html.unescape(re.sub(r"<[^>]+>", " ", page) + " " + placeholders)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(QUESTIONS))
def test_english_page_shows_chinese_only_in_graph_names_and_the_users_question(client, starter_graph, kind):
    _signed_in(client)
    api = api_client(UserFactory(role=Role.DOCTOR))
    expected = _ask(api, QUESTIONS[kind], "en")

    page = client.post(reverse("knowledge_graph:index"), {"question": QUESTIONS[kind]},
                       HTTP_ACCEPT_LANGUAGE="en", follow=True).content.decode()

    visible = _visible(page)
    text = visible[visible.index("Medical knowledge Q&A"):]  # the QA page's own content, after the navigation
    assert expected["text"].split("\n")[-1] in text  # the English safety notice
    # The examples to type in Chinese: the placeholder's question, and the names their glosses repeat.
    examples = [question for question, _ in phrases.examples("en", follow_up=True)]
    examples += [subject for _, subject in phrases.EXAMPLE_QUESTIONS]
    assert cjk_left(text, [QUESTIONS[kind], *cited(expected), *examples]) == []
    assert "Questions are understood in Chinese" in text and "(a follow-up: and which medicines for it?)" in text


@pytest.mark.django_db
@pytest.mark.parametrize("kind", list(QUESTIONS))
def test_chinese_page_shows_no_english_words(client, starter_graph, kind):
    _signed_in(client)

    page = client.post(reverse("knowledge_graph:index"), {"question": QUESTIONS[kind]},
                       HTTP_ACCEPT_LANGUAGE="zh-hans", follow=True).content.decode()

    text = _visible(page)
    kg = text[text.index("医学知识问答"):]  # the QA page's own content, after the portal's navigation
    assert english_words(kg) == [], english_words(kg)
    assert "试试：" in kg and "(a follow-up" not in kg


@pytest.mark.django_db
def test_english_entity_and_search_pages_have_english_labels(client, starter_graph):
    _signed_in(client)

    entity = _visible(client.get(reverse("knowledge_graph:entity", args=["Symptom", "头痛"]),
                                 HTTP_ACCEPT_LANGUAGE="en").content.decode())
    search = _visible(client.get(reverse("knowledge_graph:search"), {"q": "不存在的名字xyz"},
                                 HTTP_ACCEPT_LANGUAGE="en").content.decode())

    assert "Diseases with this symptom" in entity and "Back to the Q&A" in entity and "返回问答" not in entity
    assert "No entry has a name containing" in search and "查找实体" not in search
