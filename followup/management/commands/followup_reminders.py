"""Run one reminder pass now (what Celery beat runs on its schedule)."""

import datetime as dt
import json

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Send due follow-up reminders and mark overdue items (idempotent); prints the counts as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--date", help="act as if today were this date (YYYY-MM-DD)")

    def handle(self, *args, **options):
        from followup import services

        try:
            today = dt.date.fromisoformat(options["date"]) if options["date"] else None
        except ValueError:
            raise CommandError("--date must be YYYY-MM-DD") from None
        self.stdout.write(json.dumps(services.reminders_dispatch(today=today)))
