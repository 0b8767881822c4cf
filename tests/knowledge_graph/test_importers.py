"""Importers against the real graph: our medical.json-format sample, a CMeKG slice, vocabularies."""

from __future__ import annotations

import json

import pytest

from knowledge_graph.graph import store
from knowledge_graph.importers import batch_write, cmekg_parse, qasystem_parse, vocabulary_parse
from knowledge_graph.importers.cmekg import subject_label, vocabulary_read
from knowledge_graph.importers.qasystem import drug_detail_split
from tests.conftest import shared_data

SAMPLE = [
    {
        "name": "示例感冒",
        "desc": "我们写的示例疾病。",
        "prevent": "勤洗手。",
        "cause": "病毒感染。",
        "easy_get": "儿童",
        "cure_department": ["内科", "呼吸内科"],
        "cure_way": ["对症治疗", "休息"],
        "cure_lasttime": "5-7天",
        "cured_prob": "90%",
        "symptom": ["鼻塞", "发热"],
        "acompany": ["示例肺炎"],
        "common_drug": ["对乙酰氨基酚"],
        "recommand_drug": ["布洛芬"],
        "drug_detail": ["示例药业布洛芬缓释胶囊(布洛芬缓释胶囊)"],
        "do_eat": ["白粥"],
        "not_eat": ["辣椒"],
        "recommand_eat": ["姜汤"],
        "check": ["血常规"],
        "category": ["疾病百科", "内科"],
        "yibao_status": "是",
        "get_way": "飞沫传播",
    },
    {"name": "示例肺炎", "symptom": ["发热", "咳嗽"], "check": ["胸部X线"]},
    {"desc": "没有名字的记录"},
]


@pytest.fixture
def sample_file(tmp_path):
    path = tmp_path / "medical.json"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in SAMPLE) + "\n", encoding="utf-8")
    return path


def test_drug_detail_splits_product_drug_and_producer():
    assert drug_detail_split("示例药业布洛芬缓释胶囊(布洛芬缓释胶囊)") == (
        "示例药业布洛芬缓释胶囊",
        "布洛芬缓释胶囊",
        "示例药业",
    )
    assert drug_detail_split("布洛芬片") == ("布洛芬片", "", "")


def test_qasystem_parse_maps_every_field(sample_file):
    batch = qasystem_parse(sample_file)

    assert (batch.records, batch.skipped) == (3, 1)
    props = batch.properties["Disease"]["示例感冒"]
    assert props["desc"] == "我们写的示例疾病。" and props["cure_way"] == ["对症治疗", "休息"]
    assert props["insurance"] == "是" and props["contagious"] == "飞沫传播"
    assert ("示例感冒", "鼻塞") in batch.relations[("Disease", "HAS_SYMPTOM", "Symptom")]
    assert ("示例药业布洛芬缓释胶囊", "示例药业") in batch.relations[("DrugProduct", "MADE_BY", "Producer")]
    assert ("示例药业布洛芬缓释胶囊", "布洛芬缓释胶囊") in batch.relations[("DrugProduct", "PRODUCT_OF", "Drug")]


def test_qasystem_import_writes_the_graph_and_a_second_import_changes_nothing(empty_graph, sample_file):
    first = batch_write(empty_graph, qasystem_parse(sample_file), source="sample")
    counts = store.graph_counts(empty_graph)

    second = batch_write(empty_graph, qasystem_parse(sample_file), source="sample")

    assert first.nodes_created == sum(first.nodes.values()) == 17
    assert first.relationships_created == 16
    assert (second.nodes_created, second.relationships_created, second.properties_set) == (0, 0, 0)
    assert store.graph_counts(empty_graph) == counts
    assert counts["relationships"]["BELONGS_TO"] == 2 and counts["relationships"]["MADE_BY"] == 1


def test_subject_label_follows_the_predicates_and_then_the_vocabulary():
    assert subject_label({"常见症状", "就诊科室"}) == "Disease"
    assert subject_label({"不良反应", "成份"}) == "Drug"
    assert subject_label({"相关疾病", "所属分类"}) == "Check"
    assert subject_label({"分布区域"}, {"Food"}) == "Food"


def test_cmekg_slice_is_typed_mapped_and_idempotent(empty_graph):
    path = shared_data("zh_medical_kg", "cmekg_triples.jsonl.gz")
    batch = cmekg_parse(path, limit=20000)

    first = batch_write(empty_graph, batch, source="cmekg-slice")
    second = batch_write(empty_graph, cmekg_parse(path, limit=20000), source="cmekg-slice")

    assert batch.records == 20000
    counts = store.graph_counts(empty_graph)
    for label in ("Disease", "Drug", "Symptom", "Check", "Department", "Term"):
        assert counts["nodes"][label] > 0, label
    for rel in ("HAS_SYMPTOM", "COMMON_DRUG", "NEEDS_CHECK", "BELONGS_TO", "ACCOMPANIES", "ATTRIBUTE"):
        assert counts["relationships"][rel] > 0, rel
    assert first.relationships_created == sum(first.relations.values())
    assert (second.nodes_created, second.relationships_created) == (0, 0)
    rows = empty_graph.read(
        "MATCH (d:Disease {name: $name})-[:HAS_SYMPTOM]->(s:Symptom) RETURN s.name AS name", {"name": "13—三体综合征"}
    )
    assert "严重智能低下" in {r["name"] for r in rows}


def test_vocabularies_type_cmekg_subjects_and_add_their_names(tmp_path, empty_graph):
    (tmp_path / "disease.txt").write_text("示例病甲\n", encoding="utf-8")
    (tmp_path / "food.txt").write_text("示例食物乙\n", encoding="utf-8")
    triples = tmp_path / "t.jsonl"
    triples.write_text(
        json.dumps({"s": "示例食物乙", "p": "分布区域", "o": "云南"}, ensure_ascii=False) + "\n", encoding="utf-8"
    )

    batch = cmekg_parse(triples, vocabulary=vocabulary_read(tmp_path))
    summary = batch_write(empty_graph, batch, source="t")

    assert summary.nodes == {"Disease": 1, "Food": 1, "Term": 1}
    assert vocabulary_parse(tmp_path).nodes["Disease"] == {"示例病甲"}


def test_real_vocabularies_are_read_with_their_labels():
    vocabulary = vocabulary_read(shared_data("zh_medical_kg", "qasystem_dict"))
    assert "Disease" in vocabulary["糖尿病"]
    assert len(vocabulary) > 40000
