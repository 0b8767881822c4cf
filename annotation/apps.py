from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = _("Annotation")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from portal.api_errors import input_error_register

        from .imaging.errors import ImagingError

        # An unreadable or unsafe upload is the client's error: the API answers 400 with its code.
        input_error_register(ImagingError)

        from portal.backup import backup_seed_rows_register

        # Migrations register the built-in models (no weights): a freshly migrated portal still counts
        # as empty for ``manage.py restore``.
        backup_seed_rows_register("annotation.SegmentationModel", weights_file="")
