"""Parse CMeKG subject–predicate–object triples (gzipped or plain JSON lines ``{"s", "p", "o"}``).

CMeKG (Chinese Medical Knowledge Graph; Peking University ICL and Pengcheng Laboratory; as
packaged in PyCMeKG 0.2.5, MIT licence) has 469 predicates and no entity types. This module

1. types each subject from the predicates it has (a subject with 常见症状 or 就诊科室 is a disease,
   one with 不良反应 or 成份 a drug, one with 相关疾病 and 所属分类 but neither a check), with an
   optional vocabulary (name → labels) as tie-breaker and for subjects with no telling predicate;
2. maps the clinical predicates onto the schema's relations (:data:`RELATION_PREDICATES`) and onto
   disease properties (:data:`PROPERTY_PREDICATES`);
3. keeps every other triple as a generic relation: ``RELATED {predicate}`` for the few predicates
   whose object is an entity (:data:`ENTITY_PREDICATES`), ``ATTRIBUTE {predicate}`` to a ``Term``
   node holding the literal value otherwise.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from ..qa.schema import Label, Prop, Rel
from .base import GraphBatch, clean_name

DISEASE_SIGNS = frozenset(
    [
        "常见症状",
        "并发症",
        "就诊科室",
        "多发群体",
        "传染性",
        "常见病因",
        "病因",
        "ICD10",
        "相关药物",
        "发病部位",
        "常见发病部位",
        "临床症状及体征",
        "药物治疗",
        "检查",
        "实验室检查",
        "影像学检查",
        "辅助检查",
        "预防",
        "治疗",
        "传播途径",
        "鉴别诊断",
        "高危因素",
        "病理分型",
        "手术治疗",
        "辅助治疗",
        "治疗方案",
        "所属科室",
        "组织学检查",
        "内窥镜检查",
        "多发地区",
        "发病性别倾向",
        "主要症状",
        "主要病因",
        "转移部位",
        "中医病名",
    ]
)
DRUG_SIGNS = frozenset(
    [
        "不良反应",
        "成份",
        "适应症",
        "OTC类型",
        "药品类型",
        "用法用量",
        "注意事项",
        "药品监管分级",
        "商品名",
        "规格",
        "通用名",
        "禁忌",
        "贮藏",
        "性状",
        "有效期",
        "药物相互作用",
        "功能主治",
        "主治",
        "功效",
        "性味",
        "组成",
        "用途分类",
        "入药部位",
        "功用",
        "毒性",
        "用量",
        "是否处方药",
        "剂型",
        "批准文号",
        "ATC编码",
        "主要适用症",
    ]
)
CHECK_SIGNS = frozenset(["相关疾病", "相关症状", "所属分类"])
#: Subjects with only clinical-pathway predicates (手术_…, 诊断依据_…) are diseases.
_PATHWAY_PREFIXES = ("手术_", "诊断依据_", "术前准备_", "术后住院_", "出院标准", "进入路径标准")

#: (subject label, predicate) → (relation, target label, reversed). Reversed relations point from
#: the object to the subject (a drug's 适应症 X is "X uses this drug").
RELATION_PREDICATES: dict[tuple[Label, str], tuple[Rel, Label, bool]] = {}
for _p in ("常见症状", "临床症状及体征", "主要症状", "相关症状"):
    RELATION_PREDICATES[(Label.DISEASE, _p)] = (Rel.HAS_SYMPTOM, Label.SYMPTOM, False)
RELATION_PREDICATES[(Label.DISEASE, "并发症")] = (Rel.ACCOMPANIES, Label.DISEASE, False)
RELATION_PREDICATES[(Label.DISEASE, "相关药物")] = (Rel.COMMON_DRUG, Label.DRUG, False)
RELATION_PREDICATES[(Label.DISEASE, "药物治疗")] = (Rel.RECOMMENDED_DRUG, Label.DRUG, False)
for _p in ("检查", "实验室检查", "影像学检查", "辅助检查", "组织学检查", "内窥镜检查"):
    RELATION_PREDICATES[(Label.DISEASE, _p)] = (Rel.NEEDS_CHECK, Label.CHECK, False)
for _p in ("就诊科室", "所属科室"):
    RELATION_PREDICATES[(Label.DISEASE, _p)] = (Rel.BELONGS_TO, Label.DEPARTMENT, False)
for _p in ("适应症", "主治", "主要适用症"):
    RELATION_PREDICATES[(Label.DRUG, _p)] = (Rel.COMMON_DRUG, Label.DISEASE, True)
RELATION_PREDICATES[(Label.CHECK, "相关疾病")] = (Rel.NEEDS_CHECK, Label.DISEASE, True)
RELATION_PREDICATES[(Label.DRUG, "商品名")] = (Rel.PRODUCT_OF, Label.DRUG_PRODUCT, True)

#: Predicates that become list properties (on a subject of any label).
PROPERTY_PREDICATES: dict[str, Prop] = {
    "常见病因": Prop.CAUSE,
    "病因": Prop.CAUSE,
    "主要病因": Prop.CAUSE,
    "预防": Prop.PREVENT,
    "治疗": Prop.CURE_WAY,
    "手术治疗": Prop.CURE_WAY,
    "辅助治疗": Prop.CURE_WAY,
    "治疗方案": Prop.CURE_WAY,
    "化疗": Prop.CURE_WAY,
    "放射治疗": Prop.CURE_WAY,
    "多发群体": Prop.EASY_GET,
    "发病性别倾向": Prop.EASY_GET,
    "发病部位": Prop.BODY_PARTS,
    "常见发病部位": Prop.BODY_PARTS,
    "传染性": Prop.CONTAGIOUS,
    "传播途径": Prop.CONTAGIOUS,
    "ICD10": Prop.ICD10,
    "别称": Prop.ALIASES,
    "又称": Prop.ALIASES,
    "同义词": Prop.ALIASES,
    "中医病名": Prop.ALIASES,
    "通用名": Prop.ALIASES,
    "中文名": Prop.ALIASES,
    "英文名": Prop.ALIASES,
    "英文名称": Prop.ALIASES,
    "英文别名": Prop.ALIASES,
    "英文别称": Prop.ALIASES,
    "外文名": Prop.ALIASES,
}

#: Predicates whose object is an entity of the given label: kept as RELATED {predicate}.
ENTITY_PREDICATES: dict[tuple[Label, str], Label] = {
    (Label.DISEASE, "鉴别诊断"): Label.DISEASE,
    (Label.DISEASE, "上位关系"): Label.DISEASE,
    (Label.DISEASE, "下位关系"): Label.DISEASE,
    (Label.DISEASE, "相关疾病"): Label.DISEASE,
    (Label.DRUG, "药物相互作用"): Label.DRUG,
    (Label.CHECK, "相关症状"): Label.SYMPTOM,
}

#: qasystem_dict file stem → label.
VOCABULARY_FILES: dict[str, Label] = {
    "disease": Label.DISEASE,
    "symptom": Label.SYMPTOM,
    "drug": Label.DRUG,
    "food": Label.FOOD,
    "check": Label.CHECK,
    "department": Label.DEPARTMENT,
    "producer": Label.DRUG_PRODUCT,  # QASystemOnMedicalKG's "producer" entries name marketed products
}

_DEPARTMENT_SPLIT = re.compile(r"\s*[—–\-/、]\s*")


def triples_read(path: Path) -> Iterator[tuple[str, str, str] | None]:
    """Yield ``(s, p, o)`` from a (gzipped) JSON-lines file; malformed lines yield None."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                yield str(item["s"]), str(item["p"]), str(item["o"])
            except (json.JSONDecodeError, KeyError, TypeError):
                yield None


def vocabulary_read(folder: Path) -> dict[str, set[Label]]:
    """Read qasystem_dict-style vocabularies (``disease.txt`` …, one name a line): name → labels."""
    vocabulary: dict[str, set[Label]] = defaultdict(set)
    for stem, label in VOCABULARY_FILES.items():
        path = Path(folder) / f"{stem}.txt"
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            name = clean_name(line)
            if name:
                vocabulary[name].add(label)
    return vocabulary


def subject_label(predicates: set[str], known: set[Label] | None = None) -> Label:
    """Return the label of a CMeKG subject from its predicates, with vocabulary labels to break ties.

    Parameters
    ----------
    predicates : set of str
        Every predicate the subject has.
    known : set of Label, optional
        Labels a vocabulary gives this name.
    """
    known = known or set()
    disease = bool(predicates & DISEASE_SIGNS)
    drug = bool(predicates & DRUG_SIGNS)
    check = bool(predicates & CHECK_SIGNS) and "所属分类" in predicates
    if disease and not drug:
        return Label.CHECK if known == {Label.CHECK} else Label.DISEASE
    if drug and not disease:
        return Label.CHECK if check and Label.CHECK in known or check and "相关疾病" in predicates else Label.DRUG
    if disease and drug:
        for label in (Label.DISEASE, Label.DRUG, Label.CHECK):
            if label in known:
                return label
        return Label.DISEASE
    if predicates & CHECK_SIGNS:
        return Label.CHECK
    for label in (Label.DISEASE, Label.DRUG, Label.CHECK, Label.SYMPTOM, Label.FOOD):
        if label in known:
            return label
    if any(p.startswith(_PATHWAY_PREFIXES) for p in predicates):
        return Label.DISEASE
    return Label.DRUG  # the rest are medicinal plants and minerals


def cmekg_parse(
    path: Path,
    *,
    vocabulary: dict[str, set[Label]] | None = None,
    include_vocabulary_nodes: bool = True,
    limit: int | None = None,
) -> GraphBatch:
    """Parse CMeKG triples into a :class:`GraphBatch` (see the module docstring for the mapping).

    Parameters
    ----------
    path : Path
        ``cmekg_triples.jsonl.gz`` or an uncompressed JSON-lines file.
    vocabulary : dict, optional
        Name → labels (:func:`vocabulary_read`); types ambiguous subjects and the objects of
        drug indications (a known symptom stays a symptom).
    include_vocabulary_nodes : bool
        Also add every vocabulary name as a node of its label (so that it is recognised in
        questions even when no triple mentions it).
    limit : int, optional
        Read only the first ``limit`` triples.
    """
    vocabulary = vocabulary or {}
    batch = GraphBatch()
    triples: list[tuple[str, str, str]] = []
    predicates: dict[str, set[str]] = defaultdict(set)
    for item in triples_read(path):
        if limit is not None and batch.records >= limit:
            break
        batch.records += 1
        if item is None:
            batch.skipped += 1
            continue
        s, p, o = clean_name(item[0]), item[1].strip(), clean_name(item[2])
        if not s or not p or not o:
            batch.skipped += 1
            continue
        triples.append((s, p, o))
        predicates[s].add(p)

    labels = {s: subject_label(ps, vocabulary.get(s)) for s, ps in predicates.items()}
    diseases = {s for s, label in labels.items() if label == Label.DISEASE}
    symptoms_known = {name for name, ls in vocabulary.items() if Label.SYMPTOM in ls}
    diseases_known = diseases | {name for name, ls in vocabulary.items() if Label.DISEASE in ls}

    for s, p, o in triples:
        label = labels[s]
        batch.node(label, s)
        mapped = RELATION_PREDICATES.get((label, p))
        if mapped is not None:
            rel, target_label, reverse = mapped
            if rel == Rel.BELONGS_TO:
                o = [part for part in _DEPARTMENT_SPLIT.split(o) if part][-1]
            if rel == Rel.COMMON_DRUG and reverse and o in symptoms_known and o not in diseases_known:
                batch.relate(label, s, Rel.RELATED, Label.SYMPTOM, o, p)
            elif reverse:
                batch.relate(target_label, o, rel, label, s)
            else:
                batch.relate(label, s, rel, target_label, o)
            continue
        prop = PROPERTY_PREDICATES.get(p)
        if prop is not None:
            batch.add_to_list(label, s, prop, [o])
            continue
        entity_label = ENTITY_PREDICATES.get((label, p))
        if entity_label is not None:
            batch.relate(label, s, Rel.RELATED, entity_label, o, p)
            continue
        batch.relate(label, s, Rel.ATTRIBUTE, Label.TERM, o, p)

    if include_vocabulary_nodes:
        for name, name_labels in vocabulary.items():
            for label in name_labels:
                batch.node(label, name)
    return batch
