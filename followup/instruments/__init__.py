"""Standard instruments shipped with the product, written by us from the published items.

- ``phq9.json``: PHQ-9 (Kroenke, Spitzer & Williams, J Gen Intern Med 2001;16:606-613).
- ``gad7.json``: GAD-7 (Spitzer, Kroenke, Williams & Löwe, Arch Intern Med 2006;166:1092-1097).

Both are free to use without permission. Each file holds ``code``, ``title``, ``version``,
``description`` and a ``definition`` in the form of :mod:`followup.questionnaires.definition`,
with the severity bands of the papers and their source in ``definition.scoring.source``.
"""

from __future__ import annotations

import json
from pathlib import Path

INSTRUMENT_DIR = Path(__file__).resolve().parent
INSTRUMENT_FILES = ("phq9.json", "gad7.json")


def instruments_load() -> list[dict]:
    """Return the shipped instruments as dicts (read from this folder)."""
    return [json.loads((INSTRUMENT_DIR / name).read_text(encoding="utf-8")) for name in INSTRUMENT_FILES]
