"""Coordinator side of site enrolment: print a one-time token with which a hospital's node enrols."""

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError

from portal.api_errors import ServiceError


class Command(BaseCommand):
    help = (
        "Print a one-time enrolment token for HOSPITAL's node in task TASK_ID (stored only as its SHA-256, "
        "expiring after --hours). The node runs `federation_node enrol --coordinator URL --token TOKEN`."
    )

    def add_arguments(self, parser):
        parser.add_argument("task_id", type=int)
        parser.add_argument("--hospital", required=True, help="the invited hospital's code")
        parser.add_argument("--hours", type=float, default=24.0, help="validity of the token (default 24)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, task_id, hospital, hours, **options):
        from federation import services
        from federation.models import FederatedTask
        from portal.models import Hospital

        task = FederatedTask.objects.filter(pk=task_id).first()
        if task is None:
            raise CommandError(f"no federated task {task_id}")
        row = Hospital.objects.filter(code=hospital).first()
        if row is None:
            raise CommandError(f"no hospital with code {hospital!r}")
        if not 0 < hours <= 24 * 30:
            raise CommandError("--hours must be more than 0 and at most 720")
        try:
            invitation, token = services.site_invite(task=task, hospital=row, ttl=dt.timedelta(hours=hours))
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        if options["json"]:
            self.stdout.write(json.dumps({"task_id": task.pk, "hospital": row.code, "token": token,
                                          "expires_at": invitation.expires_at.isoformat()}))
        else:
            self.stdout.write(token)
