"""Parse QASystemOnMedicalKG's ``medical.json`` format (one JSON object per disease).

Format (liuhuanyong/QASystemOnMedicalKG, ``data/medical.json``, a MongoDB export): one object per
line with the fields ``name, desc, prevent, cause, easy_get, cure_department[], cure_way[],
cure_lasttime, cured_prob, get_prob, symptom[], acompany[], category[], common_drug[],
recommand_drug[], drug_detail[], do_eat[], not_eat[], recommand_eat[], check[]`` and, in some
exports, ``yibao_status`` (insurance) and ``get_way`` (how it spreads). A file holding one JSON array
of such objects is read as well.

Our starter graph uses the same format with two optional extensions: ``aliases[]`` (other names,
recognised in questions) and ``contagious`` (a plain statement of contagiousness).

``drug_detail`` items read ``制药厂商药品名(通用药名)``: the part before the parenthesis is a drug
product, the part inside names its drug, and the product name minus the drug name (when it ends
with it) names the producer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..qa.schema import Label, Prop, Rel
from .base import GraphBatch, clean_name, clean_text

#: medical.json list field → (relation, target label).
LIST_RELATIONS: dict[str, tuple[Rel, Label]] = {
    "symptom": (Rel.HAS_SYMPTOM, Label.SYMPTOM),
    "acompany": (Rel.ACCOMPANIES, Label.DISEASE),
    "common_drug": (Rel.COMMON_DRUG, Label.DRUG),
    "recommand_drug": (Rel.RECOMMENDED_DRUG, Label.DRUG),
    "do_eat": (Rel.SHOULD_EAT, Label.FOOD),
    "not_eat": (Rel.SHOULD_NOT_EAT, Label.FOOD),
    "recommand_eat": (Rel.RECOMMENDED_RECIPE, Label.FOOD),
    "check": (Rel.NEEDS_CHECK, Label.CHECK),
    "cure_department": (Rel.BELONGS_TO, Label.DEPARTMENT),
}

#: medical.json text field → property.
TEXT_PROPERTIES: dict[str, Prop] = {
    "desc": Prop.DESC,
    "prevent": Prop.PREVENT,
    "cause": Prop.CAUSE,
    "easy_get": Prop.EASY_GET,
    "cure_lasttime": Prop.CURE_LASTTIME,
    "cured_prob": Prop.CURED_PROB,
    "get_prob": Prop.GET_PROB,
    "yibao_status": Prop.INSURANCE,
    "get_way": Prop.CONTAGIOUS,
    "contagious": Prop.CONTAGIOUS,
}

#: medical.json list field → list property.
LIST_PROPERTIES: dict[str, Prop] = {
    "cure_way": Prop.CURE_WAY,
    "category": Prop.CATEGORY,
    "aliases": Prop.ALIASES,
}

_DETAIL = re.compile(r"^(?P<product>[^(（]+)[(（](?P<drug>[^)）]+)[)）]\s*$")


def records_read(path: Path) -> Iterator[Any]:
    """Yield the JSON values of ``path``: the items of a top-level array, or one per non-blank line.

    Lines that are not valid JSON are yielded as ``None`` (counted as skipped by the parser).
    """
    with open(path, encoding="utf-8-sig") as handle:
        head = handle.read(1)
        while head and head.isspace():
            head = handle.read(1)
        if head == "[":
            handle.seek(0)
            yield from json.load(handle)
            return
        handle.seek(0)
        for line in handle:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield None


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def drug_detail_split(detail: str) -> tuple[str, str, str]:
    """Split a ``drug_detail`` item into (product, drug, producer); missing parts are "".

    >>> drug_detail_split("示例药业布洛芬缓释胶囊(布洛芬缓释胶囊)")
    ('示例药业布洛芬缓释胶囊', '布洛芬缓释胶囊', '示例药业')
    """
    match = _DETAIL.match(detail.strip())
    if not match:
        return clean_name(detail), "", ""
    product, drug = clean_name(match["product"]), clean_name(match["drug"])
    producer = product[: -len(drug)] if drug and product.endswith(drug) and product != drug else ""
    return product, drug, clean_name(producer)


def qasystem_parse(path: Path, *, limit: int | None = None) -> GraphBatch:
    """Parse a ``medical.json`` file into a :class:`GraphBatch`.

    Parameters
    ----------
    path : Path
        JSON lines (or one JSON array) of disease objects.
    limit : int, optional
        Stop after this many records.

    Returns
    -------
    GraphBatch
        Diseases with their properties and typed relations; records without a ``name`` are skipped.
    """
    batch = GraphBatch()
    for record in records_read(path):
        if limit is not None and batch.records >= limit:
            break
        batch.records += 1
        if not isinstance(record, dict) or not clean_name(record.get("name")):
            batch.skipped += 1
            continue
        disease = clean_name(record["name"])
        batch.node(Label.DISEASE, disease)
        for key, prop in TEXT_PROPERTIES.items():
            value = record.get(key)
            if isinstance(value, list):
                value = "；".join(clean_text(v) for v in value if clean_text(v))
            text = clean_text(value)
            if text:
                batch.set_property(Label.DISEASE, disease, prop, text)
        for key, prop in LIST_PROPERTIES.items():
            batch.add_to_list(Label.DISEASE, disease, prop, _as_list(record.get(key)))
        for key, (rel, label) in LIST_RELATIONS.items():
            for target in _as_list(record.get(key)):
                batch.relate(Label.DISEASE, disease, rel, label, target)
        for detail in _as_list(record.get("drug_detail")):
            product, drug, producer = drug_detail_split(detail)
            if not product:
                continue
            batch.node(Label.DRUG_PRODUCT, product)
            if drug:
                batch.relate(Label.DRUG_PRODUCT, product, Rel.PRODUCT_OF, Label.DRUG, drug)
            if producer:
                batch.relate(Label.DRUG_PRODUCT, product, Rel.MADE_BY, Label.PRODUCER, producer)
    return batch
