"""Compose answers from graph facts: sentences, shortened lists, "I don't know", safety notes.

Answers are composed in the portal's languages (``"zh-hans"``, ``"en"``; :mod:`.phrases` holds every
sentence template). Graph names and stored property text stay Chinese, as stored, in either language.

Every sentence states facts read from the graph and records them as :class:`Fact` triples, so the
caller can show where an answer came from. Long lists keep the best-connected items (the graph's
``degree``) and say how many there are in all. The safety notice is fixed text; red-flag words
(chest pain, signs of a stroke, heavy bleeding, …) put an urgent notice first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .classifier import QuestionType as Q
from .phrases import KINDS, MISSING, PHRASES, QUESTION_FORMS, ZH, examples, language_of, phrase, suggestion
from .schema import PROP_ZH, Prop, Rel

#: The safety notice in Chinese (every language: ``phrase("safety_notice", language)``).
SAFETY_NOTICE = PHRASES[ZH]["safety_notice"]

#: Words that describe an emergency (our list; the FAST signs of stroke, chest pain, bleeding, …).
RED_FLAGS: tuple[str, ...] = (
    "胸痛",
    "胸口痛",
    "胸口疼",
    "心前区痛",
    "胸闷憋气",
    "压榨样",
    "呼吸困难",
    "喘不上气",
    "喘不过气",
    "上不来气",
    "憋得慌",
    "口角歪斜",
    "口眼歪斜",
    "嘴歪",
    "言语不清",
    "说话不清",
    "口齿不清",
    "说不出话",
    "一侧肢体无力",
    "半身无力",
    "半边身子",
    "一侧手脚",
    "肢体瘫痪",
    "突然看不见",
    "突然晕倒",
    "晕厥",
    "昏迷",
    "意识不清",
    "叫不醒",
    "抽搐",
    "惊厥",
    "大出血",
    "出血不止",
    "呕血",
    "吐血",
    "咯血",
    "便血",
    "黑便",
    "剧烈头痛",
    "剧烈腹痛",
    "高热不退",
    "自杀",
    "轻生",
    "不想活",
    "过敏性休克",
    "喉头水肿",
    "嘴唇发紫",
    "口唇发绀",
    "中毒",
    "误服",
    "农药",
)
URGENT_NOTICE = PHRASES[ZH]["urgent_notice"]
NOT_UNDERSTOOD = PHRASES[ZH]["not_understood"]
EXAMPLES = tuple(question for question, _ in examples(ZH))

#: The phrasing of a suggested question for each type (asked in Chinese, whatever the UI language).
SUGGEST = QUESTION_FORMS
#: Relationship (direction) or property → the question type it can answer.
AVAILABLE = {
    ("HAS_SYMPTOM", True): Q.DISEASE_SYMPTOM,
    ("ACCOMPANIES", True): Q.DISEASE_ACOMPANY,
    ("COMMON_DRUG", True): Q.DISEASE_DRUG,
    ("RECOMMENDED_DRUG", True): Q.DISEASE_DRUG,
    ("SHOULD_EAT", True): Q.DISEASE_DO_FOOD,
    ("SHOULD_NOT_EAT", True): Q.DISEASE_NOT_FOOD,
    ("NEEDS_CHECK", True): Q.DISEASE_CHECK,
    ("BELONGS_TO", True): Q.DISEASE_DEPARTMENT,
    ("HAS_SYMPTOM", False): Q.SYMPTOM_DISEASE,
    ("COMMON_DRUG", False): Q.DRUG_DISEASE,
    ("RECOMMENDED_DRUG", False): Q.DRUG_DISEASE,
    ("SHOULD_EAT", False): Q.FOOD_DO_DISEASE,
    ("SHOULD_NOT_EAT", False): Q.FOOD_NOT_DISEASE,
    ("NEEDS_CHECK", False): Q.CHECK_DISEASE,
    (Prop.DESC, None): Q.DISEASE_DESC,
    (Prop.CAUSE, None): Q.DISEASE_CAUSE,
    (Prop.PREVENT, None): Q.DISEASE_PREVENT,
    (Prop.CURE_WAY, None): Q.DISEASE_CUREWAY,
}


@dataclass(frozen=True)
class Fact:
    """One graph fact an answer used: subject, relation (type or property key), object."""

    subject: str
    relation: str
    object: str


@dataclass(frozen=True)
class Part:
    """The answer to one question type: its sentences and the facts they cite."""

    question_type: str
    text: str
    facts: tuple[Fact, ...]
    found: bool


def join_names(names: Sequence[str], total: int | None = None, *, limit: int = 10, language: str = ZH) -> str:
    """Join names with the language's separator, keeping the first ``limit`` and telling the total.

    >>> join_names(["咳嗽", "发热", "鼻塞"], 3)
    '咳嗽、发热、鼻塞'
    >>> join_names([str(i) for i in range(12)], 40, limit=3)
    '0、1、2等（共 40 项）'
    >>> join_names([str(i) for i in range(12)], 40, limit=3, language="en")
    '0, 1, 2 and 37 more (40 in all)'
    """
    total = len(names) if total is None else max(total, len(names))
    shown = list(names[:limit])
    text = phrase("list_separator", language).join(shown)
    if total > len(shown):
        text = phrase("list_more", language, shown=text, more=total - len(shown), total=total)
    return text


def text_of(value: Any, *, limit_items: int = 10, limit_chars: int = 240, language: str = ZH) -> str:
    """Return a property value as one line of text (lists joined, long text cut at a sentence end)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if str(v).strip()]
        return join_names(items, len(items), limit=limit_items, language=language)
    text = " ".join(str(value).split())
    if len(text) <= limit_chars:
        return text
    cut = text[:limit_chars]
    end = max(cut.rfind("。"), cut.rfind("；"), cut.rfind("！"))
    return (cut[: end + 1] if end > limit_chars // 2 else cut) + "……"


def _facts(subject: str, relation: str, names: Sequence[str], *, reverse: bool = False) -> tuple[Fact, ...]:
    if reverse:
        return tuple(Fact(name, relation, subject) for name in names)
    return tuple(Fact(subject, relation, name) for name in names)


def _list(results: dict, key: str) -> tuple[list[str], int]:
    row = results.get(key) or {}
    names = [n for n in (row.get("names") or []) if n]
    return names, int(row.get("total") or len(names))


#: Question types answered by one list of names in one sentence: (fact key, phrase key, relation, reverse).
_ONE_LIST = {
    Q.DISEASE_SYMPTOM: ("symptoms", "disease_symptom", Rel.HAS_SYMPTOM, False),
    Q.DISEASE_ACOMPANY: ("complications", "disease_acompany", Rel.ACCOMPANIES, False),
    Q.DISEASE_CHECK: ("checks", "disease_check", Rel.NEEDS_CHECK, False),
    Q.DISEASE_DEPARTMENT: ("departments", "disease_department", Rel.BELONGS_TO, False),
    Q.FOOD_NOT_DISEASE: ("food_not_diseases", "food_not_disease", Rel.SHOULD_NOT_EAT, True),
    Q.CHECK_DISEASE: ("check_diseases", "check_disease", Rel.NEEDS_CHECK, True),
}
#: Question types answered by a property of the disease: (property, phrase key).
_PROPERTY = {
    Q.DISEASE_CAUSE: (Prop.CAUSE, "disease_cause"),
    Q.DISEASE_PREVENT: (Prop.PREVENT, "disease_prevent"),
    Q.DISEASE_LASTTIME: (Prop.CURE_LASTTIME, "disease_lasttime"),
    Q.DISEASE_CUREPROB: (Prop.CURED_PROB, "disease_cureprob"),
    Q.DISEASE_EASYGET: (Prop.EASY_GET, "disease_easyget"),
}


def compose_part(
    question_type: str,
    subject: str,
    results: dict[str, Any],
    *,
    others: Sequence[tuple[str, str]] = (),
    limit: int = 10,
    language: str = ZH,
) -> Part:
    """Return the sentences answering ``question_type`` about ``subject`` from fetched ``results``.

    Parameters
    ----------
    question_type : str
        A :class:`~.classifier.QuestionType` value.
    subject : str
        The entity the question is about (several symptoms joined with 、, as the graph names them).
    results : dict
        Fetched rows by fact key (see :mod:`.templates`): list keys map to ``{"names", "total"}``,
        ``"properties"`` to the disease's property map.
    others : sequence of (name, label)
        Further entities in the question (a food or drug asked about by name).
    limit : int
        Most items shown per list.
    language : str
        ``"zh-hans"`` (default) or ``"en"``: the language of the sentences; graph names and stored
        text stay as stored.

    Returns
    -------
    Part
        ``found`` is False (and ``text`` empty) when the results hold nothing to say.
    """
    lang = language_of(language)
    props = results.get("properties") or {}
    t = question_type
    none = Part(t, "", (), False)

    # Several symptoms come joined with 、 (as in the facts); a sentence lists them the language's way.
    shown_subject = phrase("list_separator", lang).join(subject.split("、"))

    def say(key: str, **values: object) -> str:
        return phrase(key, lang, d=shown_subject, **values)

    def joined(names: Sequence[str], total: int, most: int = limit) -> str:
        return join_names(names, total, limit=most, language=lang)

    def sentences(items: Sequence[str]) -> str:
        return phrase("sentence_separator", lang).join(items)

    def prop_part(prop: str, key: str) -> Part:
        value = text_of(props.get(prop), language=lang)
        if not value:
            return none
        return Part(t, say(key, v=value), (Fact(subject, prop, value),), True)

    if t in _ONE_LIST:
        fact_key, key, relation, reverse = _ONE_LIST[t]
        names, total = _list(results, fact_key)
        if not names:
            return none
        return Part(t, say(key, names=joined(names, total)), _facts(subject, relation, names[:limit], reverse=reverse),
                    True)
    if t in _PROPERTY:
        return prop_part(*_PROPERTY[t])
    if t == Q.DISEASE_DRUG:
        common, common_total = _list(results, "common_drugs")
        recommended, recommended_total = _list(results, "recommended_drugs")
        if not common and not recommended:
            return none
        said, facts = [], []
        if common:
            said.append(say("drug_common", names=joined(common, common_total)))
            facts += _facts(subject, Rel.COMMON_DRUG, common[:limit])
        if recommended:
            said.append(say("drug_recommended", names=joined(recommended, recommended_total)))
            facts += _facts(subject, Rel.RECOMMENDED_DRUG, recommended[:limit])
        for name, label in others:
            if label == "Drug":
                listed = name in common or name in recommended
                said.append(say("drug_listed" if listed else "drug_not_listed", name=name))
        said.append(say("drug_advice"))
        return Part(t, sentences(said), tuple(facts), True)
    if t in (Q.DISEASE_DO_FOOD, Q.DISEASE_NOT_FOOD):
        do, do_total = _list(results, "do_eat")
        recipes, recipes_total = _list(results, "recipes")
        avoid, avoid_total = _list(results, "not_eat")
        said, facts = [], []
        for name, label in others:
            if label == "Food":
                if name in avoid:
                    said.append(say("food_named_avoid", name=name))
                    facts.append(Fact(subject, Rel.SHOULD_NOT_EAT, name))
                elif name in do or name in recipes:
                    said.append(say("food_named_ok", name=name))
                    facts.append(Fact(subject, Rel.SHOULD_EAT, name))
        if t == Q.DISEASE_NOT_FOOD:
            if avoid:
                said.append(say("food_avoid", names=joined(avoid, avoid_total)))
                facts += _facts(subject, Rel.SHOULD_NOT_EAT, avoid[:limit])
            if do:
                said.append(say("food_do_short", names=joined(do, do_total)))
                facts += _facts(subject, Rel.SHOULD_EAT, do[:limit])
        else:
            if do:
                said.append(say("food_do", names=joined(do, do_total)))
                facts += _facts(subject, Rel.SHOULD_EAT, do[:limit])
            if recipes:
                said.append(say("food_recipes", names=joined(recipes, recipes_total)))
                facts += _facts(subject, Rel.RECOMMENDED_RECIPE, recipes[:limit])
            if avoid:
                said.append(say("food_avoid_short", names=joined(avoid, avoid_total)))
                facts += _facts(subject, Rel.SHOULD_NOT_EAT, avoid[:limit])
        if not facts:
            return none
        return Part(t, sentences(said), tuple(dict.fromkeys(facts)), True)
    if t == Q.DRUG_DISEASE:
        common, common_total = _list(results, "drug_diseases_common")
        recommended, recommended_total = _list(results, "drug_diseases_recommended")
        names = list(dict.fromkeys(common + recommended))
        if not names:
            return none
        total = max(common_total + recommended_total - (len(common) + len(recommended) - len(names)), len(names))
        facts = _facts(subject, Rel.COMMON_DRUG, [n for n in names[:limit] if n in common], reverse=True) + _facts(
            subject, Rel.RECOMMENDED_DRUG, [n for n in names[:limit] if n not in common], reverse=True
        )
        return Part(t, say("drug_disease", names=joined(names, total)), facts, True)
    if t == Q.FOOD_DO_DISEASE:
        do, do_total = _list(results, "food_do_diseases")
        recipe, recipe_total = _list(results, "food_recipe_diseases")
        names = list(dict.fromkeys(do + recipe))
        if not names:
            return none
        facts = _facts(subject, Rel.SHOULD_EAT, [n for n in names[:limit] if n in do], reverse=True) + _facts(
            subject, Rel.RECOMMENDED_RECIPE, [n for n in names[:limit] if n not in do], reverse=True
        )
        return Part(t, say("food_do_disease", names=joined(names, max(do_total, recipe_total))), facts, True)
    if t == Q.SYMPTOM_DISEASE:
        rows = results.get("symptom_diseases") or []
        names = [row["name"] for row in rows if row.get("name")]
        total = int((results.get("symptom_diseases_total") or {}).get("total") or len(names))
        if not names:
            return none
        return Part(
            t,
            say("symptom_disease", names=joined(names, total)),
            tuple(Fact(name, Rel.HAS_SYMPTOM, s) for name in names[:limit] for s in subject.split("、") if s),
            True,
        )
    if t == Q.SYMPTOM_DEPARTMENT:
        return _symptom_department(subject, results, language=lang)
    if t == Q.DISEASE_CUREWAY:
        part = prop_part(Prop.CURE_WAY, "disease_cureway")
        drugs, drugs_total = _list(results, "common_drugs")
        if not part.found:
            return part
        said, facts = [part.text], part.facts
        if drugs:
            said.append(say("cureway_drugs", names=joined(drugs, drugs_total, 5)))
            facts += _facts(subject, Rel.COMMON_DRUG, drugs[:5])
        said.append(say("cureway_advice"))
        return Part(t, sentences(said), facts, True)
    if t == Q.DISEASE_DESC:
        part = prop_part(Prop.DESC, "disease_desc")
        if part.found:
            return part
        symptoms, total = _list(results, "symptoms")
        if symptoms:
            return Part(
                t,
                say("disease_desc_symptoms", names=joined(symptoms, total)),
                _facts(subject, Rel.HAS_SYMPTOM, symptoms[:limit]),
                True,
            )
        return part
    return none


def _symptom_department(
    subject: str, results: dict[str, Any], *, departments: int = 4, per_department: int = 3, language: str = ZH
) -> Part:
    """Answer "which department for this symptom" through the diseases that have the symptom.

    ``results["symptom_departments"]`` holds rows ``{name, hits, diseases}``: a department, how many
    diseases with the symptom it treats and those diseases, best connected first.
    """
    rows = [r for r in results.get("symptom_departments") or [] if r.get("name") and r.get("diseases")]
    if not rows:
        return Part(Q.SYMPTOM_DEPARTMENT, "", (), False)
    symptoms = [s for s in subject.split("、") if s]
    shown = rows[:departments]
    reasons, facts = [], []
    for row in shown:
        diseases = [d for d in row["diseases"] if d][:per_department]
        total = int(row.get("hits") or len(diseases))
        listed = phrase("list_separator", language).join(diseases)
        if total > len(diseases):
            listed = phrase("list_and_others", language, names=listed)
        reasons.append(phrase("department_reason", language, department=row["name"], diseases=listed))
        for disease in diseases:
            facts.extend(Fact(disease, Rel.HAS_SYMPTOM, s) for s in symptoms)
            facts.append(Fact(disease, Rel.BELONGS_TO, row["name"]))
    text = phrase(
        "symptom_department",
        language,
        d=phrase("list_separator", language).join(symptoms),
        reasons=phrase("reason_separator", language).join(reasons),
        first=shown[0]["name"],
    )
    return Part(Q.SYMPTOM_DEPARTMENT, text, tuple(dict.fromkeys(facts)), True)


def unknown_text(
    question_type: str | None, subject: str | None, label: str | None = None, *, language: str = ZH
) -> str:
    """Return the honest "I don't know" sentence in ``language``.

    With no ``subject`` the question named nothing the graph knows; with a ``subject`` and no
    ``question_type`` it named an entity but asked nothing the assistant answers.
    """
    lang = language_of(language)
    if subject is None:
        return phrase("unknown_no_entity", lang)
    kind = KINDS[lang].get(label or "", KINDS[lang][""])
    if question_type is None:
        return phrase("unknown_kind_of_question", lang, kind=kind, subject=subject)
    what = MISSING[lang].get(question_type, MISSING[lang][""])
    return phrase("unknown", lang, kind=kind, subject=subject, what=what)


def suggestions_for(
    subject: str, available: Sequence[str], *, exclude: Sequence[str] = (), limit: int = 3, language: str = ZH
) -> list[tuple[str, str]]:
    """Return example questions about ``subject`` for the question types that have data.

    Returns
    -------
    list of (str, str)
        The Chinese question (what the recogniser understands) and its gloss in ``language``.
    """
    out: list[tuple[str, str]] = []
    for question_type in available:
        if question_type in exclude or question_type not in QUESTION_FORMS:
            continue
        pair = suggestion(question_type, subject, language)
        if pair[0] not in (question for question, _ in out):
            out.append(pair)
        if len(out) >= limit:
            break
    return out


def try_asking(pairs: Sequence[tuple[str, str]], language: str = ZH) -> str:
    """Return the "you could ask" line for (question, gloss) pairs in ``language``."""
    listed = phrase("example_separator", language).join(
        phrase("example", language, question=question, gloss=gloss) for question, gloss in pairs
    )
    return phrase("try_asking", language, examples=listed)


def red_flags_in(text: str, names: Sequence[str] = ()) -> list[str]:
    """Return the red-flag words found in the question or among the recognised names, in order."""
    found = [flag for flag in RED_FLAGS if flag in text]
    if not found:  # the question's own words first; recognised names ("头晕" → …) only otherwise
        found = [flag for flag in RED_FLAGS if flag in names]
    # Drop flags contained in a longer flag that was also found.
    return [f for f in found if not any(f != g and f in g for g in found)]


def property_label(key: str) -> str:
    """Return the Chinese name of a property key (the key itself when unknown)."""
    return PROP_ZH.get(key, key)
