"""Every sentence the assistant says around graph facts, in each language of the portal.

The graph is Chinese: disease, symptom, drug and food names and the stored descriptions stay as they
are, whatever the language of the answer. Everything around them (sentence templates, list joiners,
notices, "not understood", the glosses of example questions) comes from :data:`PHRASES`, one table
per language with the same keys, so that a phrase missing in one language is a failing test rather
than Chinese text in the English UI.

The recogniser reads Chinese questions only. An English-speaking doctor in a Chinese hospital still
types the question in Chinese (the patient's and the chart's words are Chinese anyway), so English
answers show example questions in Chinese, each with an English gloss, and say that questions are
understood in Chinese.

Placeholders: ``{d}`` the subject (a graph name), ``{names}`` a joined list of graph names, ``{v}`` a
stored property value, ``{name}`` one graph name, others as named.
"""

from __future__ import annotations

from .classifier import QuestionType as Q
from .schema import LABEL_ZH, Label

ZH = "zh-hans"
EN = "en"
#: The languages answers are composed in; the first is the default.
LANGUAGES: tuple[str, ...] = (ZH, EN)

_ZH = {
    # -- lists -----------------------------------------------------------------------------------
    "list_separator": "、",
    "list_more": "{shown}等（共 {total} 项）",
    "list_and_others": "{names}等",
    # -- answers about a disease ------------------------------------------------------------------
    "disease_symptom": "{d}的常见症状有：{names}。",
    "disease_acompany": "{d}可能引起的并发症有：{names}。",
    "drug_common": "{d}的常用药物有：{names}。",
    "drug_recommended": "推荐药物有：{names}。",
    "drug_listed": "{name}在知识图谱记录的{d}用药之列。",
    "drug_not_listed": "{name}不在知识图谱记录的{d}用药之列。",
    "drug_advice": "具体用哪种药、用多少，请听从医生或药师的指导。",
    "food_named_avoid": "{d}患者不宜吃{name}。",
    "food_named_ok": "{d}患者可以适量吃{name}。",
    "food_avoid": "{d}患者应少吃或不吃：{names}。",
    "food_avoid_short": "应少吃或不吃：{names}。",
    "food_do": "{d}患者宜吃：{names}。",
    "food_do_short": "宜吃：{names}。",
    "food_recipes": "推荐食谱：{names}。",
    "disease_check": "{d}通常需要做的检查有：{names}。",
    "disease_department": "{d}一般到{names}就诊。",
    "disease_cause": "{d}的常见病因：{v}",
    "disease_prevent": "预防{d}：{v}",
    "disease_lasttime": "{d}的治疗周期一般为{v}。",
    "disease_cureprob": "{d}的治愈率：{v}。",
    "disease_easyget": "{d}的易感人群：{v}。",
    "disease_cureway": "{d}的治疗方式有：{v}。",
    "cureway_drugs": "常用药物有：{names}。",
    "cureway_advice": "具体方案请遵医嘱。",
    "disease_desc": "{d}：{v}",
    "disease_desc_symptoms": "{d}是一种疾病，常见症状有：{names}。",
    # -- reverse questions ------------------------------------------------------------------------
    "drug_disease": "{d}常用于治疗：{names}。请在医生或药师指导下使用。",
    "food_do_disease": "{d}适合以下疾病的患者食用：{names}。",
    "food_not_disease": "患有以下疾病时应少吃或不吃{d}：{names}。",
    "check_disease": "{d}可以帮助诊断：{names}。",
    "symptom_disease": "出现{d}，可能与以下疾病有关：{names}。仅凭症状无法确定是哪种疾病，请结合医生的检查判断。",
    # -- symptom → department, with its reasoning -------------------------------------------------
    "symptom_department": (
        "{d}可能由多种疾病引起，挂哪个科要看具体病因。"
        "知识图谱中有此症状的疾病及其就诊科室：{reasons}。"
        "可先到{first}就诊（有此症状的疾病中，在该科就诊的最多），医生会根据检查判断是否需要转科。"
    ),
    "department_reason": "{department}（{diseases}）",
    "reason_separator": "；",
    # -- no answer, not understood ----------------------------------------------------------------
    "unknown_no_entity": "抱歉，我没有在问题里找到知识图谱中的疾病、症状、药物、食物或检查名称，暂时无法回答。",
    "unknown": "抱歉，知识图谱里暂时没有{kind}“{subject}”的{what}信息。",
    "unknown_kind_of_question": "抱歉，知识图谱里暂时没有{kind}“{subject}”的这类信息。",
    "not_understood": (
        "抱歉，我没有理解这个问题。我只能回答知识图谱里的疾病、症状、药物、食物和检查的问题，"
        "请在问题里写出疾病或症状的名称。"
    ),
    "try_asking": "您可以试着问：{examples}",
    "example": "{question}",
    "example_separator": " ",
    "did_you_mean": "您是不是想问：{names}？",
    # -- notices ----------------------------------------------------------------------------------
    "safety_notice": (
        "温馨提示：以上内容来自医学知识图谱，仅供健康科普参考，不能代替医生的诊断和治疗；"
        "用药请遵医嘱，症状持续或加重请及时就医。"
    ),
    "urgent_notice": (
        "⚠️ 您提到“{flags}”，这可能是需要立即处理的急症信号。"
        "请马上拨打 120 或尽快到最近医院的急诊就诊，不要等待网上答复。"
    ),
    "follow_up_gloss": "追问上一个问题里的疾病用什么药",
    "sentence_separator": "",
}

_EN = {
    "list_separator": ", ",
    "list_more": "{shown} and {more} more ({total} in all)",
    "list_and_others": "{names} and others",
    "disease_symptom": "Common symptoms of {d}: {names}.",
    "disease_acompany": "Complications {d} may lead to: {names}.",
    "drug_common": "Medicines commonly used for {d}: {names}.",
    "drug_recommended": "Recommended medicines: {names}.",
    "drug_listed": "{name} is among the medicines the knowledge graph records for {d}.",
    "drug_not_listed": "{name} is not among the medicines the knowledge graph records for {d}.",
    "drug_advice": "Which medicine to take, and how much, is for a doctor or pharmacist to decide.",
    "food_named_avoid": "Patients with {d} should not eat {name}.",
    "food_named_ok": "Patients with {d} may eat {name} in moderation.",
    "food_avoid": "Patients with {d} should eat little or none of: {names}.",
    "food_avoid_short": "Eat little or none of: {names}.",
    "food_do": "Recommended foods for patients with {d}: {names}.",
    "food_do_short": "Recommended: {names}.",
    "food_recipes": "Recommended recipes: {names}.",
    "disease_check": "Examinations usually needed for {d}: {names}.",
    "disease_department": "Patients with {d} are usually seen in: {names}.",
    "disease_cause": "Common causes of {d} (recorded in Chinese): {v}",
    "disease_prevent": "Preventing {d} (recorded in Chinese): {v}",
    "disease_lasttime": "Treatment of {d} usually takes: {v}.",
    "disease_cureprob": "Cure rate of {d}: {v}.",
    "disease_easyget": "People at risk of {d}: {v}.",
    "disease_cureway": "Treatments for {d}: {v}.",
    "cureway_drugs": "Common medicines: {names}.",
    "cureway_advice": "The treatment plan is for the doctor to decide.",
    "disease_desc": "{d} (recorded in Chinese): {v}",
    "disease_desc_symptoms": "{d} is a disease; its common symptoms are: {names}.",
    "drug_disease": "{d} is commonly used to treat: {names}. Use it only as directed by a doctor or pharmacist.",
    "food_do_disease": "{d} suits patients with: {names}.",
    "food_not_disease": "Patients with these diseases should eat little or no {d}: {names}.",
    "check_disease": "{d} helps to diagnose: {names}.",
    "symptom_disease": (
        "{d} may be related to these diseases: {names}. A symptom alone cannot tell which disease it is; "
        "a doctor's examination decides."
    ),
    "symptom_department": (
        "{d} can have many causes, so the department to visit depends on the cause. "
        "Diseases with this symptom in the knowledge graph, by department: {reasons}. "
        "Start with {first} (it sees the most of these diseases); the doctor will refer the patient "
        "elsewhere if the examination calls for it."
    ),
    "department_reason": "{department} ({diseases})",
    "reason_separator": "; ",
    "unknown_no_entity": (
        "Sorry, the question names no disease, symptom, medicine, food or examination that the knowledge "
        "graph knows, so I cannot answer it."
    ),
    "unknown": "Sorry, the knowledge graph holds no {what} for the {kind} “{subject}” yet.",
    "unknown_kind_of_question": "Sorry, the knowledge graph holds no such information for the {kind} “{subject}” yet.",
    "not_understood": (
        "Sorry, I did not understand this question. I answer questions about the diseases, symptoms, "
        "medicines, foods and examinations in the knowledge graph, and I understand questions written "
        "in Chinese only: name the disease or symptom in Chinese, as in the examples."
    ),
    "try_asking": "Questions are understood in Chinese only. You could ask: {examples}",
    "example": "{question} ({gloss})",
    "example_separator": "; ",
    "did_you_mean": "Did you mean: {names}?",
    "safety_notice": (
        "Note: this comes from a medical knowledge graph, for health information only; it does not replace "
        "a doctor's diagnosis or treatment. Take medicines as prescribed, and see a doctor if symptoms "
        "persist or get worse."
    ),
    "urgent_notice": (
        "⚠️ You mentioned “{flags}”: this may be a sign of an emergency that needs care now. Call 120 "
        "(the emergency number in mainland China; elsewhere, your local emergency number) or go to the "
        "emergency department of the nearest hospital at once. Do not wait for an online answer."
    ),
    "follow_up_gloss": "a follow-up: and which medicines for it?",
    "sentence_separator": " ",
}

#: Sentence templates by language, then by key: every language has the same keys.
PHRASES: dict[str, dict[str, str]] = {ZH: _ZH, EN: _EN}

#: What an "I don't know" sentence says is missing, by question type.
MISSING: dict[str, dict[str, str]] = {
    ZH: {
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
        "": "相关",
    },
    EN: {
        Q.DISEASE_SYMPTOM: "symptoms",
        Q.DISEASE_CAUSE: "causes",
        Q.DISEASE_ACOMPANY: "complications",
        Q.DISEASE_DO_FOOD: "dietary advice",
        Q.DISEASE_NOT_FOOD: "foods to avoid",
        Q.DISEASE_DRUG: "medicines",
        Q.DISEASE_CHECK: "examinations",
        Q.DISEASE_PREVENT: "prevention advice",
        Q.DISEASE_LASTTIME: "length of treatment",
        Q.DISEASE_CUREWAY: "treatments",
        Q.DISEASE_CUREPROB: "cure rate",
        Q.DISEASE_EASYGET: "people at risk",
        Q.DISEASE_DESC: "description",
        Q.DISEASE_DEPARTMENT: "department to visit",
        Q.SYMPTOM_DISEASE: "related diseases",
        Q.SYMPTOM_DEPARTMENT: "department to visit",
        Q.DRUG_DISEASE: "diseases it treats",
        Q.FOOD_DO_DISEASE: "diseases it suits",
        Q.FOOD_NOT_DISEASE: "diseases that should avoid it",
        Q.CHECK_DISEASE: "diseases it helps to diagnose",
        "": "information",
    },
}

#: The kind of an entity as said inside a sentence ("the disease “感冒”").
KINDS: dict[str, dict[str, str]] = {
    ZH: {**LABEL_ZH, "": ""},
    EN: {
        Label.DISEASE: "disease",
        Label.SYMPTOM: "symptom",
        Label.DRUG: "medicine",
        Label.DRUG_PRODUCT: "drug product",
        Label.FOOD: "food",
        Label.CHECK: "examination",
        Label.DEPARTMENT: "department",
        Label.PRODUCER: "producer",
        Label.TERM: "term",
        "": "entry",
    },
}

#: The askable Chinese form of a suggested question, by question type (the recogniser's language).
QUESTION_FORMS: dict[str, str] = {
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

#: What a suggested question asks, in the answer's language (shown beside the Chinese question).
GLOSSES: dict[str, dict[str, str]] = {
    ZH: {
        Q.DISEASE_SYMPTOM: "{}的症状",
        Q.DISEASE_CAUSE: "{}的病因",
        Q.DISEASE_ACOMPANY: "{}的并发症",
        Q.DISEASE_DO_FOOD: "{}宜吃的食物",
        Q.DISEASE_NOT_FOOD: "{}忌吃的食物",
        Q.DISEASE_DRUG: "{}的用药",
        Q.DISEASE_CHECK: "{}的检查",
        Q.DISEASE_PREVENT: "{}的预防",
        Q.DISEASE_CUREWAY: "{}的治疗",
        Q.DISEASE_DEPARTMENT: "{}的就诊科室",
        Q.DISEASE_DESC: "{}的简介",
        Q.SYMPTOM_DISEASE: "{}可能是什么病",
        Q.SYMPTOM_DEPARTMENT: "{}挂哪个科",
        Q.DRUG_DISEASE: "{}能治的病",
        Q.FOOD_DO_DISEASE: "{}适合的病人",
        Q.FOOD_NOT_DISEASE: "忌吃{}的疾病",
        Q.CHECK_DISEASE: "{}能查出的病",
    },
    EN: {
        Q.DISEASE_SYMPTOM: "what are the symptoms of {}?",
        Q.DISEASE_CAUSE: "what causes {}?",
        Q.DISEASE_ACOMPANY: "what complications does {} have?",
        Q.DISEASE_DO_FOOD: "what should a patient with {} eat?",
        Q.DISEASE_NOT_FOOD: "what should a patient with {} not eat?",
        Q.DISEASE_DRUG: "which medicines treat {}?",
        Q.DISEASE_CHECK: "which examinations does {} need?",
        Q.DISEASE_PREVENT: "how is {} prevented?",
        Q.DISEASE_CUREWAY: "how is {} treated?",
        Q.DISEASE_DEPARTMENT: "which department sees {}?",
        Q.DISEASE_DESC: "what is {}?",
        Q.SYMPTOM_DISEASE: "which diseases cause {}?",
        Q.SYMPTOM_DEPARTMENT: "which department for {}?",
        Q.DRUG_DISEASE: "what does {} treat?",
        Q.FOOD_DO_DISEASE: "which patients is {} good for?",
        Q.FOOD_NOT_DISEASE: "which diseases should avoid {}?",
        Q.CHECK_DISEASE: "what can {} diagnose?",
    },
}

#: Example questions (type, subject) that the starter graph answers; shown when nothing was understood.
EXAMPLE_QUESTIONS: tuple[tuple[str, str], ...] = (
    (Q.DISEASE_DRUG, "感冒"),
    (Q.DISEASE_ACOMPANY, "糖尿病"),
    (Q.SYMPTOM_DISEASE, "头痛"),
    (Q.DISEASE_CHECK, "高血压"),
)
#: The follow-up example of the QA page: a question about the previous turn's entity.
FOLLOW_UP_EXAMPLE = "那它吃什么药？"


def language_of(code: str | None) -> str:
    """Return the answer language for a language code ("en-us" → "en"; unknown → the default).

    Parameters
    ----------
    code : str or None
        A language code as Django's ``get_language()`` returns it (``"zh-hans"``, ``"en"``,
        ``"en-gb"``), or None.

    Returns
    -------
    str
        One of :data:`LANGUAGES`.
    """
    base = (code or "").strip().lower().replace("_", "-")
    if base == EN or base.startswith(EN + "-"):
        return EN
    return ZH


def phrase(key: str, language: str = ZH, **values: object) -> str:
    """Return the phrase ``key`` in ``language`` with ``values`` filled in.

    Raises
    ------
    KeyError
        When no language has the key (a programming error, caught by the tests).
    """
    return PHRASES[language_of(language)][key].format(**values)


def suggestion(question_type: str, subject: str, language: str = ZH) -> tuple[str, str]:
    """Return (the Chinese question to ask, its gloss in ``language``) for a question type about ``subject``.

    Raises
    ------
    KeyError
        When ``question_type`` has no suggested form (see :data:`QUESTION_FORMS`).
    """
    return QUESTION_FORMS[question_type].format(subject), GLOSSES[language_of(language)][question_type].format(subject)


def examples(language: str = ZH, *, follow_up: bool = False) -> list[tuple[str, str]]:
    """Return the example questions as (Chinese question, gloss in ``language``) pairs.

    With ``follow_up`` the list ends with a follow-up about the previous turn ("那它吃什么药？").
    """
    out = [suggestion(question_type, subject, language) for question_type, subject in EXAMPLE_QUESTIONS]
    if follow_up:
        out.append((FOLLOW_UP_EXAMPLE, phrase("follow_up_gloss", language)))
    return out
