from django.apps import AppConfig


class FollowupConfig(AppConfig):
    name = "followup"
    default_auto_field = "django.db.models.BigAutoField"
