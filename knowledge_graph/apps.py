from django.apps import AppConfig


class KnowledgeGraphConfig(AppConfig):
    name = "knowledge_graph"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from portal.backup import BackupPart, backup_part_register

        from . import backup

        # The graph lives in its Bolt server, outside the database and the bucket.
        backup_part_register(BackupPart(
            name="graph", export=backup.graph_backup_export, restore=backup.graph_backup_restore,
            count=backup.graph_backup_count, clear=backup.graph_backup_clear,
        ))
