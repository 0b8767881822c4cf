from django.apps import AppConfig


class FederationConfig(AppConfig):
    name = "federation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from portal.backup import BackupPart, backup_part_register

        from . import backup

        # Task keys, outboxes and logs live on disk, outside the database and the bucket.
        backup_part_register(BackupPart(
            name="federation", export=backup.federation_backup_export, restore=backup.federation_backup_restore,
            count=backup.federation_backup_count, clear=backup.federation_backup_clear,
        ))
