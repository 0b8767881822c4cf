"""The graph schema shared by the importers, the Cypher templates and the answer composer.

Node labels and relationship types are identifiers in Cypher text and cannot be query parameters,
so every query that names one takes it from the constants below (never from user text); the
helpers :func:`check_label` and :func:`check_relation` guard the few places that build a query from
a label chosen at run time.

The schema follows the entity and relation types of QASystemOnMedicalKG (liuhuanyong,
https://github.com/liuhuanyong/QASystemOnMedicalKG), with a drug product (a marketed preparation)
kept apart from its producer (the manufacturer), and generic ``RELATED`` / ``ATTRIBUTE`` edges that
keep the CMeKG predicates which have no place of their own (CMeKG: Byambasuren et al., "Preliminary
study on the construction of Chinese medical knowledge graph", J. Chinese Information Processing,
2019).
"""

from __future__ import annotations

from enum import StrEnum


class Label(StrEnum):
    """Node labels. Every node has a ``name`` that is unique within its label."""

    DISEASE = "Disease"
    SYMPTOM = "Symptom"
    DRUG = "Drug"
    DRUG_PRODUCT = "DrugProduct"
    FOOD = "Food"
    CHECK = "Check"
    DEPARTMENT = "Department"
    PRODUCER = "Producer"
    TERM = "Term"  # a literal value of a generic CMeKG predicate (not recognised in questions)


#: Labels whose names are recognised in questions, in the order used to break ties.
ENTITY_LABELS: tuple[Label, ...] = (
    Label.DISEASE,
    Label.SYMPTOM,
    Label.DRUG,
    Label.FOOD,
    Label.CHECK,
    Label.DEPARTMENT,
    Label.DRUG_PRODUCT,
    Label.PRODUCER,
)

LABEL_ZH: dict[str, str] = {
    Label.DISEASE: "疾病",
    Label.SYMPTOM: "症状",
    Label.DRUG: "药物",
    Label.DRUG_PRODUCT: "药品",
    Label.FOOD: "食物",
    Label.CHECK: "检查",
    Label.DEPARTMENT: "科室",
    Label.PRODUCER: "生产厂家",
    Label.TERM: "术语",
}


class Rel(StrEnum):
    """Relationship types (direction as written: source → target)."""

    HAS_SYMPTOM = "HAS_SYMPTOM"  # Disease → Symptom
    ACCOMPANIES = "ACCOMPANIES"  # Disease → Disease (complication)
    RECOMMENDED_DRUG = "RECOMMENDED_DRUG"  # Disease → Drug
    COMMON_DRUG = "COMMON_DRUG"  # Disease → Drug
    SHOULD_EAT = "SHOULD_EAT"  # Disease → Food
    SHOULD_NOT_EAT = "SHOULD_NOT_EAT"  # Disease → Food
    RECOMMENDED_RECIPE = "RECOMMENDED_RECIPE"  # Disease → Food
    NEEDS_CHECK = "NEEDS_CHECK"  # Disease → Check
    BELONGS_TO = "BELONGS_TO"  # Disease → Department
    MADE_BY = "MADE_BY"  # DrugProduct → Producer
    PRODUCT_OF = "PRODUCT_OF"  # DrugProduct → Drug
    RELATED = "RELATED"  # any typed entity → typed entity, property ``predicate``
    ATTRIBUTE = "ATTRIBUTE"  # any typed entity → Term, property ``predicate``


REL_ZH: dict[str, str] = {
    Rel.HAS_SYMPTOM: "症状",
    Rel.ACCOMPANIES: "并发症",
    Rel.RECOMMENDED_DRUG: "推荐药物",
    Rel.COMMON_DRUG: "常用药物",
    Rel.SHOULD_EAT: "宜吃",
    Rel.SHOULD_NOT_EAT: "忌吃",
    Rel.RECOMMENDED_RECIPE: "推荐食谱",
    Rel.NEEDS_CHECK: "检查",
    Rel.BELONGS_TO: "就诊科室",
    Rel.MADE_BY: "生产厂家",
    Rel.PRODUCT_OF: "通用药物",
    Rel.RELATED: "相关",
    Rel.ATTRIBUTE: "属性",
}

#: (source label, relation, target label) of the typed relations.
REL_ENDPOINTS: dict[Rel, tuple[Label, Label]] = {
    Rel.HAS_SYMPTOM: (Label.DISEASE, Label.SYMPTOM),
    Rel.ACCOMPANIES: (Label.DISEASE, Label.DISEASE),
    Rel.RECOMMENDED_DRUG: (Label.DISEASE, Label.DRUG),
    Rel.COMMON_DRUG: (Label.DISEASE, Label.DRUG),
    Rel.SHOULD_EAT: (Label.DISEASE, Label.FOOD),
    Rel.SHOULD_NOT_EAT: (Label.DISEASE, Label.FOOD),
    Rel.RECOMMENDED_RECIPE: (Label.DISEASE, Label.FOOD),
    Rel.NEEDS_CHECK: (Label.DISEASE, Label.CHECK),
    Rel.BELONGS_TO: (Label.DISEASE, Label.DEPARTMENT),
    Rel.MADE_BY: (Label.DRUG_PRODUCT, Label.PRODUCER),
    Rel.PRODUCT_OF: (Label.DRUG_PRODUCT, Label.DRUG),
}


class Prop(StrEnum):
    """Disease (and other node) properties; names follow QASystemOnMedicalKG's ``medical.json``."""

    DESC = "desc"  # description
    CAUSE = "cause"
    PREVENT = "prevent"
    CURE_WAY = "cure_way"  # list of cure methods
    CURE_LASTTIME = "cure_lasttime"  # cure duration
    CURED_PROB = "cured_prob"  # cure probability
    EASY_GET = "easy_get"  # susceptible population
    GET_PROB = "get_prob"  # prevalence
    INSURANCE = "insurance"  # medical insurance coverage (yibao_status)
    CONTAGIOUS = "contagious"  # contagiousness / transmission (get_way)
    CATEGORY = "category"
    BODY_PARTS = "body_parts"
    ALIASES = "aliases"  # other names, recognised in questions
    ICD10 = "icd10"
    DEGREE = "degree"  # number of relationships, set after each import; orders long lists


PROP_ZH: dict[str, str] = {
    Prop.DESC: "简介",
    Prop.CAUSE: "病因",
    Prop.PREVENT: "预防",
    Prop.CURE_WAY: "治疗方式",
    Prop.CURE_LASTTIME: "治疗周期",
    Prop.CURED_PROB: "治愈率",
    Prop.EASY_GET: "易感人群",
    Prop.GET_PROB: "患病率",
    Prop.INSURANCE: "医保",
    Prop.CONTAGIOUS: "传染性",
    Prop.CATEGORY: "分类",
    Prop.BODY_PARTS: "发病部位",
    Prop.ALIASES: "别名",
    Prop.ICD10: "ICD-10",
}

_LABELS = {str(label) for label in Label}
_RELS = {str(rel) for rel in Rel}
_PROPS = {str(prop) for prop in Prop}


def check_label(label: str) -> str:
    """Return ``label`` when it is one of the schema's labels.

    Raises
    ------
    ValueError
        When ``label`` is not a schema label (it must never reach Cypher text).
    """
    if label not in _LABELS:
        raise ValueError(f"not a node label of the schema: {label!r}")
    return str(label)


def check_relation(rel: str) -> str:
    """Return ``rel`` when it is one of the schema's relationship types.

    Raises
    ------
    ValueError
        When ``rel`` is not a schema relationship type.
    """
    if rel not in _RELS:
        raise ValueError(f"not a relationship type of the schema: {rel!r}")
    return str(rel)


def check_property(prop: str) -> str:
    """Return ``prop`` when it is one of the schema's property keys.

    Raises
    ------
    ValueError
        When ``prop`` is not a schema property key.
    """
    if prop not in _PROPS:
        raise ValueError(f"not a property key of the schema: {prop!r}")
    return str(prop)
