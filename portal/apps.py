from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = _("Portal and accounts")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from axes.models import AccessAttempt
        from axes.signals import user_locked_out
        from django.db.models.signals import post_delete, pre_save

        from . import signals
        from .models import User

        user_locked_out.connect(signals.on_user_locked_out, dispatch_uid="portal.lockout_audit")
        post_delete.connect(signals.on_access_attempt_deleted, sender=AccessAttempt, dispatch_uid="portal.unlock_audit")
        pre_save.connect(signals.on_user_pre_save, sender=User, dispatch_uid="portal.revoke_tokens")
