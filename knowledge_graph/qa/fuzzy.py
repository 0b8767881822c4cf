"""Edit-distance matching of near misses (``糖尿并`` → ``糖尿病``).

:func:`levenshtein` is the textbook dynamic programme (V. I. Levenshtein, "Binary codes capable of
correcting deletions, insertions, and reversals", Soviet Physics Doklady 10(8), 1966; the O(mn)
recurrence of Wagner & Fischer, JACM 21(1), 1974). :class:`NearMissIndex` finds every vocabulary
name within distance 1 of a query without comparing against all names, with the symmetric-delete
idea of SymSpell (W. Garbe, 2012): two strings are within distance 1 exactly when one equals the
other, or one equals the other with one character deleted, or both give the same string after
deleting one character each (a substitution). The deletion variants of every name are stored as
64-bit hashes in one sorted NumPy array (16 bytes a variant rather than a Python dict entry), and
candidates are confirmed with :func:`levenshtein`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def levenshtein(a: str, b: str, *, limit: int | None = None) -> int:
    """Return the Levenshtein distance between ``a`` and ``b`` (insertions, deletions, substitutions).

    Parameters
    ----------
    a, b : str
        The strings (compared character by character; a CJK character is one unit).
    limit : int, optional
        Stop early and return ``limit + 1`` once the distance is known to exceed ``limit``.

    Returns
    -------
    int
        The minimum number of single-character edits turning ``a`` into ``b``.
    """
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        best = i
        for j, cb in enumerate(b, start=1):
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            current.append(value)
            best = min(best, value)
        if limit is not None and best > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _deletes(word: str) -> list[str]:
    return [word[:i] + word[i + 1 :] for i in range(len(word))]


def _key(text: str) -> int:
    # Python's str hash is stable within a process, which is as long as an index lives.
    return hash(text) & 0x7FFF_FFFF_FFFF_FFFF


class NearMissIndex:
    """Find the words of a vocabulary within edit distance 1 of a query.

    Parameters
    ----------
    words : iterable of str
        The vocabulary (entity names and synonyms). Words shorter than ``min_length`` are left out:
        one changed character in a two-character name gives another ordinary word as often as a typo.
    min_length : int
        Shortest word indexed (default 3).
    """

    def __init__(self, words: Iterable[str], *, min_length: int = 3):
        self.min_length = min_length
        self.words: list[str] = sorted({w for w in words if len(w) >= min_length})
        keys: list[int] = []
        ids: list[int] = []
        for index, word in enumerate(self.words):
            keys.append(_key(word))
            ids.append(index)
            for variant in _deletes(word):
                keys.append(_key(variant))
                ids.append(index)
        order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
        self._keys = np.asarray(keys, dtype=np.int64)[order]
        self._ids = np.asarray(ids, dtype=np.int32)[order]

    def __len__(self) -> int:
        return len(self.words)

    def _lookup(self, variants: Sequence[str]) -> set[int]:
        if not len(self._keys):
            return set()
        probe = np.asarray([_key(v) for v in variants], dtype=np.int64)
        left = np.searchsorted(self._keys, probe, side="left")
        right = np.searchsorted(self._keys, probe, side="right")
        found: set[int] = set()
        for lo, hi in zip(left.tolist(), right.tolist(), strict=True):
            if hi > lo:
                found.update(self._ids[lo:hi].tolist())
        return found

    def near(self, query: str) -> list[tuple[str, int]]:
        """Return ``(word, distance)`` for every indexed word within distance 1 of ``query``.

        The exact word (distance 0) is included when indexed. Sorted by distance, then word.
        """
        if len(query) < self.min_length - 1:
            return []
        candidates = self._lookup([query, *_deletes(query)])
        out = []
        for index in candidates:
            word = self.words[index]
            distance = levenshtein(query, word, limit=1)
            if distance <= 1:
                out.append((word, distance))
        out.sort(key=lambda item: (item[1], item[0]))
        return out
