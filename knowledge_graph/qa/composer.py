"""Compose Chinese answers from graph facts: sentences, shortened lists, "I don't know", safety notes.

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
from .schema import LABEL_ZH, PROP_ZH, Prop, Rel

SAFETY_NOTICE = (
    "温馨提示：以上内容来自医学知识图谱，仅供健康科普参考，不能代替医生的诊断和治疗；"
    "用药请遵医嘱，症状持续或加重请及时就医。"
)

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
URGENT_NOTICE = (
    "⚠️ 您提到“{flags}”，这可能是需要立即处理的急症信号。请马上拨打 120 或尽快到最近医院的急诊就诊，不要等待网上答复。"
)

NOT_UNDERSTOOD = (
    "抱歉，我没有理解这个问题。我只能回答知识图谱里的疾病、症状、药物、食物和检查的问题，"
    "请在问题里写出疾病或症状的名称。"
)
EXAMPLES = ("感冒吃什么药？", "糖尿病有哪些并发症？", "头痛是什么病？", "高血压要做哪些检查？")

#: The phrasing of a suggested question for each type.
SUGGEST = {
    Q.DISEASE_SYMPTOM: "{}有哪些症状？",
    Q.DISEASE_CAUSE: "{}是什么原因引起的？",
    Q.DISEASE_ACOMPANY: "{}有哪些并发症？",
    Q.DISEASE_DO_FOOD: "{}吃什么好？",
    Q.DISEASE_NOT_FOOD: "{}不能吃什么？",
    Q.DISEASE_DRUG: "{}吃什么药？",
    Q.DISEASE_CHECK: "{}要做哪些检查？",
    Q.DISEASE_PREVENT: "怎样预防{}？",
    Q.DISEASE_CUREWAY: "{}怎么治疗？",
    Q.DISEASE_DEPARTMENT: "{}挂什么科？",
    Q.DISEASE_DESC: "{}是什么病？",
    Q.SYMPTOM_DISEASE: "{}是什么病？",
    Q.SYMPTOM_DEPARTMENT: "{}挂什么科？",
    Q.DRUG_DISEASE: "{}能治什么病？",
    Q.FOOD_DO_DISEASE: "{}适合什么病人吃？",
    Q.FOOD_NOT_DISEASE: "哪些病不能吃{}？",
    Q.CHECK_DISEASE: "{}能查出什么病？",
}
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


def join_names(names: Sequence[str], total: int | None = None, *, limit: int = 10) -> str:
    """Join names with 、, keeping the first ``limit`` and noting how many there are in all.

    >>> join_names(["咳嗽", "发热", "鼻塞"], 3)
    '咳嗽、发热、鼻塞'
    >>> join_names([str(i) for i in range(12)], 40, limit=3)
    '0、1、2等（共 40 项）'
    """
    total = len(names) if total is None else max(total, len(names))
    shown = list(names[:limit])
    text = "、".join(shown)
    if total > len(shown):
        text += f"等（共 {total} 项）"
    return text


def text_of(value: Any, *, limit_items: int = 10, limit_chars: int = 240) -> str:
    """Return a property value as one line of text (lists joined, long text cut at a sentence end)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if str(v).strip()]
        return join_names(items, len(items), limit=limit_items)
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


def compose_part(
    question_type: str,
    subject: str,
    results: dict[str, Any],
    *,
    others: Sequence[tuple[str, str]] = (),
    limit: int = 10,
) -> Part:
    """Return the sentences answering ``question_type`` about ``subject`` from fetched ``results``.

    Parameters
    ----------
    question_type : str
        A :class:`~.classifier.QuestionType` value.
    subject : str
        The entity the question is about.
    results : dict
        Fetched rows by fact key (see :mod:`.templates`): list keys map to ``{"names", "total"}``,
        ``"properties"`` to the disease's property map.
    others : sequence of (name, label)
        Further entities in the question (a food or drug asked about by name).
    limit : int
        Most items shown per list.
    """
    props = results.get("properties") or {}
    t = question_type

    def prop_part(prop: str, template: str) -> Part:
        value = text_of(props.get(prop))
        if not value:
            return Part(t, "", (), False)
        return Part(t, template.format(d=subject, v=value), (Fact(subject, prop, value),), True)

    if t == Q.DISEASE_SYMPTOM:
        names, total = _list(results, "symptoms")
        if not names:
            return Part(t, "", (), False)
        return Part(
            t,
            f"{subject}的常见症状有：{join_names(names, total, limit=limit)}。",
            _facts(subject, Rel.HAS_SYMPTOM, names[:limit]),
            True,
        )
    if t == Q.DISEASE_ACOMPANY:
        names, total = _list(results, "complications")
        if not names:
            return Part(t, "", (), False)
        return Part(
            t,
            f"{subject}可能引起的并发症有：{join_names(names, total, limit=limit)}。",
            _facts(subject, Rel.ACCOMPANIES, names[:limit]),
            True,
        )
    if t == Q.DISEASE_DRUG:
        common, common_total = _list(results, "common_drugs")
        recommended, recommended_total = _list(results, "recommended_drugs")
        if not common and not recommended:
            return Part(t, "", (), False)
        sentences, facts = [], []
        if common:
            sentences.append(f"{subject}的常用药物有：{join_names(common, common_total, limit=limit)}。")
            facts += _facts(subject, Rel.COMMON_DRUG, common[:limit])
        if recommended:
            sentences.append(f"推荐药物有：{join_names(recommended, recommended_total, limit=limit)}。")
            facts += _facts(subject, Rel.RECOMMENDED_DRUG, recommended[:limit])
        for name, label in others:
            if label == "Drug":
                listed = name in common or name in recommended
                sentences.append(f"{name}{'在' if listed else '不在'}知识图谱记录的{subject}用药之列。")
        sentences.append("具体用哪种药、用多少，请听从医生或药师的指导。")
        return Part(t, "".join(sentences), tuple(facts), True)
    if t in (Q.DISEASE_DO_FOOD, Q.DISEASE_NOT_FOOD):
        do, do_total = _list(results, "do_eat")
        recipes, recipes_total = _list(results, "recipes")
        avoid, avoid_total = _list(results, "not_eat")
        sentences, facts = [], []
        for name, label in others:
            if label == "Food":
                if name in avoid:
                    sentences.append(f"{subject}患者不宜吃{name}。")
                    facts.append(Fact(subject, Rel.SHOULD_NOT_EAT, name))
                elif name in do or name in recipes:
                    sentences.append(f"{subject}患者可以适量吃{name}。")
                    facts.append(Fact(subject, Rel.SHOULD_EAT, name))
        if t == Q.DISEASE_NOT_FOOD:
            if avoid:
                sentences.append(f"{subject}患者应少吃或不吃：{join_names(avoid, avoid_total, limit=limit)}。")
                facts += _facts(subject, Rel.SHOULD_NOT_EAT, avoid[:limit])
            if do:
                sentences.append(f"宜吃：{join_names(do, do_total, limit=limit)}。")
                facts += _facts(subject, Rel.SHOULD_EAT, do[:limit])
        else:
            if do:
                sentences.append(f"{subject}患者宜吃：{join_names(do, do_total, limit=limit)}。")
                facts += _facts(subject, Rel.SHOULD_EAT, do[:limit])
            if recipes:
                sentences.append(f"推荐食谱：{join_names(recipes, recipes_total, limit=limit)}。")
                facts += _facts(subject, Rel.RECOMMENDED_RECIPE, recipes[:limit])
            if avoid:
                sentences.append(f"应少吃或不吃：{join_names(avoid, avoid_total, limit=limit)}。")
                facts += _facts(subject, Rel.SHOULD_NOT_EAT, avoid[:limit])
        if not facts:
            return Part(t, "", (), False)
        return Part(t, "".join(sentences), tuple(dict.fromkeys(facts)), True)
    if t == Q.DISEASE_CHECK:
        names, total = _list(results, "checks")
        if not names:
            return Part(t, "", (), False)
        return Part(
            t,
            f"{subject}通常需要做的检查有：{join_names(names, total, limit=limit)}。",
            _facts(subject, Rel.NEEDS_CHECK, names[:limit]),
            True,
        )
    if t == Q.DISEASE_DEPARTMENT:
        names, total = _list(results, "departments")
        if not names:
            return Part(t, "", (), False)
        return Part(
            t,
            f"{subject}一般到{join_names(names, total, limit=limit)}就诊。",
            _facts(subject, Rel.BELONGS_TO, names[:limit]),
            True,
        )
    if t == Q.DRUG_DISEASE:
        common, common_total = _list(results, "drug_diseases_common")
        recommended, recommended_total = _list(results, "drug_diseases_recommended")
        names = list(dict.fromkeys(common + recommended))
        if not names:
            return Part(t, "", (), False)
        total = max(common_total + recommended_total - (len(common) + len(recommended) - len(names)), len(names))
        facts = _facts(subject, Rel.COMMON_DRUG, [n for n in names[:limit] if n in common], reverse=True) + _facts(
            subject, Rel.RECOMMENDED_DRUG, [n for n in names[:limit] if n not in common], reverse=True
        )
        return Part(
            t, f"{subject}常用于治疗：{join_names(names, total, limit=limit)}。请在医生或药师指导下使用。", facts, True
        )
    if t == Q.FOOD_DO_DISEASE:
        do, do_total = _list(results, "food_do_diseases")
        recipe, recipe_total = _list(results, "food_recipe_diseases")
        names = list(dict.fromkeys(do + recipe))
        if not names:
            return Part(t, "", (), False)
        facts = _facts(subject, Rel.SHOULD_EAT, [n for n in names[:limit] if n in do], reverse=True) + _facts(
            subject, Rel.RECOMMENDED_RECIPE, [n for n in names[:limit] if n not in do], reverse=True
        )
        return Part(
            t,
            f"{subject}适合以下疾病的患者食用：{join_names(names, max(do_total, recipe_total), limit=limit)}。",
            facts,
            True,
        )
    if t == Q.FOOD_NOT_DISEASE:
        names, total = _list(results, "food_not_diseases")
        if not names:
            return Part(t, "", (), False)
        return Part(
            t,
            f"患有以下疾病时应少吃或不吃{subject}：{join_names(names, total, limit=limit)}。",
            _facts(subject, Rel.SHOULD_NOT_EAT, names[:limit], reverse=True),
            True,
        )
    if t == Q.CHECK_DISEASE:
        names, total = _list(results, "check_diseases")
        if not names:
            return Part(t, "", (), False)
        return Part(
            t,
            f"{subject}可以帮助诊断：{join_names(names, total, limit=limit)}。",
            _facts(subject, Rel.NEEDS_CHECK, names[:limit], reverse=True),
            True,
        )
    if t == Q.SYMPTOM_DISEASE:
        rows = results.get("symptom_diseases") or []
        names = [row["name"] for row in rows if row.get("name")]
        total = int((results.get("symptom_diseases_total") or {}).get("total") or len(names))
        if not names:
            return Part(t, "", (), False)
        return Part(
            t,
            f"出现{subject}，可能与以下疾病有关：{join_names(names, total, limit=limit)}。"
            "仅凭症状无法确定是哪种疾病，请结合医生的检查判断。",
            tuple(Fact(name, Rel.HAS_SYMPTOM, s) for name in names[:limit] for s in subject.split("、") if s),
            True,
        )
    if t == Q.SYMPTOM_DEPARTMENT:
        return _symptom_department(subject, results)
    if t == Q.DISEASE_CAUSE:
        return prop_part(Prop.CAUSE, "{d}的常见病因：{v}")
    if t == Q.DISEASE_PREVENT:
        return prop_part(Prop.PREVENT, "预防{d}：{v}")
    if t == Q.DISEASE_LASTTIME:
        return prop_part(Prop.CURE_LASTTIME, "{d}的治疗周期一般为{v}。")
    if t == Q.DISEASE_CUREPROB:
        return prop_part(Prop.CURED_PROB, "{d}的治愈率：{v}。")
    if t == Q.DISEASE_EASYGET:
        return prop_part(Prop.EASY_GET, "{d}的易感人群：{v}。")
    if t == Q.DISEASE_CUREWAY:
        part = prop_part(Prop.CURE_WAY, "{d}的治疗方式有：{v}。")
        drugs, drugs_total = _list(results, "common_drugs")
        if not part.found:
            return part
        text, facts = part.text, part.facts
        if drugs:
            text += f"常用药物有：{join_names(drugs, drugs_total, limit=5)}。"
            facts += _facts(subject, Rel.COMMON_DRUG, drugs[:5])
        return Part(t, text + "具体方案请遵医嘱。", facts, True)
    if t == Q.DISEASE_DESC:
        part = prop_part(Prop.DESC, "{d}：{v}")
        if part.found:
            return part
        symptoms, total = _list(results, "symptoms")
        if symptoms:
            return Part(
                t,
                f"{subject}是一种疾病，常见症状有：{join_names(symptoms, total, limit=limit)}。",
                _facts(subject, Rel.HAS_SYMPTOM, symptoms[:limit]),
                True,
            )
        return part
    return Part(t, "", (), False)


def _symptom_department(subject: str, results: dict[str, Any], *, departments: int = 4, per_department: int = 3) -> Part:
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
        listed = "、".join(diseases) + ("等" if total > len(diseases) else "")
        reasons.append(f"{row['name']}（{listed}）")
        for disease in diseases:
            facts.extend(Fact(disease, Rel.HAS_SYMPTOM, s) for s in symptoms)
            facts.append(Fact(disease, Rel.BELONGS_TO, row["name"]))
    text = (
        f"{subject}可能由多种疾病引起，挂哪个科要看具体病因。"
        f"知识图谱中有此症状的疾病及其就诊科室：{'；'.join(reasons)}。"
        f"可先到{shown[0]['name']}就诊（有此症状的疾病中，在该科就诊的最多），医生会根据检查判断是否需要转科。"
    )
    return Part(Q.SYMPTOM_DEPARTMENT, text, tuple(dict.fromkeys(facts)), True)


def unknown_text(question_type: str | None, subject: str | None, label: str | None = None) -> str:
    """Return the honest "I don't know" sentence."""
    if subject is None:
        return "抱歉，我没有在问题里找到知识图谱中的疾病、症状、药物、食物或检查名称，暂时无法回答。"
    what = {
        Q.DISEASE_SYMPTOM: "症状",
        Q.DISEASE_CAUSE: "病因",
        Q.DISEASE_ACOMPANY: "并发症",
        Q.DISEASE_DO_FOOD: "饮食建议",
        Q.DISEASE_NOT_FOOD: "饮食禁忌",
        Q.DISEASE_DRUG: "用药",
        Q.DISEASE_CHECK: "检查项目",
        Q.DISEASE_PREVENT: "预防方法",
        Q.DISEASE_LASTTIME: "治疗周期",
        Q.DISEASE_CUREWAY: "治疗方式",
        Q.DISEASE_CUREPROB: "治愈率",
        Q.DISEASE_EASYGET: "易感人群",
        Q.DISEASE_DESC: "简介",
        Q.DISEASE_DEPARTMENT: "就诊科室",
        Q.SYMPTOM_DISEASE: "相关疾病",
        Q.SYMPTOM_DEPARTMENT: "就诊科室",
        Q.DRUG_DISEASE: "适应的疾病",
        Q.FOOD_DO_DISEASE: "适宜的疾病",
        Q.FOOD_NOT_DISEASE: "禁忌的疾病",
        Q.CHECK_DISEASE: "能诊断的疾病",
    }.get(question_type or "", "相关信息")
    kind = LABEL_ZH.get(label or "", "")
    return f"抱歉，知识图谱里暂时没有{kind}“{subject}”的{what}信息。"


def suggestions_for(
    subject: str, available: Sequence[str], *, exclude: Sequence[str] = (), limit: int = 3
) -> list[str]:
    """Return example questions about ``subject`` for the question types that have data."""
    out = []
    for question_type in available:
        if question_type in exclude or question_type not in SUGGEST:
            continue
        text = SUGGEST[question_type].format(subject)
        if text not in out:
            out.append(text)
        if len(out) >= limit:
            break
    return out


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
