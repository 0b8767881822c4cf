"""Series and SourceFile get their study's hospital (nullable until 0007 fills it)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0005_patient_mrn_validator"),
        ("portal", "0002_audit_lockout_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="series",
            name="hospital",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                    to="portal.hospital"),
        ),
        migrations.AddField(
            model_name="sourcefile",
            name="hospital",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+",
                                    to="portal.hospital"),
        ),
    ]
