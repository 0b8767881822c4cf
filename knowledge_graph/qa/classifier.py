"""Classify a question into question types from its question words and the types of its entities.

The 18 question types are those of QASystemOnMedicalKG (liuhuanyong,
https://github.com/liuhuanyong/QASystemOnMedicalKG, ``question_classifier.py``), plus
``disease_department`` (which department treats a disease) and ``symptom_department`` (which
department to see for a symptom, answered through the diseases that have it). As there, a question word alone is not
enough: "吃什么" asks for foods of a disease but for the diseases a food helps when the entity is a
food. Unlike there, the question words are found with a longest-match automaton, so a compound such
as 吃什么药 counts as one drug question word rather than as both a food and a drug word, and a few
precedence rules (below) settle questions that carry several cues. Our keyword lists are our own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import ahocorasick

from .recognizer import Mention
from .schema import Label


class QuestionType(StrEnum):
    DISEASE_SYMPTOM = "disease_symptom"
    SYMPTOM_DISEASE = "symptom_disease"
    DISEASE_CAUSE = "disease_cause"
    DISEASE_ACOMPANY = "disease_acompany"
    DISEASE_NOT_FOOD = "disease_not_food"
    DISEASE_DO_FOOD = "disease_do_food"
    FOOD_NOT_DISEASE = "food_not_disease"
    FOOD_DO_DISEASE = "food_do_disease"
    DISEASE_DRUG = "disease_drug"
    DRUG_DISEASE = "drug_disease"
    DISEASE_CHECK = "disease_check"
    CHECK_DISEASE = "check_disease"
    DISEASE_PREVENT = "disease_prevent"
    DISEASE_LASTTIME = "disease_lasttime"
    DISEASE_CUREWAY = "disease_cureway"
    DISEASE_CUREPROB = "disease_cureprob"
    DISEASE_EASYGET = "disease_easyget"
    DISEASE_DESC = "disease_desc"
    DISEASE_DEPARTMENT = "disease_department"
    SYMPTOM_DEPARTMENT = "symptom_department"


QUESTION_TYPE_ZH: dict[str, str] = {
    QuestionType.DISEASE_SYMPTOM: "疾病的症状",
    QuestionType.SYMPTOM_DISEASE: "症状对应的疾病",
    QuestionType.DISEASE_CAUSE: "病因",
    QuestionType.DISEASE_ACOMPANY: "并发症",
    QuestionType.DISEASE_NOT_FOOD: "忌吃食物",
    QuestionType.DISEASE_DO_FOOD: "宜吃食物",
    QuestionType.FOOD_NOT_DISEASE: "哪些病忌吃该食物",
    QuestionType.FOOD_DO_DISEASE: "该食物适合哪些病",
    QuestionType.DISEASE_DRUG: "用药",
    QuestionType.DRUG_DISEASE: "药物能治的病",
    QuestionType.DISEASE_CHECK: "需要的检查",
    QuestionType.CHECK_DISEASE: "检查能查出的病",
    QuestionType.DISEASE_PREVENT: "预防",
    QuestionType.DISEASE_LASTTIME: "治疗周期",
    QuestionType.DISEASE_CUREWAY: "治疗方式",
    QuestionType.DISEASE_CUREPROB: "治愈率",
    QuestionType.DISEASE_EASYGET: "易感人群",
    QuestionType.DISEASE_DESC: "疾病简介",
    QuestionType.DISEASE_DEPARTMENT: "就诊科室",
    QuestionType.SYMPTOM_DEPARTMENT: "症状挂什么科",
}

#: Question type → the label of the entity it is about.
SUBJECT_LABEL: dict[str, str] = {
    **{t: Label.DISEASE for t in QuestionType if t.startswith("disease_")},
    QuestionType.SYMPTOM_DISEASE: Label.SYMPTOM,
    QuestionType.SYMPTOM_DEPARTMENT: Label.SYMPTOM,
    QuestionType.FOOD_NOT_DISEASE: Label.FOOD,
    QuestionType.FOOD_DO_DISEASE: Label.FOOD,
    QuestionType.DRUG_DISEASE: Label.DRUG,
    QuestionType.CHECK_DISEASE: Label.CHECK,
}

# Cue → question words. A cue is what the words ask for; the entity type decides the question type.
CUES: dict[str, tuple[str, ...]] = {
    "symptom": (
        "症状",
        "表现",
        "症候",
        "征兆",
        "迹象",
        "现象",
        "体征",
        "什么感觉",
        "有啥反应",
        "什么反应",
        "哪些反应",
        "会怎么样",
        "有什么不舒服",
        "啥症状",
        "表现为",
        "特征",
        "会不会头",
    ),
    "disease": (
        "是什么病",
        "是啥病",
        "是什么疾病",
        "是哪种病",
        "什么病",
        "哪些病",
        "啥病",
        "什么疾病",
        "哪些疾病",
        "哪种病",
        "哪类病",
        "什么毛病",
        "啥毛病",
        "得了什么",
        "患了什么",
        "是不是得了",
        "怎么了",
        "可能是",
        "是病吗",
        "是什么问题",
        "啥问题",
    ),
    "cause": (
        "什么原因引起的",
        "原因",
        "病因",
        "为什么",
        "为何",
        "为啥",
        "怎么会",
        "怎么得的",
        "咋得的",
        "怎么引起",
        "引起的",
        "导致",
        "诱因",
        "成因",
        "因为什么",
        "由什么",
        "咋会",
        "怎么来的",
        "怎么患上",
        "起因",
        "缘故",
        "发病机制",
    ),
    "acompany": (
        "并发症",
        "并发",
        "伴随",
        "伴发",
        "合并症",
        "同时出现",
        "引发什么",
        "引起什么",
        "继发",
        "后遗症",
        "会引起哪些",
        "会导致什么",
        "导致哪些",
        "带来什么危害",
        "有什么危害",
        "危害",
    ),
    "food": (
        "吃什么",
        "吃啥",
        "吃哪些",
        "饮食",
        "食物",
        "食品",
        "吃的",
        "菜",
        "食谱",
        "菜谱",
        "补品",
        "水果",
        "营养",
        "喝什么",
        "喝啥",
        "吃",
        "喝",
        "膳食",
        "食疗",
        "忌口",
    ),
    "deny": (
        "不能吃",
        "不能喝",
        "不可以吃",
        "不宜",
        "忌",
        "禁忌",
        "避免吃",
        "不要吃",
        "别吃",
        "少吃",
        "不该吃",
        "不适合吃",
        "不能碰",
        "不应该吃",
        "要忌",
        "戒",
    ),
    "drug": (
        "药",
        "吃什么药",
        "用什么药",
        "用药",
        "药物",
        "药品",
        "服什么",
        "胶囊",
        "片剂",
        "口服液",
        "冲剂",
        "药方",
        "打什么针",
        "输什么液",
        "西药",
        "中药",
        "中成药",
    ),
    "cure": (
        "治什么",
        "治疗什么",
        "治啥",
        "主治",
        "能治",
        "可以治",
        "用来",
        "有什么用",
        "有啥用",
        "什么作用",
        "功效",
        "作用",
        "用途",
        "治哪些",
        "适应症",
        "管什么",
        "对什么病",
        "对哪些病",
        "用于",
        "好处",
        "适合什么",
        "适合哪些",
        "有益",
        "有帮助",
    ),
    "prevent": (
        "预防",
        "防止",
        "防范",
        "怎样才能不",
        "如何才能不",
        "怎么才能不",
        "怎么才不会",
        "怎样才不会",
        "如何避免",
        "怎么避免",
        "怎样避免",
        "避免得",
        "不得",
        "远离",
        "杜绝",
        "防护",
    ),
    "lasttime": (
        "多久",
        "多长时间",
        "几天",
        "几年",
        "几个月",
        "多少天",
        "多少年",
        "多长",
        "周期",
        "疗程",
        "多少时间",
        "什么时候能好",
        "多快",
        "多久能好",
        "持续",
    ),
    "cureway": (
        "怎么治",
        "如何治",
        "怎样治",
        "咋治",
        "治疗方法",
        "治疗方式",
        "疗法",
        "怎么办",
        "怎么医",
        "如何医",
        "怎样医",
        "治疗",
        "医治",
        "处理",
        "咋办",
        "怎么调理",
        "如何调理",
        "调理",
        "怎么缓解",
        "如何缓解",
        "缓解",
        "怎么弄",
        "治法",
        "手术",
    ),
    "cureprob": (
        "能治好",
        "能治愈",
        "能不能治好",
        "可以治好",
        "能根治",
        "可以根治",
        "能不能治愈",
        "可以治愈",
        "治好",
        "治愈",
        "能好",
        "好得了",
        "能不能好",
        "可以好",
        "几率",
        "概率",
        "把握",
        "希望",
        "根治",
        "治得好",
        "痊愈",
        "治愈率",
        "能恢复",
        "会好吗",
        "好治",
        "难治",
    ),
    "easyget": (
        "易感",
        "容易感染",
        "什么人",
        "哪些人",
        "谁容易",
        "易发",
        "好发",
        "高发",
        "人群",
        "多发",
        "容易得",
        "容易患",
        "易患",
        "哪类人",
        "什么样的人",
        "会得",
        "易得",
    ),
    "check": (
        "检查",
        "检测",
        "化验",
        "查什么",
        "查啥",
        "查出",
        "诊断",
        "测什么",
        "做什么检",
        "确诊",
        "筛查",
        "怎么查",
        "如何查",
        "查血",
        "拍片",
        "需要查",
        "要查",
        "拍什么片",
        "做什么检查",
        "拍片子",
    ),
    "department": (
        "科室",
        "挂什么科",
        "挂哪个科",
        "挂号",
        "看什么科",
        "哪个科",
        "什么科",
        "哪科",
        "挂什么",
        "就诊",
        "看哪个科",
        "去哪看",
        "去哪里看",
        "哪个医院",
    ),
    "desc": (
        "是什么",
        "什么是",
        "介绍",
        "是啥",
        "啥是",
        "了解",
        "含义",
        "定义",
        "怎么回事",
        "是怎样的",
        "科普",
        "简介",
        "说说",
        "讲讲",
    ),
}

#: "cure" words that, said of a disease, ask whether it can be cured ("糖尿病能治吗").
CURE_ASK_WORDS = frozenset({"能治", "可以治"})

#: Drug question words that ask which drug (a bare 药 next to 多久 asks how long to take it).
DRUG_CHOICE_WORDS = frozenset({"吃什么药", "用什么药", "药物", "药品", "用药", "西药", "中药", "中成药", "药方"})

#: Words that show a question type even without a stated entity (used with the dialogue context).
PRONOUNS = ("它", "这个病", "这种病", "该病", "这病", "这个药", "这种药", "那个病", "这个", "那")

_DISEASE_CUE_TO_TYPE: dict[str, QuestionType] = {
    "symptom": QuestionType.DISEASE_SYMPTOM,
    "cause": QuestionType.DISEASE_CAUSE,
    "acompany": QuestionType.DISEASE_ACOMPANY,
    "food": QuestionType.DISEASE_DO_FOOD,
    "drug": QuestionType.DISEASE_DRUG,
    "prevent": QuestionType.DISEASE_PREVENT,
    "lasttime": QuestionType.DISEASE_LASTTIME,
    "cureway": QuestionType.DISEASE_CUREWAY,
    "cureprob": QuestionType.DISEASE_CUREPROB,
    "easyget": QuestionType.DISEASE_EASYGET,
    "check": QuestionType.DISEASE_CHECK,
    "department": QuestionType.DISEASE_DEPARTMENT,
    "desc": QuestionType.DISEASE_DESC,
    "disease": QuestionType.DISEASE_DESC,
    "cure": QuestionType.DISEASE_CUREPROB,  # "糖尿病能治吗" asks whether it can be cured
}


@dataclass(frozen=True)
class Cue:
    """A question word found in the question."""

    kind: str
    word: str
    start: int
    end: int


@dataclass(frozen=True)
class Classification:
    """The question types (first = main) and, for each, the subject entities as (name, label)."""

    question_types: tuple[str, ...]
    subjects: dict[str, tuple[tuple[str, str], ...]]
    others: tuple[tuple[str, str], ...]  # further entities named (a food in "糖尿病能吃西瓜吗")
    cues: tuple[Cue, ...]


class QuestionClassifier:
    """Rule-based question classifier (see the module docstring)."""

    def __init__(self, cues: dict[str, Sequence[str]] | None = None, *, degree=None):
        # degree(name, label) -> int breaks ties when one word names both a disease and a symptom.
        self.degree = degree or (lambda name, label: 0)
        self.cues = {kind: tuple(words) for kind, words in (cues or CUES).items()}
        self._automaton = ahocorasick.Automaton()
        by_word: dict[str, str] = {}
        for kind, words in self.cues.items():
            for word in words:
                by_word.setdefault(word, kind)
        for word, kind in by_word.items():
            self._automaton.add_word(word, (word, kind))
        self._automaton.make_automaton()

    def words(self) -> set[str]:
        """Return every question word (never taken as an entity name)."""
        return {w for words in self.cues.values() for w in words}

    def find_cues(self, text: str, *, blocked: Sequence[tuple[int, int]] = ()) -> list[Cue]:
        """Return the question words of ``text``: longest first, no overlaps, outside ``blocked`` spans."""
        found = []
        for end_index, (word, kind) in self._automaton.iter(text):
            start = end_index - len(word) + 1
            found.append((start, end_index + 1, word, kind))
        found.sort(key=lambda f: (-(f[1] - f[0]), f[0]))
        taken = [False] * len(text)
        for start, end in blocked:
            for i in range(start, end):
                taken[i] = True
        cues = []
        for start, end, word, kind in found:
            if any(taken[start:end]):
                continue
            for i in range(start, end):
                taken[i] = True
            cues.append(Cue(kind, word, start, end))
        cues.sort(key=lambda c: c.start)
        return cues

    def classify(
        self,
        text: str,
        mentions: Sequence[Mention],
        *,
        previous_types: Sequence[str] = (),
        cues: Sequence[Cue] | None = None,
    ) -> Classification:
        """Return the question types of ``text`` given its entity mentions.

        Parameters
        ----------
        text : str
            The normalised question.
        mentions : sequence of Mention
            Recognised entities (from the question, or carried over from the previous turn).
        previous_types : sequence of str
            The previous turn's question types, reused when this question has no question word
            ("那高血压呢？").
        cues : sequence of Cue, optional
            Question words already found (found here when omitted).
        """
        if cues is None:
            cues = self.find_cues(text, blocked=[(m.start, m.end) for m in mentions if m.end <= len(text)])
        kinds = [c.kind if c.kind != "cure" or c.word in CURE_ASK_WORDS else "cure_other" for c in cues]
        kind_set = set(kinds) | {c.kind for c in cues}
        if any(word in text for word in self.cues.get("deny", ())):
            kind_set.add("deny")  # 少吃, 忌 … modify a food question wherever they stand
        labels = set().union(*(m.labels() for m in mentions)) if mentions else set()

        def entities(label: str) -> tuple[tuple[str, str], ...]:
            out = []
            for mention in mentions:
                candidate = mention.pick(label)
                if candidate is not None and (candidate.name, label) not in out:
                    out.append((candidate.name, label))
            return tuple(out)

        types: list[str] = []
        subject_label = self._subject_label(kind_set, labels, mentions)
        if subject_label == Label.DISEASE:
            # A drug named apart from the disease ("感冒能吃布洛芬吗") makes "吃" a drug question.
            drug_named = any(Label.DRUG in m.labels() and Label.DISEASE not in m.labels() for m in mentions)
            words = {c.word for c in cues}
            types = self._disease_types(
                ["drug" if k == "food" and drug_named else k for k in kinds],
                kind_set | ({"drug"} if drug_named and "food" in kind_set else set()),
                words,
            )
            if not types and previous_types:
                types = [t for t in previous_types if SUBJECT_LABEL.get(t) == Label.DISEASE]
            if not types:
                types = [QuestionType.DISEASE_DESC]
        elif subject_label == Label.SYMPTOM:
            # "头疼挂什么科" asks for a department: answered through the diseases the symptom points to.
            if "department" in kind_set:
                types = [QuestionType.SYMPTOM_DEPARTMENT]
                if "disease" in kind_set:
                    types.insert(0, QuestionType.SYMPTOM_DISEASE)
            else:
                types = [QuestionType.SYMPTOM_DISEASE]
        elif subject_label == Label.DRUG:
            types = [QuestionType.DRUG_DISEASE]
        elif subject_label == Label.FOOD:
            deny = "deny" in kind_set
            types = [QuestionType.FOOD_NOT_DISEASE if deny else QuestionType.FOOD_DO_DISEASE]
        elif subject_label == Label.CHECK:
            types = [QuestionType.CHECK_DISEASE]

        subjects = {t: entities(SUBJECT_LABEL[t]) for t in types}
        used = {e for ents in subjects.values() for e in ents}
        others_list = []
        for mention in mentions:
            if any((c.name, c.label) in used for c in mention.candidates):
                continue  # the other readings of a subject's words are not further entities
            first = mention.candidates[0]
            if first.label != subject_label and (first.name, first.label) not in others_list:
                others_list.append((first.name, first.label))
        others = tuple(others_list)
        return Classification(tuple(types), subjects, others, tuple(cues))

    def _subject_label(self, kinds: set[str], labels: set[str], mentions: Sequence[Mention] = ()) -> str | None:
        """Choose which kind of entity the question is about."""
        if not labels:
            return None
        disease_cues = {
            "symptom",
            "cause",
            "acompany",
            "prevent",
            "lasttime",
            "cureway",
            "cureprob",
            "easyget",
            "department",
        }
        if Label.DISEASE in labels:
            if Label.SYMPTOM in labels and "disease" in kinds and not kinds & disease_cues:
                return Label.SYMPTOM  # "头痛是什么病" when 头痛 is both a disease and a symptom
            if Label.DRUG in labels and "cure" in kinds and not kinds & (disease_cues | {"drug"}):
                return Label.DRUG
            if Label.FOOD in labels and "cure" in kinds and not kinds & disease_cues:
                return Label.FOOD
            if Label.CHECK in labels and "disease" in kinds and not kinds & disease_cues:
                return Label.CHECK
            return Label.DISEASE
        for label in (Label.SYMPTOM, Label.DRUG, Label.FOOD, Label.CHECK):
            if label in labels:
                return label
        return None

    def _disease_types(self, kinds: list[str], kind_set: set[str], words: set[str] = frozenset()) -> list[str]:
        ordered: list[str] = []
        for kind in kinds:
            if kind == "deny":
                kind = "food"
            question_type = _DISEASE_CUE_TO_TYPE.get(kind)
            if question_type is not None and question_type not in ordered:
                ordered.append(question_type)
        if "deny" in kind_set and QuestionType.DISEASE_DO_FOOD in ordered:
            ordered[ordered.index(QuestionType.DISEASE_DO_FOOD)] = QuestionType.DISEASE_NOT_FOOD
        drop: set[str] = set()
        if QuestionType.DISEASE_DRUG in ordered:
            drop |= {QuestionType.DISEASE_DO_FOOD, QuestionType.DISEASE_NOT_FOOD, QuestionType.DISEASE_CUREWAY}
        if QuestionType.DISEASE_LASTTIME in ordered or QuestionType.DISEASE_CUREPROB in ordered:
            drop.add(QuestionType.DISEASE_CUREWAY)
        if QuestionType.DISEASE_LASTTIME in ordered:
            drop.add(QuestionType.DISEASE_CUREPROB)  # "多久能好" asks how long
        if QuestionType.DISEASE_LASTTIME in ordered and not (words & DRUG_CHOICE_WORDS):
            drop.add(QuestionType.DISEASE_DRUG)  # "要吃多久的药" asks how long, not which drug
        if QuestionType.DISEASE_PREVENT in ordered:
            drop.add(QuestionType.DISEASE_NOT_FOOD)
        if QuestionType.DISEASE_CHECK in ordered and QuestionType.DISEASE_CUREWAY in ordered:
            drop.add(QuestionType.DISEASE_CUREWAY)
        if QuestionType.DISEASE_ACOMPANY in ordered:
            drop.add(QuestionType.DISEASE_CAUSE)  # "会引起什么" names what follows, not what causes
        if QuestionType.DISEASE_EASYGET in ordered and QuestionType.DISEASE_CAUSE in ordered:
            drop.add(QuestionType.DISEASE_EASYGET)
        ordered = [t for t in ordered if t not in drop]
        if len(ordered) > 1 and QuestionType.DISEASE_DESC in ordered:
            ordered.remove(QuestionType.DISEASE_DESC)
        return ordered
