"""Register the classical CT lung segmentation, which ships with the product and needs no training."""

from django.db import migrations

LABEL_TABLE = [
    {"index": 1, "name": "right lung", "name_zh": "右肺", "color": "#e6550d"},
    {"index": 2, "name": "left lung", "name_zh": "左肺", "color": "#3182bd"},
]


def register(apps, schema_editor):
    SegmentationModel = apps.get_model("annotation", "SegmentationModel")
    SegmentationModel.objects.get_or_create(
        name="ct-lung",
        version=1,
        defaults={
            "display_name": "CT lung (classical) 肺分割",
            "body_part": "chest",
            "modality": "CT",
            "architecture": "classical_lung",
            "label_table": LABEL_TABLE,
            "preprocessing": {},
            "provenance": {
                "method": "Hounsfield-unit thresholding, outside-air and airway removal, left/right split, hole filling",
                "reference": "Hu, Hoffman & Reinhardt, IEEE TMI 20(6):490-498, 2001",
                "training": "none",
            },
        },
    )


def unregister(apps, schema_editor):
    apps.get_model("annotation", "SegmentationModel").objects.filter(name="ct-lung", version=1).delete()


class Migration(migrations.Migration):
    dependencies = [("annotation", "0001_initial")]
    operations = [migrations.RunPython(register, unregister)]
