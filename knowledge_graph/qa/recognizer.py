"""Find the entities a question names: an Aho–Corasick automaton, synonyms, edit distance, jieba.

- Exact names and synonyms: one Aho–Corasick automaton (A. V. Aho & M. J. Corasick, "Efficient
  string matching: an aid to bibliographic search", CACM 18(6), 1975; ``pyahocorasick``) over every
  entity name and alias. All matches are collected, then chosen longest first (ties: leftmost) so
  that ``慢性支气管炎`` wins over ``支气管炎`` inside it, and a chosen match excludes the ones that
  overlap it.
- Near misses: when nothing matched exactly, the parts of the question outside the question words
  are searched with :class:`~.fuzzy.NearMissIndex` (edit distance 1, names of three or more
  characters), skipping substrings that jieba knows as ordinary words.
- jieba (``jieba.Tokenizer`` with a user dictionary generated from the graph's names, so each name
  stays one token) segments the question for the command line's token output and tells ordinary
  words from possible misspellings.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import ahocorasick

from .fuzzy import NearMissIndex
from .schema import ENTITY_LABELS, Label

EXACT = "exact"
SYNONYM = "synonym"
EDIT_DISTANCE = "edit_distance"
CONTEXT = "context"

#: An exactly named node yields to an alias target of the same label with this many times its relations.
BARE_RATIO = 3
#: jieba frequency above which a substring is an ordinary word, not a misspelt name.
_COMMON_WORD_FREQ = 50
#: jieba frequency above which a thinly connected entity name is taken for an everyday word.
_COMMON_NAME_FREQ = 300
_COMMON_NAME_MIN_DEGREE = 2
#: jieba part-of-speech tags of the user dictionary (jieba accepts only lower-case letters there).
_JIEBA_TAGS = {
    Label.DISEASE: "nzdisease",
    Label.SYMPTOM: "nzsymptom",
    Label.DRUG: "nzdrug",
    Label.FOOD: "nzfood",
    Label.CHECK: "nzcheck",
    Label.DEPARTMENT: "nzdepartment",
    Label.DRUG_PRODUCT: "nzproduct",
    Label.PRODUCER: "nzproducer",
}


_BASE_TOKENIZER = None


def _base_tokenizer():
    global _BASE_TOKENIZER
    if _BASE_TOKENIZER is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        _BASE_TOKENIZER = tokenizer
    return _BASE_TOKENIZER


def _has_latin(text: str) -> bool:
    return any("a" <= ch.lower() <= "z" for ch in text)


def _latin_bounded(text: str, start: int, end: int) -> bool:
    """Return False when a match starting or ending with a Latin letter sits inside a Latin word."""

    def latin(ch: str) -> bool:
        return "a" <= ch.lower() <= "z"

    if latin(text[start]) and start > 0 and latin(text[start - 1]):
        return False
    if latin(text[end - 1]) and end < len(text) and latin(text[end]):
        return False
    return True


def base_word_frequencies() -> dict[str, int]:
    """Return jieba's main dictionary (word → frequency), loaded once per process."""
    return _base_tokenizer().FREQ


@dataclass(frozen=True)
class Candidate:
    """One entity a mention may refer to."""

    name: str
    label: str
    via: str  # exact | synonym | edit_distance | context


@dataclass(frozen=True)
class Mention:
    """A span of the question that names one or more entities (one name can carry several labels)."""

    text: str
    start: int
    end: int
    candidates: tuple[Candidate, ...]

    def labels(self) -> set[str]:
        return {c.label for c in self.candidates}

    def pick(self, label: str) -> Candidate | None:
        for candidate in self.candidates:
            if candidate.label == label:
                return candidate
        return None


@dataclass
class Vocabulary:
    """Entity names by label, their aliases, and how well connected each name is."""

    names: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))  # label → name → degree
    aliases: dict[str, set[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(set)
    )  # alias → {(name, label)}

    def add_name(self, label: str, name: str, degree: int = 0) -> None:
        if name:
            self.names[str(label)][name] = max(int(degree or 0), self.names[str(label)].get(name, 0))

    def add_alias(self, alias: str, name: str, label: str | None = None) -> bool:
        """Add ``alias`` for ``name``; without ``label``, for every label that has ``name``.

        Returns False when no entity called ``name`` exists (the alias is then ignored).
        """
        if not alias or alias == name:
            return False
        labels = [str(label)] if label else [lab for lab, names in self.names.items() if name in names]
        labels = [lab for lab in labels if name in self.names.get(lab, {})]
        for lab in labels:
            self.aliases[alias].add((name, lab))
        return bool(labels)

    def labels_of(self, name: str) -> list[str]:
        return [str(lab) for lab in ENTITY_LABELS if name in self.names.get(str(lab), {})]

    def degree(self, name: str, label: str) -> int:
        return self.names.get(label, {}).get(name, 0)

    def size(self) -> int:
        return sum(len(v) for v in self.names.values())


class EntityRecognizer:
    """Recognise entity mentions in a question (see the module docstring).

    Parameters
    ----------
    vocabulary : Vocabulary
        Names and aliases to recognise.
    stop_surfaces : iterable of str
        Strings never taken as entity names (question words such as 症状 or 治疗 that some
        sources also list as entities).
    fuzzy : bool
        Build the edit-distance index (near-miss correction).
    """

    def __init__(self, vocabulary: Vocabulary, *, stop_surfaces: Iterable[str] = (), fuzzy: bool = True):
        self.vocabulary = vocabulary
        self.stop_surfaces = set(stop_surfaces)
        self._tokenizer = None
        common = base_word_frequencies()
        surfaces: dict[str, list[Candidate]] = defaultdict(list)
        for label in ENTITY_LABELS:
            for name, degree in vocabulary.names.get(str(label), {}).items():
                # Large graphs hold thinly connected nodes named by everyday words (形成, 严重):
                # such a name is only recognised when the graph connects it to something.
                if common.get(name, 0) >= _COMMON_NAME_FREQ and degree < _COMMON_NAME_MIN_DEGREE:
                    continue
                if self._usable(name, str(label)):
                    surfaces[name].append(Candidate(name, str(label), EXACT))
        for alias, targets in vocabulary.aliases.items():
            if not self._usable(alias):
                continue
            # An alias that is also a name keeps both readings ("失眠" the symptom, "失眠症" the
            # disease): the question words decide which one is asked about.
            taken = {(c.name, c.label) for c in surfaces[alias]}
            surfaces[alias].extend(
                Candidate(name, label, SYNONYM) for name, label in sorted(targets) if (name, label) not in taken
            )
        self._automaton = ahocorasick.Automaton()
        for surface, candidates in surfaces.items():
            self._automaton.add_word(surface, (surface, tuple(self._ordered(candidates))))
        if surfaces:
            self._automaton.make_automaton()
        self._surfaces = surfaces
        self._near = NearMissIndex(surfaces) if fuzzy else None

    def _usable(self, surface: str, label: str | None = None) -> bool:
        # One-character names are only taken for foods (梨, 酒): elsewhere they are mostly
        # fragments of longer words.
        shortest = 1 if label == Label.FOOD else 2
        return len(surface) >= shortest and surface not in self.stop_surfaces and not surface.isdigit()

    def _ordered(self, candidates: list[Candidate]) -> list[Candidate]:
        """Order candidates by label, then exact names first unless the named node is bare.

        A thinly connected node (such as a complication named only in other diseases' lists) yields
        to an entity of the same label with :data:`BARE_RATIO` times more relations that has the
        word as an alias ("贫血" → 缺铁性贫血).
        """
        order = {str(label): i for i, label in enumerate(ENTITY_LABELS)}

        best_alias: dict[str, int] = {}
        for c in candidates:
            if c.via != EXACT:
                best_alias[c.label] = max(best_alias.get(c.label, 0), self.vocabulary.degree(c.name, c.label))

        def rank(c: Candidate):
            degree = self.vocabulary.degree(c.name, c.label)
            preferred = c.via == EXACT and degree * BARE_RATIO >= best_alias.get(c.label, 0)
            return (order.get(c.label, 99), not preferred, -degree, c.name)

        return sorted(candidates, key=rank)

    # -- exact ----------------------------------------------------------------------------

    def exact(self, text: str) -> list[Mention]:
        """Return the longest non-overlapping name and synonym matches, in text order.

        Parameters
        ----------
        text : str
            The normalised question.
        """
        if not self._surfaces:
            return []
        found = []
        for end_index, (surface, candidates) in self._automaton.iter(text):
            start = end_index - len(surface) + 1
            found.append((start, end_index + 1, surface, candidates))
        found.sort(key=lambda m: (-(m[1] - m[0]), m[0]))
        taken = [False] * len(text)
        chosen = []
        for start, end, surface, candidates in found:
            if any(taken[start:end]) or not _latin_bounded(text, start, end):
                continue
            for i in range(start, end):
                taken[i] = True
            chosen.append(Mention(surface, start, end, candidates))
        chosen.sort(key=lambda m: m.start)
        return chosen

    # -- near misses ----------------------------------------------------------------------

    def near_misses(
        self, text: str, *, blocked: Iterable[tuple[int, int]] = (), exact: Iterable[Mention] = ()
    ) -> list[Mention]:
        """Return mentions found by edit distance 1 in the parts of ``text`` outside ``blocked`` spans.

        Parameters
        ----------
        text : str
            The normalised question.
        blocked : iterable of (start, end)
            Spans not to search (question words).
        exact : iterable of Mention
            Exact matches already found. With any, a near miss is kept only when it covers one of
            them and is at least two characters longer ("甲状腺功能亢进挣" over the exact
            "甲状腺功能"), so that ordinary words next to a correct name are never "corrected".
        """
        exact = list(exact)
        if self._near is None or not len(self._near):
            return []
        mask = [ch.isalnum() for ch in text]
        for start, end in blocked:
            for i in range(start, end):
                mask[i] = False
        regions, start = [], None
        for i, ok in enumerate([*mask, False]):
            if ok and start is None:
                start = i
            elif not ok and start is not None:
                regions.append((start, i))
                start = None
        hits = []
        for region_start, region_end in regions:
            for length in range(min(12, region_end - region_start), 1, -1):
                for i in range(region_start, region_end - length + 1):
                    piece = text[i : i + length]
                    if _has_latin(piece) or self._ordinary_word(piece):
                        continue  # edit distance on Latin letters turns any English word into an acronym
                    for surface, distance in self._near.near(piece):
                        if distance == 0:
                            continue
                        candidates = tuple(Candidate(c.name, c.label, EDIT_DISTANCE) for c in self._surfaces[surface])
                        best_degree = max(self.vocabulary.degree(c.name, c.label) for c in candidates)
                        hits.append(
                            (distance, -len(surface), -length, -best_degree, i, i + length, surface, candidates)
                        )
        if exact:
            hits = [
                h
                for h in hits
                if any(h[4] <= m.start and m.end <= h[5] and (h[5] - h[4]) >= (m.end - m.start) + 2 for m in exact)
            ]
        hits.sort()
        taken = [False] * len(text)
        chosen = []
        for _, _, _, _, start, end, _surface, candidates in hits:
            if any(taken[start:end]):
                continue
            for i in range(start, end):
                taken[i] = True
            chosen.append(Mention(text[start:end], start, end, candidates))
        chosen.sort(key=lambda m: m.start)
        return chosen

    # -- jieba ----------------------------------------------------------------------------

    def tokenizer(self):
        """Return a jieba tokenizer with the graph's names as a user dictionary (built on first use)."""
        if self._tokenizer is None:
            import jieba

            base = _base_tokenizer()
            tokenizer = jieba.Tokenizer()
            # Share the parsed main dictionary instead of reading it again.
            tokenizer.FREQ, tokenizer.total, tokenizer.initialized = dict(base.FREQ), base.total, True
            tokenizer.load_userdict(io.BytesIO(self.user_dictionary().encode("utf-8")))
            self._tokenizer = tokenizer
        return self._tokenizer

    def user_dictionary(self) -> str:
        """Return a jieba user dictionary (``word freq tag`` lines) of every name and alias."""
        lines = []
        for surface, candidates in self._surfaces.items():
            if " " in surface:
                continue
            first = candidates[0]
            freq = 1000 + self.vocabulary.degree(first.name, first.label)
            lines.append(f"{surface} {freq} {_JIEBA_TAGS.get(first.label, 'nz')}")
        return "\n".join(lines) + "\n"

    def tokens(self, text: str) -> list[str]:
        """Segment ``text`` with jieba (names stay whole)."""
        return [t for t in self.tokenizer().cut(text, HMM=False) if t.strip()]

    def _ordinary_word(self, piece: str) -> bool:
        freq = base_word_frequencies().get(piece, 0)
        return freq >= _COMMON_WORD_FREQ and piece not in self._surfaces
