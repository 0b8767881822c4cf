"""Revoke a hospital node's enrolled certificates in a task: its later ledger statements no longer verify."""

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Revoke every live certificate HOSPITAL's node enrolled in task TASK_ID."

    def add_arguments(self, parser):
        parser.add_argument("task_id", type=int)
        parser.add_argument("--hospital", required=True, help="the hospital's code")

    def handle(self, *args, task_id, hospital, **options):
        from federation import services
        from federation.models import FederatedTask
        from portal.models import Hospital

        task = FederatedTask.objects.filter(pk=task_id).first()
        if task is None:
            raise CommandError(f"no federated task {task_id}")
        row = Hospital.objects.filter(code=hospital).first()
        if row is None:
            raise CommandError(f"no hospital with code {hospital!r}")
        revoked = services.site_certificate_revoke(task=task, hospital=row)
        if not revoked:
            raise CommandError(f"hospital {hospital} has no live certificate in task {task_id}")
        self.stdout.write(f"revoked {revoked} certificate(s) of {hospital} in task {task_id}")
