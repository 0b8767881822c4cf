"""QIDO-RS query parameters (DICOM PS3.18 8.3.4 and 10.6.1): parsing and checking, without Django.

A query is ``{attributeID}={value}`` pairs, where the attribute is a keyword (``PatientID``) or a tag
(``00100020``), plus ``limit``, ``offset``, ``includefield`` and ``fuzzymatching``. Matching follows
PS3.4 C.2.2.2: single value (exact), wildcard (``*`` and ``?``, for the string attributes PS3.4 allows
it on), UID list (backslash- or comma-separated) and date range (``YYYYMMDD-YYYYMMDD``, open at
either end).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_has_tag, keyword_for_tag, tag_for_keyword

__all__ = ["LEVEL_KEYS", "QidoError", "QidoQuery", "date_range_parse", "qido_query_parse", "wildcard_regex"]

#: Matching keys the portal answers at each level (PS3.18 Tables 10.6.1-5): keyword → kind of matching.
LEVEL_KEYS: dict[str, dict[str, str]] = {
    "studies": {"StudyInstanceUID": "uid", "PatientID": "wildcard", "AccessionNumber": "wildcard",
                "StudyDate": "date", "ModalitiesInStudy": "single"},
    "series": {"SeriesInstanceUID": "uid", "Modality": "single", "SeriesNumber": "integer"},
    "instances": {"SOPInstanceUID": "uid", "InstanceNumber": "integer"},
}
#: Which levels' keys a search may use: a search of series across studies may also match study keys.
LEVELS_SEARCHED: dict[tuple[str, bool], tuple[str, ...]] = {
    ("studies", False): ("studies",),
    ("series", False): ("studies", "series"),
    ("series", True): ("series",),
    ("instances", False): ("studies", "series", "instances"),
    ("instances", True): ("series", "instances"),
}
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE = re.compile(r"^\d{8}$")


class QidoError(ValueError):
    """A query the server cannot answer: an unknown or repeated parameter, a malformed value (400)."""


@dataclass(frozen=True)
class QidoQuery:
    """A checked query.

    Attributes
    ----------
    match : dict
        Keyword → value: a list of UIDs (``uid``), a regular expression (``wildcard``, already
        anchored, or the exact string when it holds no wildcard), a ``(first, last)`` pair of
        ``datetime.date`` or None (``date``), an ``int`` (``integer``), a string (``single``).
    include : frozenset of str
        Keywords named by ``includefield``; ``all_fields`` when ``includefield=all``.
    """

    match: dict[str, object] = field(default_factory=dict)
    include: frozenset[str] = frozenset()
    all_fields: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def _keyword(name: str) -> str | None:
    """Return the DICOM keyword of an attribute ID given as a keyword or an 8-digit hex tag."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        tag = int(name, 16)
        return keyword_for_tag(tag) if dictionary_has_tag(tag) else None
    return name if tag_for_keyword(name) is not None else None


def wildcard_regex(value: str) -> str:
    """Turn a PS3.4 C.2.2.2.4 wildcard value (``*`` any run, ``?`` one character) into an anchored regex."""
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value) + "$"


def date_range_parse(value: str) -> tuple[dt.date | None, dt.date | None]:
    """Parse a DA value or range (PS3.4 C.2.2.2.5): ``20000101``, ``20000101-``, ``-20001231``, ``A-B``.

    Raises
    ------
    QidoError
        Not ``YYYYMMDD`` on each given side, an impossible date, or a range whose end precedes its start.
    """
    first_text, sep, last_text = value.partition("-")
    if not sep:
        last_text = first_text
    bounds = []
    for text in (first_text, last_text):
        if not text:
            bounds.append(None)
            continue
        if not _DATE.match(text):
            raise QidoError(f"'{value[:40]}' is not a date or date range (YYYYMMDD[-YYYYMMDD])")
        try:
            bounds.append(dt.date(int(text[:4]), int(text[4:6]), int(text[6:])))
        except ValueError:
            raise QidoError(f"'{text}' is not a valid date") from None
    if bounds == [None, None]:
        raise QidoError("a date range needs at least one date")
    if bounds[0] and bounds[1] and bounds[1] < bounds[0]:
        raise QidoError(f"the date range '{value[:40]}' ends before it starts")
    return bounds[0], bounds[1]


def _int_param(name: str, value: str, *, minimum: int, maximum: int | None = None) -> int:
    if not re.fullmatch(r"\d{1,9}", value):
        raise QidoError(f"{name} must be a non-negative integer")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise QidoError(f"{name} must be between {minimum} and {maximum}" if maximum else f"{name} must be ≥ {minimum}")
    return number


def qido_query_parse(params: list[tuple[str, str]], *, level: str, within: bool) -> QidoQuery:
    """Check and parse the query parameters of a QIDO-RS search.

    Parameters
    ----------
    params : list of (name, value)
        The query string's pairs in order (a name may repeat only for ``includefield``).
    level : {"studies", "series", "instances"}
        The level searched.
    within : bool
        Whether the search is inside a study (``studies/{uid}/series``, ``…/instances``), whose
        study keys are then fixed by the path.

    Raises
    ------
    QidoError
        An unknown parameter or attribute, a key the level does not match on, a repeated key, an
        empty value where one is needed, a malformed UID, date, number, ``limit`` (1 to 1000) or
        ``offset``, ``fuzzymatching`` other than ``false``.
    """
    allowed: dict[str, str] = {}
    for searched in LEVELS_SEARCHED[(level, within)]:
        allowed.update(LEVEL_KEYS[searched])
    match: dict[str, object] = {}
    include: set[str] = set()
    all_fields = False
    limit, offset = DEFAULT_LIMIT, 0
    seen: set[str] = set()
    for name, value in params:
        if name in seen and name != "includefield":
            raise QidoError(f"the parameter '{name[:64]}' is given more than once")
        seen.add(name)
        if name == "limit":
            limit = _int_param("limit", value, minimum=1, maximum=MAX_LIMIT)
        elif name == "offset":
            offset = _int_param("offset", value, minimum=0)
        elif name == "fuzzymatching":
            if value.lower() != "false":
                raise QidoError("fuzzy matching is not supported (fuzzymatching=false only)")
        elif name == "includefield":
            for item in value.split(","):
                item = item.strip()
                if item == "all":
                    all_fields = True
                    continue
                keyword = _keyword(item)
                if not keyword:
                    raise QidoError(f"includefield names an unknown attribute '{item[:64]}'")
                include.add(keyword)
        else:
            keyword = _keyword(name)
            if keyword is None:
                raise QidoError(f"unknown query parameter '{name[:64]}'")
            kind = allowed.get(keyword)
            if kind is None:
                raise QidoError(f"{keyword} is not a matching key of this search; "
                                f"supported: {', '.join(sorted(allowed))}")
            if keyword in match:
                raise QidoError(f"the attribute {keyword} is given more than once")
            match[keyword] = _match_value(keyword, kind, value)
    return QidoQuery(match=match, include=frozenset(include), all_fields=all_fields, limit=limit, offset=offset)


def _match_value(keyword: str, kind: str, value: str) -> object:
    value = value.strip()
    if not value:
        raise QidoError(f"{keyword} needs a value")
    if kind == "uid":
        uids = [uid.strip() for uid in re.split(r"[\\,]", value)]
        if not all(0 < len(uid) <= 64 and _UID.match(uid) for uid in uids):
            raise QidoError(f"{keyword} must be one or more UIDs (digits and dots)")
        return uids
    if kind == "date":
        return date_range_parse(value)
    if kind == "integer":
        if not re.fullmatch(r"-?\d{1,9}", value):
            raise QidoError(f"{keyword} must be an integer")
        return int(value)
    if kind == "wildcard" and ("*" in value or "?" in value):
        return re.compile(wildcard_regex(value))
    if len(value) > 64 or "\\" in value:
        raise QidoError(f"{keyword} must be a single value of at most 64 characters")
    return value
