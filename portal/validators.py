"""Validators shared by every app."""

from __future__ import annotations

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
