"""Signal handlers of the portal, connected in ``PortalConfig.ready``; each only calls a service."""

from __future__ import annotations


def on_user_locked_out(sender, request=None, username=None, ip_address=None, **kwargs):
    from .services import account_lockout_record

    account_lockout_record(username=username)


def on_access_attempt_deleted(sender, instance, **kwargs):
    from .services import account_unlock_record

    account_unlock_record(username=instance.username, failures=instance.failures_since_start,
                          attempt_time=instance.attempt_time)


def on_user_pre_save(sender, instance, update_fields=None, raw=False, **kwargs):
    if raw:  # loaddata
        return
    from .services import user_tokens_revoke_if_credentials_change

    user_tokens_revoke_if_credentials_change(user=instance, update_fields=update_fields)
