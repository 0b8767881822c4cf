"""``manage.py ensure_bucket``: create the configured S3 bucket if it is missing (the Procfile and
``./yixin demo`` run it at start-up, so the first import never meets a missing bucket)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the configured object-storage bucket when it does not exist (waits for the store to start)."

    def add_arguments(self, parser):
        parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the store (default 60)")

    def handle(self, *args, **options):
        from django.conf import settings

        from portal.storage import StorageUnavailable, storage_ensure_bucket

        try:
            storage_ensure_bucket(timeout_s=options["wait"])
        except StorageUnavailable as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"bucket {settings.S3_BUCKET!r} ready at {settings.S3_ENDPOINT_URL}")
