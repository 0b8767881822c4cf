"""Reads of the knowledge-graph assistant: entities and their neighbours, synonyms, conversations.

Medical knowledge is not patient data: every signed-in user may browse the graph. Conversations are
private to their owner.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import User

from .connection import graph_client
from .display import label_name, panel_section_names, property_name, relation_name
from .graph import store
from .models import Conversation, Synonym
from .qa.schema import LABEL_ZH, PROP_ZH, REL_ZH, Label

MAX_NAME_CHARS = 200
BROWSABLE_LABELS = tuple(str(label) for label in Label if label != Label.TERM)


def conversation_get(*, user: User, conversation_id, for_update: bool = False) -> Conversation:
    """Return the user's conversation.

    Raises
    ------
    ServiceError
        404 when it does not exist or belongs to someone else (the two are not told apart).
    """
    queryset = Conversation.objects.all()
    if for_update:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=conversation_id, owner=user)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise ServiceError(_("No such conversation."), code="not_found", status_code=404) from None


def _entity_lookup(label: str, name: str):
    """Return ``(client, properties)`` of a browsable entity, or None for a label that cannot be browsed,
    an empty or over-long name, or an entity the graph does not hold."""
    if label not in BROWSABLE_LABELS or not name or len(name) > MAX_NAME_CHARS:
        return None
    client = graph_client()
    props = store.entity_properties(client, label, name)
    return None if props is None else (client, props)


def entity_detail(*, label: str, name: str, limit: int = 300) -> dict[str, Any] | None:
    """Return an entity's properties and its neighbours grouped by relation, or None.

    Returns
    -------
    dict or None
        ``label``, ``label_zh``, ``name``, ``properties`` (list of {key, key_zh, value}),
        ``groups`` (list of {relation, relation_zh, relation_text, predicate, outgoing,
        items: [{label, label_text, name}]}); the ``*_text`` fields are the names shown to users,
        in the request's language (see :mod:`.display`).
        ``synonyms`` (staff-added aliases).
    """
    found = _entity_lookup(label, name)
    if found is None:
        return None
    client, props = found
    properties = [
        {
            "key": key,
            "key_zh": PROP_ZH.get(key, key),
            "key_text": property_name(key),
            "value": value,
            "value_text": "、".join(map(str, value)) if isinstance(value, list) else str(value),
        }
        for key, value in sorted(props.items())
        if key not in ("name", "degree")
    ]
    groups: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
    for row in store.entity_neighbours(client, label, name, limit=limit):
        key = (row["rel"], row["predicate"] or "", bool(row["outgoing"]))
        group = groups.setdefault(
            key,
            {
                "relation": row["rel"],
                "relation_zh": row["predicate"] or REL_ZH.get(row["rel"], row["rel"]),
                "relation_text": relation_name(row["rel"], row["predicate"] or "", outgoing=bool(row["outgoing"])),
                "predicate": row["predicate"] or "",
                "outgoing": bool(row["outgoing"]),
                "items": [],
            },
        )
        group["items"].append({"label": row["label"], "label_text": label_name(row["label"]), "name": row["name"]})
    return {
        "label": label,
        "label_zh": LABEL_ZH.get(label, label),
        "label_text": label_name(label),
        "name": name,
        "properties": properties,
        "groups": list(groups.values()),
        "synonyms": list(Synonym.objects.filter(label=label, canonical=name).values_list("alias", flat=True)),
    }


def entity_search(*, text: str, limit: int = 30) -> list[dict[str, Any]]:
    """Return entities whose names contain ``text`` (at most ``limit``), best connected first."""
    text = " ".join((text or "").split())[:MAX_NAME_CHARS]
    if not text:
        return []
    rows = store.entity_search(graph_client(), text, limit=limit)
    return [
        {"label": r["label"], "label_zh": LABEL_ZH.get(r["label"], r["label"]), "label_text": label_name(r["label"]),
         "name": r["name"]}
        for r in rows
    ]


def synonym_list() -> QuerySet[Synonym]:
    """Return every staff-added synonym with its author."""
    return Synonym.objects.select_related("created_by").order_by("alias", "label")


# --------------------------------------------------------------------------------------------------
# Entity panels (the side panel that report, study and patient pages open from a linked term)
# --------------------------------------------------------------------------------------------------

LAY_TERMS_PATH = Path(__file__).resolve().parent / "data" / "lay_terms.json"
MAX_PANEL_ITEMS = 12


@lru_cache(maxsize=1)
def _lay_terms() -> dict[str, str]:
    return dict(json.loads(LAY_TERMS_PATH.read_text(encoding="utf-8"))["terms"])


def entity_lay_text(*, name: str, description: str) -> tuple[str, str]:
    """Return the plain-language wording of an entity for patients, and where it came from.

    Common entities have a stored wording (``data/lay_terms.json``, written for patients); any
    other takes the first sentence of its graph description (up to the first 。, ；or ！).

    Returns
    -------
    (text, source)
        ``source`` is ``"stored"``, ``"description"`` or ``""`` when there is nothing to say.
    """
    stored = _lay_terms().get(name)
    if stored:
        return stored, "stored"
    text = (description or "").strip()
    if not text:
        return "", ""
    for stop in ("。", "；", "！"):
        if stop in text:
            text = text.split(stop, 1)[0] + "。"
            break
    return text[:160], "description"


def entity_panel(*, label: str, name: str, lay: bool = False) -> dict[str, Any] | None:
    """Return what the side panel shows for one entity, or None when the graph lacks it.

    Reads the same graph as the QA assistant (:func:`.connection.graph_client`).

    Parameters
    ----------
    label, name : str
        The entity (a browsable label and its unique name).
    lay : bool
        Add the plain-language wording for patients (:func:`entity_lay_text`).

    Returns
    -------
    dict or None
        ``label``, ``label_text`` (the type's name in the request's language), ``name``,
        ``description`` (the graph's ``desc``, "" when none), ``checks``, ``departments`` and
        ``related_diseases`` (names, at most :data:`MAX_PANEL_ITEMS` each; related diseases are the
        complications either way and generic relations to diseases), ``sections_text`` (the
        section titles in the request's language, :func:`.display.panel_section_names`) and, with
        ``lay``, ``lay_text`` and ``lay_source``.
    """
    found = _entity_lookup(label, name)
    if found is None:
        return None
    client, props = found
    checks: list[str] = []
    departments: list[str] = []
    related: list[str] = []
    for row in store.entity_neighbours(client, label, name, limit=300):
        other, rel = row["name"], row["rel"]
        if rel == "NEEDS_CHECK" and row["outgoing"]:
            target = checks
        elif rel == "BELONGS_TO" and row["outgoing"]:
            target = departments
        elif row["label"] == "Disease" and rel in ("ACCOMPANIES", "RELATED"):
            target = related
        else:
            continue
        if other not in target and other != name and len(target) < MAX_PANEL_ITEMS:
            target.append(other)
    description = props.get("desc") or ""
    panel: dict[str, Any] = {
        "label": label,
        "label_text": label_name(label),
        "name": name,
        "description": description if isinstance(description, str) else "、".join(map(str, description)),
        "checks": checks,
        "departments": departments,
        "related_diseases": related,
        "sections_text": panel_section_names(),
    }
    if lay:
        panel["lay_text"], panel["lay_source"] = entity_lay_text(name=name, description=panel["description"])
    return panel
