"""``isodate``: format an ISO 8601 date or date-time string (as stored in report JSON) in the page
language's date format (``portal.formats``)."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import formats, timezone

register = template.Library()


@register.filter
def isodate(value, with_time: bool = False) -> str:
    """Return ``value`` (``"2026-12-06"`` or ``"2026-12-06T14:05:00+08:00"``) formatted with
    ``DATE_FORMAT`` (or ``DATETIME_FORMAT`` when ``with_time``); ``""`` for an empty or unparsable value."""
    if not value:
        return ""
    if isinstance(value, (dt.date, dt.datetime)):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value)) if "T" in str(value) else dt.date.fromisoformat(str(value))
        except ValueError:
            return ""
    if isinstance(parsed, dt.datetime):
        if timezone.is_aware(parsed):
            parsed = timezone.localtime(parsed)
        return formats.date_format(parsed, "DATETIME_FORMAT" if with_time else "DATE_FORMAT")
    return formats.date_format(parsed, "DATE_FORMAT")
