from django.apps import AppConfig


class FollowupConfig(AppConfig):
    name = "followup"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # followup builds on diagnosis and joins it through diagnosis' registries (diagnosis never
        # imports followup): completed questionnaires on the patient timeline, scores on the FHIR endpoint
        # and as a feature of similar cases.
        from diagnosis.timeline import patient_timeline_sources

        from . import fhir_scores, similar_scores
        from .selectors import timeline_questionnaires

        patient_timeline_sources.register("questionnaires", timeline_questionnaires)
        fhir_scores.register()
        similar_scores.register()
