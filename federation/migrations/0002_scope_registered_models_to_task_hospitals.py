"""Give the models registered from federated tasks before issue 12 their owners.

They were registered with no hospital, i.e. for every hospital. Each now belongs to its task's owner
hospital and is shared with the clients that accepted the task; nothing else changes. The reverse
leaves the rows as they are (the scoping is not undone).
"""

from django.db import migrations


def scope_federated_models(apps, schema_editor):
    SegmentationModel = apps.get_model("annotation", "SegmentationModel")
    FederatedTask = apps.get_model("federation", "FederatedTask")
    Participant = apps.get_model("federation", "Participant")
    for model in SegmentationModel.objects.filter(hospital__isnull=True).iterator():
        task_id = (model.provenance or {}).get("federated_task")
        task = FederatedTask.objects.filter(pk=task_id).first() if task_id else None
        if task is None:
            continue
        model.hospital_id = task.owner_hospital_id
        model.save(update_fields=["hospital"])
        hospital_ids = (Participant.objects.filter(task=task, status="accepted")
                        .exclude(hospital_id=task.owner_hospital_id).values_list("hospital_id", flat=True))
        model.shared_with.set(list(hospital_ids))


class Migration(migrations.Migration):
    dependencies = [
        ("federation", "0001_initial"),
        ("annotation", "0012_segmentationmodel_shared_with_hospitals"),
    ]

    operations = [migrations.RunPython(scope_federated_models, migrations.RunPython.noop)]
