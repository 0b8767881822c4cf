from django.apps import AppConfig


class FollowupConfig(AppConfig):
    name = "followup"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Questionnaire scores join diagnosis' FHIR endpoint through its registry (diagnosis never imports followup).
        from . import fhir_scores

        fhir_scores.register()
