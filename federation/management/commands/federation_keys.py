"""Create a federated task's TLS certificates and client keys with ``cryptography``."""

import json

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Write the task's CA, the coordinator's TLS certificate and Ed25519 ledger key, and every client's "
        "node-authentication (EC P-384) and ledger (Ed25519) key pairs; existing keys are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("task_id", type=int)

    def handle(self, *args, task_id, **options):
        from federation.models import FederatedTask
        from federation.services import task_keys_ensure

        task = FederatedTask.objects.filter(pk=task_id).first()
        if task is None:
            raise CommandError(f"no federated task {task_id}")
        paths = task_keys_ensure(task=task)
        self.stdout.write(json.dumps({"task_id": task.pk, "dir": str(paths.root),
                                      "clients": sorted(task.participants.values_list("client_id", flat=True))}))
