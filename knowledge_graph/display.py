"""Words shown to users for the graph's internal codes: labels, question types, relations, properties.

The pipeline and the graph speak in codes (``Disease``, ``disease_symptom``, ``HAS_SYMPTOM``); pages
show these names instead, in the language of the request (English source strings, Chinese in
``locale/zh_Hans``). A relation read against its direction is named for what the listed entities are
("有此症状的疾病" on a symptom's page), never as the relation plus "(reverse)".
"""

from __future__ import annotations

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .qa.classifier import QuestionType as Q
from .qa.schema import Label, Prop, Rel

LABEL_NAMES = {
    Label.DISEASE: _("Disease"),
    Label.SYMPTOM: _("Symptom"),
    Label.DRUG: _("Drug"),
    Label.DRUG_PRODUCT: _("Drug product"),
    Label.FOOD: _("Food"),
    Label.CHECK: _("Examination"),
    Label.DEPARTMENT: _("Department"),
    Label.PRODUCER: _("Producer"),
    Label.TERM: _("Term"),
}

QUESTION_TYPE_NAMES = {
    Q.DISEASE_SYMPTOM: _("Symptoms of a disease"),
    Q.SYMPTOM_DISEASE: _("Diseases that cause a symptom"),
    Q.DISEASE_CAUSE: _("Causes"),
    Q.DISEASE_ACOMPANY: _("Complications"),
    Q.DISEASE_NOT_FOOD: _("Foods to avoid"),
    Q.DISEASE_DO_FOOD: _("Recommended foods"),
    Q.FOOD_NOT_DISEASE: _("Diseases that should avoid a food"),
    Q.FOOD_DO_DISEASE: _("Diseases a food suits"),
    Q.DISEASE_DRUG: _("Medicines"),
    Q.DRUG_DISEASE: _("Diseases a medicine treats"),
    Q.DISEASE_CHECK: _("Examinations needed"),
    Q.CHECK_DISEASE: _("Diseases an examination finds"),
    Q.DISEASE_PREVENT: _("Prevention"),
    Q.DISEASE_LASTTIME: _("Length of treatment"),
    Q.DISEASE_CUREWAY: _("Treatments"),
    Q.DISEASE_CUREPROB: _("Cure rate"),
    Q.DISEASE_EASYGET: _("People at risk"),
    Q.DISEASE_DESC: _("About a disease"),
    Q.DISEASE_DEPARTMENT: _("Department to visit"),
    Q.SYMPTOM_DEPARTMENT: _("Department to visit for a symptom"),
}

#: Relation read from its source: what the listed targets are.
RELATION_NAMES = {
    Rel.HAS_SYMPTOM: _("Symptoms"),
    Rel.ACCOMPANIES: _("Complications"),
    Rel.RECOMMENDED_DRUG: _("Recommended medicines"),
    Rel.COMMON_DRUG: _("Common medicines"),
    Rel.SHOULD_EAT: _("Recommended foods"),
    Rel.SHOULD_NOT_EAT: _("Foods to avoid"),
    Rel.RECOMMENDED_RECIPE: _("Recommended recipes"),
    Rel.NEEDS_CHECK: _("Examinations"),
    Rel.BELONGS_TO: _("Department to visit"),
    Rel.MADE_BY: _("Producer"),
    Rel.PRODUCT_OF: _("Generic drug"),
    Rel.RELATED: _("Related"),
    Rel.ATTRIBUTE: _("Attributes"),
}

#: Relation read from its target: what the listed sources are.
REVERSE_RELATION_NAMES = {
    Rel.HAS_SYMPTOM: _("Diseases with this symptom"),
    Rel.ACCOMPANIES: _("Diseases with this complication"),
    Rel.RECOMMENDED_DRUG: _("Diseases this medicine is recommended for"),
    Rel.COMMON_DRUG: _("Diseases this medicine is commonly used for"),
    Rel.SHOULD_EAT: _("Diseases for which this food is recommended"),
    Rel.SHOULD_NOT_EAT: _("Diseases for which this food should be avoided"),
    Rel.RECOMMENDED_RECIPE: _("Diseases for which this recipe is recommended"),
    Rel.NEEDS_CHECK: _("Diseases this examination helps to diagnose"),
    Rel.BELONGS_TO: _("Diseases seen in this department"),
    Rel.MADE_BY: _("Drug products made by this producer"),
    Rel.PRODUCT_OF: _("Drug products of this medicine"),
    Rel.RELATED: _("Related entries"),
    Rel.ATTRIBUTE: _("Entries with this attribute"),
}

PROPERTY_NAMES = {
    Prop.DESC: _("Description"),
    Prop.CAUSE: _("Causes"),
    Prop.PREVENT: _("Prevention"),
    Prop.CURE_WAY: _("Treatments"),
    Prop.CURE_LASTTIME: _("Length of treatment"),
    Prop.CURED_PROB: _("Cure rate"),
    Prop.EASY_GET: _("People at risk"),
    Prop.GET_PROB: _("Prevalence"),
    Prop.INSURANCE: _("Medical insurance"),
    Prop.CONTAGIOUS: _("Contagiousness"),
    Prop.CATEGORY: _("Category"),
    Prop.BODY_PARTS: _("Body parts"),
    Prop.ALIASES: _("Other names"),
    Prop.ICD10: _("ICD-10"),
}


def label_name(label: str) -> str:
    """Return the shown name of a node label ("疾病" for ``Disease``); never the code for a known label."""
    name = LABEL_NAMES.get(label)
    return str(name) if name is not None else gettext("Entry")


def question_type_name(question_type: str) -> str:
    """Return the shown name of a question type ("疾病的症状" for ``disease_symptom``)."""
    name = QUESTION_TYPE_NAMES.get(question_type)
    return str(name) if name is not None else gettext("Other question")


def relation_name(rel: str, predicate: str = "", *, outgoing: bool = True) -> str:
    """Return the shown name of a group of neighbours.

    A CMeKG predicate (``predicate``, Chinese, as stored) names an outgoing group itself; read
    backwards it becomes "entries whose <predicate> is this one".
    """
    if predicate:
        if outgoing:
            return predicate
        return gettext("Entries whose “%(predicate)s” is this one") % {"predicate": predicate}
    names = RELATION_NAMES if outgoing else REVERSE_RELATION_NAMES
    name = names.get(rel)
    return str(name) if name is not None else gettext("Related entries")


def property_name(key: str) -> str:
    """Return the shown name of a node property."""
    name = PROPERTY_NAMES.get(key)
    return str(name) if name is not None else gettext("Other information")


#: Section titles of the entity side panel (report, study and patient pages).
PANEL_SECTION_NAMES = {
    "description": _("Description"),
    "lay_text": _("In plain words"),
    "checks": _("Examinations"),
    "departments": _("Department to visit"),
    "related_diseases": _("Related diseases"),
}


def panel_section_names() -> dict[str, str]:
    """Return the entity panel's section titles in the request's language."""
    return {key: str(value) for key, value in PANEL_SECTION_NAMES.items()}
