from django.apps import AppConfig


class FollowupConfig(AppConfig):
    name = "followup"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Completed questionnaires appear on diagnosis' patient timeline (followup builds on diagnosis).
        from diagnosis.timeline import patient_timeline_sources

        from .selectors import timeline_questionnaires

        patient_timeline_sources.register("questionnaires", timeline_questionnaires)
