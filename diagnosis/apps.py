from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DiagnosisConfig(AppConfig):
    name = "diagnosis"
    verbose_name = _("Diagnosis")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # annotation calls diagnosis only through these hooks (measure after a run, export rows, the study page).
        from . import hooks

        hooks.register()
