"""One series per SeriesInstanceUID and one instance per SOPInstanceUID in each hospital."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("annotation", "0007_fill_series_hospital")]

    operations = [
        migrations.AlterField(
            model_name="series",
            name="hospital",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="portal.hospital"),
        ),
        migrations.AlterField(
            model_name="sourcefile",
            name="hospital",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="portal.hospital"),
        ),
        migrations.AddConstraint(
            model_name="series",
            constraint=models.UniqueConstraint(fields=("hospital", "series_instance_uid"),
                                               name="series_unique_uid_per_hospital"),
        ),
        migrations.AddConstraint(
            model_name="sourcefile",
            constraint=models.UniqueConstraint(condition=models.Q(("sop_instance_uid", ""), _negated=True),
                                               fields=("hospital", "sop_instance_uid"),
                                               name="sourcefile_unique_sop_uid_per_hospital"),
        ),
    ]
