"""``manage.py backup --out DIR|s3://bucket/prefix``: back up the whole portal."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from portal.backup import LocationError, portal_backup_create


class Command(BaseCommand):
    help = (
        "Back up the whole portal (database, object storage, knowledge graph, federation keys and outboxes) "
        "to a new directory or s3://bucket/prefix, with a manifest of SHA-256 hashes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True,
                            help="a new or empty directory, or s3://bucket/prefix (not the portal's own bucket)")

    def handle(self, *args, out: str, **options):
        try:
            result = portal_backup_create(out=out)
        except (LocationError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        counts = result.counts
        rows = sum(counts["database"].values())
        parts = ", ".join(f"{name} {value}" for name, value in sorted(counts.items())
                          if name not in {"database", "objects"})
        self.stdout.write(self.style.SUCCESS(
            f"Backup written to {result.location}: {result.files} files; {rows} database rows, "
            f"{counts['objects']['objects']} objects ({counts['objects']['bytes']} bytes); {parts}."
        ))
