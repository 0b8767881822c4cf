"""Check a federated task's signed, hash-chained ledger and name the first bad entry."""

import json

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Verify every entry of a task's ledger (hash chain, coordinator Ed25519 signatures, and each hospital's "
        "signature against the certificate its node enrolled, not revoked when the entry was appended); exit "
        "non-zero naming the first bad entry."
    )

    def add_arguments(self, parser):
        parser.add_argument("task_id", type=int)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, task_id, **options):
        from federation import services
        from federation.models import FederatedTask

        task = FederatedTask.objects.filter(pk=task_id).first()
        if task is None:
            raise CommandError(f"no federated task {task_id}")
        result = services.ledger_verify(task=task)
        if options["json"]:
            self.stdout.write(json.dumps(result))
        elif result["ok"]:
            self.stdout.write(f"ledger of task {task_id}: {result['entries']} entries, all valid")
            portal_held = services.ledger_portal_held_clients(task=task)
            if portal_held:
                # Those hospitals never enrolled their own key: the portal holds the key that signs for them.
                self.stdout.write(f"not enrolled (statements signed with portal-held keys): {', '.join(portal_held)}")
        if not result["ok"]:
            raise CommandError(
                f"ledger of task {task_id}: entry {result['first_bad_index']} (id {result['entry_id']}) is bad: {result['reason']}"
            )
