"""Date formats, one per language, used by every template (``|date`` and ``|date:"DATETIME_FORMAT"``)
and mirrored by ``frontend/src/lib/format.js`` for dates the browser writes.

Chinese: ISO-style ``2026-12-06`` / ``2026-12-06 14:05`` (as Chinese hospital systems print dates);
English: ``6 Dec 2026`` / ``6 Dec 2026 14:05`` (day-month-year with the month named, never ambiguous).
"""
