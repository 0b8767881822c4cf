"""Fill Series.hospital and SourceFile.hospital from the study, and stop on duplicates.

Concurrent imports could store one series (or one DICOM instance) twice in a hospital before 0008's
unique constraints existed. Such rows are patient data: this migration deletes nothing and stops with
the ids to resolve (delete the newer copy) when it finds any.
"""

from django.db import migrations
from django.db.models import Count, OuterRef, Subquery


def fill(apps, schema_editor):
    Series = apps.get_model("annotation", "Series")
    SourceFile = apps.get_model("annotation", "SourceFile")
    Series.objects.filter(hospital__isnull=True).update(
        hospital=Subquery(Series.objects.filter(pk=OuterRef("pk")).values("study__hospital")[:1])
    )
    SourceFile.objects.filter(hospital__isnull=True).update(
        hospital=Subquery(Series.objects.filter(pk=OuterRef("series_id")).values("hospital")[:1])
    )
    duplicate_series = (
        Series.objects.values("hospital", "series_instance_uid").annotate(n=Count("pk")).filter(n__gt=1)
    )
    duplicate_instances = (
        SourceFile.objects.exclude(sop_instance_uid="").values("hospital", "sop_instance_uid")
        .annotate(n=Count("pk")).filter(n__gt=1)
    )
    problems = []
    for row in duplicate_series[:20]:
        ids = list(Series.objects.filter(hospital=row["hospital"], series_instance_uid=row["series_instance_uid"])
                   .order_by("pk").values_list("pk", flat=True))
        problems.append(f"series {ids} (hospital {row['hospital']}) share one SeriesInstanceUID")
    if not problems and duplicate_instances.exists():
        for row in duplicate_instances[:20]:
            ids = sorted(set(SourceFile.objects.filter(hospital=row["hospital"], sop_instance_uid=row["sop_instance_uid"])
                             .values_list("series_id", flat=True)))
            problems.append(f"series {ids} (hospital {row['hospital']}) share a SOPInstanceUID")
    if problems:
        raise RuntimeError(
            "Duplicate imports must be resolved before the unique constraints can be added; delete the "
            "newer copy of each (nothing was changed):\n  " + "\n  ".join(problems)
        )


class Migration(migrations.Migration):

    dependencies = [("annotation", "0006_series_sourcefile_hospital")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
