"""The assistant end to end on the starter graph: answers, corrections, follow-ups, logs, synonyms."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from knowledge_graph import services
from knowledge_graph.models import QuestionLog, Synonym
from portal.models import AuditLog, Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_answer_cites_drugs_from_the_graph(starter_graph):
    answer = services.kg_answer("感冒吃什么药？")

    assert answer.question_type == "disease_drug"
    assert [(e.name, e.label) for e in answer.entities] == [("感冒", "Disease")]
    assert "对乙酰氨基酚" in answer.text and answer.answered
    assert ("感冒", "COMMON_DRUG", "对乙酰氨基酚") in {(f.subject, str(f.relation), f.object) for f in answer.facts}
    assert answer.text.endswith(answer.safety_notice)


def test_everyday_word_is_corrected_and_the_correction_shown(starter_graph):
    answer = services.kg_answer("头疼是什么病？")

    assert answer.question_type == "symptom_disease"
    assert [(c.original, c.corrected) for c in answer.corrections] == [("头疼", "头痛")]
    assert "您是不是想问：头痛" in answer.text and "偏头痛" in answer.text


def test_typo_is_corrected_by_edit_distance(starter_graph):
    answer = services.kg_answer("糖尿并有哪些并发症")

    assert answer.question_type == "disease_acompany"
    assert answer.corrections[0].kind == "edit_distance" and "糖尿病肾病" in answer.text


def test_follow_up_uses_the_disease_of_the_previous_turn(starter_graph):
    first = services.kg_answer("糖尿病有哪些症状？")
    follow = services.kg_answer("那它吃什么药？", context=first.context)

    assert follow.question_type == "disease_drug"
    assert [(e.name, e.via) for e in follow.entities] == [("糖尿病", "context")]
    assert "二甲双胍" in follow.text


def test_unknown_question_answers_honestly_with_suggestions(starter_graph):
    answer = services.kg_answer("今天天气怎么样")

    assert not answer.answered and answer.question_types == ()
    assert "抱歉" in answer.text and answer.suggestions


def test_red_flag_symptom_puts_an_urgent_notice_first(starter_graph):
    answer = services.kg_answer("胸口痛是什么病")

    assert answer.red_flags == ("胸口痛",)
    assert answer.text.startswith("⚠️") and "120" in answer.text.splitlines()[0]


def test_injection_as_a_question_changes_nothing(starter_graph):
    before = starter_graph.read("MATCH (n) RETURN count(n) AS c")[0]["c"]

    answer = services.kg_answer("a' MATCH (n) DETACH DELETE n //")

    assert not answer.answered
    assert starter_graph.read("MATCH (n) RETURN count(n) AS c")[0]["c"] == before


def test_question_log_keeps_statistics_but_not_the_question(starter_graph):
    services.kg_answer("我叫张三，感冒吃什么药？", channel=QuestionLog.Channel.API)

    log = QuestionLog.objects.get()
    assert log.question_types == ["disease_drug"] and log.entities == [["感冒", "Disease"]]
    assert "张三" not in str(log.__dict__)


def test_staff_synonym_is_understood_in_the_next_question(starter_graph):
    doctor = UserFactory(role=Role.DOCTOR)
    services.synonym_create(actor=doctor, alias="糖病", canonical="糖尿病", label="Disease")

    answer = services.kg_answer("糖病吃什么药")

    assert [(e.name, e.via) for e in answer.entities] == [("糖尿病", "synonym")]
    assert AuditLog.objects.filter(target_type="kg_synonym", action="create").count() == 1


def test_synonym_for_an_entity_not_in_the_graph_is_refused(starter_graph):
    with pytest.raises(ValidationError):
        services.synonym_create(actor=None, alias="某某", canonical="不存在的病", label="Disease")
    assert not Synonym.objects.exists()


def test_duplicate_synonym_is_refused(starter_graph):
    services.synonym_create(actor=None, alias="糖病", canonical="糖尿病", label="Disease")
    with pytest.raises(ValidationError):
        services.synonym_create(actor=None, alias="糖病", canonical="糖尿病", label="Disease")


def test_starter_load_is_idempotent(starter_graph):
    summary = services.starter_load()
    assert (summary.nodes_created, summary.relationships_created) == (0, 0)
