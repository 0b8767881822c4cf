"""Validators shared by every app."""

from __future__ import annotations

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# Unicode categories that have no place in an identifier a person reads or types: control (Cc),
# format (Cf: zero-width spaces and joiners, the byte-order mark, bidirectional embeddings, overrides
# and isolates such as U+202E, which make "MRN-123" display as another number), surrogates (Cs),
# private use (Co), unassigned (Cn), and line or paragraph separators (Zl, Zp).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def invisible_characters(value: str) -> list[str]:
    """Return the code points (``U+XXXX``) in ``value`` that are control, invisible or bidirectional."""
    return [f"U+{ord(c):04X}" for c in value if unicodedata.category(c) in _REFUSED_CATEGORIES]


def validate_mrn(value: str) -> None:
    """Refuse a medical record number containing control, zero-width or bidirectional-override characters.

    Raises
    ------
    django.core.exceptions.ValidationError
        With code ``invalid_mrn``, naming the code points (never the value: it identifies a patient).
    """
    found = invisible_characters(value or "")
    if found:
        raise ValidationError(
            _("A medical record number may not contain control, invisible or text-direction characters (%(chars)s)."),
            code="invalid_mrn",
            params={"chars": ", ".join(sorted(set(found)))},
        )


# Exactly "#" and six hexadecimal digits; fullmatch, so that no trailing newline or CSS slips through.
_COLOR_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def is_color_hex(value) -> bool:
    """Return True when ``value`` is a colour written ``#rrggbb`` (and nothing else)."""
    return isinstance(value, str) and _COLOR_HEX.fullmatch(value) is not None


def validate_color(value) -> None:
    """Refuse anything but a ``#rrggbb`` colour.

    Label colours reach CSS (the report PDF's style attributes, the viewer): a value such as
    ``red;background:url(http://…)`` would make the renderer fetch a URL, so only the six-digit hex
    form is accepted everywhere a colour is stored: the ``Label.color`` field, the label tables of
    segmentations and models, the API serializers and every label-table import.

    Raises
    ------
    django.core.exceptions.ValidationError
        With code ``invalid_color`` (the message does not repeat the value).
    """
    if not is_color_hex(value):
        raise ValidationError(_("A colour is written #rrggbb (# and six hexadecimal digits, e.g. #ff0000)."),
                              code="invalid_color")


def validate_label_table_colors(value) -> None:
    """Refuse a label table (a list of ``{"index", "name", "color", …}``) with a colour not written ``#rrggbb``.

    Only the colours are checked here; a missing ``color`` is allowed (readers default to red).

    Raises
    ------
    django.core.exceptions.ValidationError
        With code ``invalid_color`` naming the label's index.
    """
    if not isinstance(value, list):
        return
    for entry in value:
        if isinstance(entry, dict) and "color" in entry and not is_color_hex(entry["color"]):
            index = entry.get("index")
            raise ValidationError(
                _("Label %(index)s: a colour is written #rrggbb (# and six hexadecimal digits, e.g. #ff0000)."),
                code="invalid_color", params={"index": index if isinstance(index, int) else "?"})
