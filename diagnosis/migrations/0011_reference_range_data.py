"""Load the published reference ranges of ``diagnosis/data/reference_ranges.json`` (see that file's ``about``).

Percentiles are derived from the published mean and SD under normality; the note of each row says so.
Reversing deletes only the rows this migration made (same measure, sex, age band and source).
"""

import json
from pathlib import Path

from django.db import migrations

DATA = Path(__file__).resolve().parent.parent / "data" / "reference_ranges.json"
DERIVATION_NOTE = ("Percentiles derived from the published mean ± SD assuming a normal distribution: "
                   "p2.5/p97.5 = mean ∓ 1.960·SD, p25/p75 = mean ∓ 0.674·SD, p50 = mean.")


def _rows():
    return json.loads(DATA.read_text(encoding="utf-8"))["rows"]


def load(apps, schema_editor):
    from diagnosis.measurements.reference import normal_percentiles

    ReferenceRange = apps.get_model("diagnosis", "ReferenceRange")
    for row in _rows():
        percentiles = {k: round(v, 4) for k, v in normal_percentiles(row["mean"], row["sd"]).items()}
        ReferenceRange.objects.get_or_create(
            measure=row["measure"], sex=row["sex"], age_min_years=row["age_min_years"],
            age_max_years=row["age_max_years"], source=row["source"],
            defaults={
                "unit": row["unit"], "mean": row["mean"], "sd": row["sd"], "n": row["n"], **percentiles,
                "derivation": "normal_mean_sd", "population": row["population"],
                "source_locator": row["source_locator"], "source_url": row["source_url"],
                "note": f"{row['note']} {DERIVATION_NOTE}".strip(),
            },
        )


def unload(apps, schema_editor):
    ReferenceRange = apps.get_model("diagnosis", "ReferenceRange")
    for row in _rows():
        ReferenceRange.objects.filter(measure=row["measure"], sex=row["sex"], age_min_years=row["age_min_years"],
                                      age_max_years=row["age_max_years"], source=row["source"]).delete()


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0010_reference_range")]
    operations = [migrations.RunPython(load, unload)]
