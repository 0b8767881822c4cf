"""``manage.py restore --from DIR|s3://bucket/prefix [--force]``: restore a backup into an empty portal."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from portal.backup import BackupInvalid, LocationError, RestoreIncomplete, RestoreRefused, portal_backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup made by 'manage.py backup'. Every file is checked against the manifest before "
        "anything is written; a portal that holds data is refused unless --force is given, which replaces it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="source", required=True, help="the backup's directory or s3://bucket/prefix")
        parser.add_argument("--force", action="store_true",
                            help="replace whatever this portal holds (database, objects, graph, federation files)")

    def handle(self, *args, source: str, force: bool, **options):
        try:
            result = portal_backup_restore(source=source, force=force)
        except BackupInvalid as exc:
            raise CommandError(f"Backup refused, nothing was changed: {exc}") from exc
        except RestoreRefused as exc:
            raise CommandError(f"Restore refused, nothing was changed: {exc}") from exc
        except LocationError as exc:
            raise CommandError(str(exc)) from exc
        except RestoreIncomplete as exc:
            raise CommandError(f"Restore written but incomplete: {exc}. Run it again with --force.") from exc
        rows = sum(result.counts["database"].values())
        replaced = f" (replaced: {', '.join(sorted(result.cleared))})" if result.cleared else ""
        self.stdout.write(self.style.SUCCESS(
            f"Restored {result.location}{replaced}: {result.files} files checked; {rows} database rows, "
            f"{result.counts['objects']['objects']} objects."
        ))
