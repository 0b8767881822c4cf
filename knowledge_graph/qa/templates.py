"""Cypher templates: one constant query text per kind of fact, with parameters for every value.

Only Cypher that Neo4j 5 and FalkorDB both run is used (MATCH, UNWIND, WHERE, WITH, ORDER BY,
LIMIT, ``collect()`` with a slice, ``count()``, ``properties()``). Labels and relationship types are
written into the text from the schema constants when this module is imported; entity names, limits
and lists travel as ``$name``, ``$names`` and ``$limit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .classifier import QuestionType as Q
from .schema import Label, Rel


@dataclass(frozen=True)
class GraphQuery:
    """One read: what it fetches (``key``), the constant Cypher text and its parameters."""

    key: str
    cypher: str
    params: dict[str, Any]


def _out(source: Label, rel: Rel, target: Label) -> str:
    return (
        f"MATCH (s:{source} {{name: $name}})-[:{rel}]->(x:{target}) "
        "WITH x ORDER BY coalesce(x.degree, 0) DESC, x.name "
        "RETURN collect(x.name)[..$limit] AS names, count(x) AS total"
    )


def _in(source: Label, rel: Rel, target: Label) -> str:
    return (
        f"MATCH (x:{source})-[:{rel}]->(s:{target} {{name: $name}}) "
        "WITH x ORDER BY coalesce(x.degree, 0) DESC, x.name "
        "RETURN collect(x.name)[..$limit] AS names, count(x) AS total"
    )


#: Fact key → (Cypher, relation shown in the facts).
LIST_QUERIES: dict[str, tuple[str, str]] = {
    "symptoms": (_out(Label.DISEASE, Rel.HAS_SYMPTOM, Label.SYMPTOM), Rel.HAS_SYMPTOM),
    "complications": (_out(Label.DISEASE, Rel.ACCOMPANIES, Label.DISEASE), Rel.ACCOMPANIES),
    "common_drugs": (_out(Label.DISEASE, Rel.COMMON_DRUG, Label.DRUG), Rel.COMMON_DRUG),
    "recommended_drugs": (_out(Label.DISEASE, Rel.RECOMMENDED_DRUG, Label.DRUG), Rel.RECOMMENDED_DRUG),
    "do_eat": (_out(Label.DISEASE, Rel.SHOULD_EAT, Label.FOOD), Rel.SHOULD_EAT),
    "recipes": (_out(Label.DISEASE, Rel.RECOMMENDED_RECIPE, Label.FOOD), Rel.RECOMMENDED_RECIPE),
    "not_eat": (_out(Label.DISEASE, Rel.SHOULD_NOT_EAT, Label.FOOD), Rel.SHOULD_NOT_EAT),
    "checks": (_out(Label.DISEASE, Rel.NEEDS_CHECK, Label.CHECK), Rel.NEEDS_CHECK),
    "departments": (_out(Label.DISEASE, Rel.BELONGS_TO, Label.DEPARTMENT), Rel.BELONGS_TO),
    "drug_diseases_common": (_in(Label.DISEASE, Rel.COMMON_DRUG, Label.DRUG), Rel.COMMON_DRUG),
    "drug_diseases_recommended": (_in(Label.DISEASE, Rel.RECOMMENDED_DRUG, Label.DRUG), Rel.RECOMMENDED_DRUG),
    "food_do_diseases": (_in(Label.DISEASE, Rel.SHOULD_EAT, Label.FOOD), Rel.SHOULD_EAT),
    "food_recipe_diseases": (_in(Label.DISEASE, Rel.RECOMMENDED_RECIPE, Label.FOOD), Rel.RECOMMENDED_RECIPE),
    "food_not_diseases": (_in(Label.DISEASE, Rel.SHOULD_NOT_EAT, Label.FOOD), Rel.SHOULD_NOT_EAT),
    "check_diseases": (_in(Label.DISEASE, Rel.NEEDS_CHECK, Label.CHECK), Rel.NEEDS_CHECK),
}

DISEASE_PROPERTIES = "MATCH (d:Disease {name: $name}) RETURN properties(d) AS props"

#: Diseases having any of the symptoms, those with the most of them first.
SYMPTOMS_TO_DISEASES = (
    "UNWIND $names AS symptom MATCH (d:Disease)-[:HAS_SYMPTOM]->(:Symptom {name: symptom}) "
    "WITH d, count(*) AS hits ORDER BY hits DESC, coalesce(d.degree, 0) DESC, d.name "
    "RETURN d.name AS name, hits LIMIT $limit"
)
SYMPTOMS_TO_DISEASES_COUNT = (
    "UNWIND $names AS symptom MATCH (d:Disease)-[:HAS_SYMPTOM]->(:Symptom {name: symptom}) "
    "WITH DISTINCT d RETURN count(d) AS total"
)

#: Departments of the diseases having any of the symptoms: the most such diseases first, each with
#: the best-connected of those diseases (the reasoning shown with the answer).
SYMPTOMS_TO_DEPARTMENTS = (
    "UNWIND $names AS symptom MATCH (d:Disease)-[:HAS_SYMPTOM]->(:Symptom {name: symptom}) "
    "WITH DISTINCT d MATCH (d)-[:BELONGS_TO]->(x:Department) "
    "WITH x, d ORDER BY coalesce(d.degree, 0) DESC, d.name "
    "WITH x, collect(d.name) AS diseases, count(d) AS hits "
    "ORDER BY hits DESC, coalesce(x.degree, 0) DESC, x.name "
    "RETURN x.name AS name, hits, diseases[..$limit] AS diseases LIMIT $limit"
)

#: What an entity has, to suggest questions when the asked one has no answer.
ENTITY_RELATIONS = {
    label: (
        f"MATCH (n:{label} {{name: $name}})-[r]-() "
        "RETURN type(r) AS rel, startNode(r) = n AS outgoing, count(r) AS c"
    )
    for label in (Label.DISEASE, Label.SYMPTOM, Label.DRUG, Label.FOOD, Label.CHECK)
}

#: Question type → fact keys of LIST_QUERIES it needs ("properties" for the disease's own properties).
TYPE_FACTS: dict[str, tuple[str, ...]] = {
    Q.DISEASE_SYMPTOM: ("symptoms",),
    Q.DISEASE_ACOMPANY: ("complications",),
    Q.DISEASE_DRUG: ("common_drugs", "recommended_drugs"),
    Q.DISEASE_DO_FOOD: ("do_eat", "recipes", "not_eat"),
    Q.DISEASE_NOT_FOOD: ("not_eat", "do_eat"),
    Q.DISEASE_CHECK: ("checks",),
    Q.DISEASE_DEPARTMENT: ("departments",),
    Q.DRUG_DISEASE: ("drug_diseases_common", "drug_diseases_recommended"),
    Q.FOOD_DO_DISEASE: ("food_do_diseases", "food_recipe_diseases"),
    Q.FOOD_NOT_DISEASE: ("food_not_diseases",),
    Q.CHECK_DISEASE: ("check_diseases",),
    Q.DISEASE_CAUSE: ("properties",),
    Q.DISEASE_PREVENT: ("properties",),
    Q.DISEASE_LASTTIME: ("properties",),
    Q.DISEASE_CUREWAY: ("properties", "common_drugs"),
    Q.DISEASE_CUREPROB: ("properties",),
    Q.DISEASE_EASYGET: ("properties",),
    Q.DISEASE_DESC: ("properties", "symptoms"),
    Q.SYMPTOM_DISEASE: ("symptom_diseases",),
    Q.SYMPTOM_DEPARTMENT: ("symptom_departments", "symptom_diseases"),
}


def queries_for(question_type: str, names: list[str], *, limit: int) -> list[GraphQuery]:
    """Return the reads that answer ``question_type`` about the entities called ``names``.

    Parameters
    ----------
    question_type : str
        A :class:`~.classifier.QuestionType` value.
    names : list of str
        The subject entities (several symptoms are looked up together).
    limit : int
        Most names fetched per list (the total is counted separately).
    """
    out: list[GraphQuery] = []
    for key in TYPE_FACTS.get(question_type, ()):
        if key == "symptom_diseases":
            out.append(GraphQuery("symptom_diseases", SYMPTOMS_TO_DISEASES, {"names": names, "limit": limit}))
            out.append(GraphQuery("symptom_diseases_total", SYMPTOMS_TO_DISEASES_COUNT, {"names": names}))
            continue
        if key == "symptom_departments":
            out.append(GraphQuery(key, SYMPTOMS_TO_DEPARTMENTS, {"names": names, "limit": limit}))
            continue
        for name in names:
            if key == "properties":
                out.append(GraphQuery("properties", DISEASE_PROPERTIES, {"name": name}))
            else:
                out.append(GraphQuery(key, LIST_QUERIES[key][0], {"name": name, "limit": limit}))
    return out
