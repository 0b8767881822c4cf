"""Label sets: a hospital's (or project's) labels, and empty segmentations started from them."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record
from portal.validators import is_color_hex

from ..models import Segmentation, Series
from .versions import segmentation_create_blank


def _label_fields_check(*, index: int | None = None, name: str | None = None, color: str | None = None,
                        snomed_code: str | None = None) -> None:
    import re

    if index is not None and (not isinstance(index, int) or not 1 <= index <= 65535):
        raise ServiceError(_("A label value must be an integer from 1 to 65535."), code="bad_label")
    if name is not None and not name.strip():
        raise ServiceError(_("A label needs a name."), code="bad_label")
    if color is not None and not is_color_hex(color):
        raise ServiceError(_("A colour is written #rrggbb."), code="bad_label")
    if snomed_code and not re.fullmatch(r"\d{6,18}", snomed_code):
        raise ServiceError(_("A SNOMED CT concept id has 6 to 18 digits."), code="bad_label")


@transaction.atomic
def label_set_create(*, user: User, hospital: Hospital, name: str, project: str = "", description: str = "",
                     allow_overlap: bool = False, labels: list[dict] | None = None):
    """Create a label set of a hospital (optionally for one project) with its labels.

    Raises ServiceError ``bad_label`` or ``label_set_exists`` (409).
    """
    from ..models import Label, LabelSet

    if LabelSet.objects.filter(hospital=hospital, project=project, name=name).exists():
        raise ServiceError(_("A label set with this name exists already."), code="label_set_exists", status_code=409)
    label_set = LabelSet(hospital=hospital, project=project, name=name, description=description,
                         allow_overlap=allow_overlap, created_by=user)
    label_set.full_clean()
    label_set.save()
    seen: set[int] = set()
    for entry in labels or []:
        _label_fields_check(index=entry.get("index"), name=entry.get("name", ""), color=entry.get("color", "#ff0000"),
                            snomed_code=entry.get("snomed_code", ""))
        if entry["index"] in seen:
            raise ServiceError(_("Label value %(index)s appears twice."),
                               params={"index": entry['index']}, code="bad_label")
        seen.add(entry["index"])
        Label.objects.create(label_set=label_set, index=entry["index"], name=entry["name"],
                             color=entry.get("color", "#ff0000"), description=entry.get("description", ""),
                             snomed_code=entry.get("snomed_code", ""), snomed_meaning=entry.get("snomed_meaning", ""))
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="label_set", target_id=label_set.pk, hospital=hospital)
    return label_set


@transaction.atomic
def label_set_update(*, user: User, label_set, **fields):
    """Rename or describe a label set, or change whether it allows overlapping segments."""
    for key in ("name", "project", "description", "allow_overlap"):
        if key in fields and fields[key] is not None:
            setattr(label_set, key, fields[key])
    label_set.full_clean()
    label_set.save()
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="label_set", target_id=label_set.pk,
                 hospital=label_set.hospital)
    return label_set


@transaction.atomic
def label_upsert(*, user: User, label_set, index: int, **fields):
    """Add a label to a set, or rename / recolour / describe / code the one with this value.

    Raises ServiceError ``bad_label``.
    """
    from ..models import Label

    _label_fields_check(index=index, name=fields.get("name"), color=fields.get("color"), snomed_code=fields.get("snomed_code"))
    label = Label.objects.filter(label_set=label_set, index=index).first()
    if label is None:
        if not fields.get("name"):
            raise ServiceError(_("A new label needs a name."), code="bad_label")
        label = Label(label_set=label_set, index=index)
    for key in ("name", "color", "description", "snomed_code", "snomed_meaning"):
        if fields.get(key) is not None:
            setattr(label, key, fields[key])
    label.full_clean()
    label.save()
    audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="label_set", target_id=label_set.pk,
                 hospital=label_set.hospital, detail={"label": index})
    return label


def segmentation_create_from_label_set(*, user: User, series: Series, label_set, name: str = "") -> list[Segmentation]:
    """Start empty segmentations on ``series`` from a label set: one label map, or, when the set
    allows overlapping segments, one layer per label (sharing a ``layer_group``).

    Raises ServiceError ``bad_label_table`` for a label set without labels.
    """
    table = label_set.label_table()
    if not table:
        raise ServiceError(_("This label set has no labels yet."), code="bad_label_table")
    tables = [[entry] for entry in table] if label_set.allow_overlap else [table]
    group = uuid.uuid4() if label_set.allow_overlap else None
    created = []
    with transaction.atomic():
        for n, layer_table in enumerate(tables):
            segmentation = segmentation_create_blank(
                user=user, series=series, label_table=layer_table,
                name=(name or label_set.name)[:180] + (f" · {layer_table[0]['name']}" if group else ""),
            )
            segmentation.label_set = label_set
            segmentation.layer_group, segmentation.layer_index = group, n
            segmentation.save(update_fields=["label_set", "layer_group", "layer_index"])
            created.append(segmentation)
    return created
