"""One date format per language, everywhere (issue 16): templates name the locale's formats
(``portal/formats/<locale>/formats.py``) instead of writing a pattern of their own."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.template import Context, Template
from django.utils import translation

DATE_FILTER = re.compile(r"""\|\s*date\s*:\s*["']([^"']*)["']""")
NAMED = {"DATE_FORMAT", "DATETIME_FORMAT", "SHORT_DATE_FORMAT", "SHORT_DATETIME_FORMAT", "MONTH_DAY_FORMAT",
         "TIME_FORMAT", "YEAR_MONTH_FORMAT",
         "c"}  # ISO 8601, for machines: the datetime attribute of <time>


def _templates() -> list[Path]:
    base = Path(settings.BASE_DIR)
    return [p for p in base.rglob("*.html") if ".venv" not in p.parts and "node_modules" not in p.parts
            and "static" not in p.parts and "test-artifacts" not in p.parts]


def test_every_date_filter_names_a_format_of_the_locale():
    literal = [(str(p.relative_to(settings.BASE_DIR)), fmt) for p in _templates()
               for fmt in DATE_FILTER.findall(p.read_text(encoding="utf-8")) if fmt not in NAMED]
    assert not literal, f"templates with a date pattern of their own (use the locale's named format): {literal}"


def test_the_named_formats_differ_by_language_as_documented():
    moment = datetime(2026, 12, 6, 14, 5)
    template = Template('{{ d|date:"DATETIME_FORMAT" }}|{{ d|date:"DATE_FORMAT" }}|{{ d|date:"MONTH_DAY_FORMAT" }}')
    with translation.override("zh-hans"):
        assert template.render(Context({"d": moment})) == "2026-12-06 14:05|2026-12-06|12-06"
    with translation.override("en"):
        assert template.render(Context({"d": moment})) == "6 Dec 2026 14:05|6 Dec 2026|6 Dec"
