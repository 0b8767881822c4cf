"""Notifications: in-app notifications, the external backends (e-mail, SMS) and contact preferences.

The in-app notification is saved first and announced after the transaction commits; a failing
external backend is logged (backend name and notification id only) and does not undo it.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.module_loading import import_string
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import User

from .. import events
from ..models import ContactPreference, Notification, notification_title

logger = logging.getLogger(__name__)


def notification_backends() -> list:
    """Build the external notification backends named in ``FOLLOWUP_NOTIFICATION_BACKENDS``."""
    names = getattr(settings, "FOLLOWUP_NOTIFICATION_BACKENDS", ["followup.notify.ConsoleBackend"])
    options = getattr(settings, "FOLLOWUP_NOTIFICATION_OPTIONS", {})
    return [import_string(name)(**options.get(name, {})) for name in names]


def notification_create(
    *, user_id: int, kind: str, title: str = "", body: str = "", url: str = "", dedupe_key: str = "",
    send_external: bool = True, title_msgid: str = "", title_params: dict | None = None,
) -> Notification | None:
    """Create an in-app notification (idempotent on ``dedupe_key``) and send it through the backends.

    A title given as ``title_msgid`` (an English msgid marked with ``gettext_noop``) and
    ``title_params`` is shown in each reader's language (the pages, the API, the live inbox); the
    e-mail and SMS carry it in the portal's default language (``settings.LANGUAGE_CODE``). A plain
    ``title`` is shown as written.

    Returns None when a notification with the same key exists. A backend that fails is logged
    (backend name and notification id only) and does not undo the in-app notification.
    """
    from ..notify import OutgoingNotification

    if dedupe_key and Notification.objects.filter(user_id=user_id, dedupe_key=dedupe_key).exists():
        return None
    if title_msgid:
        with translation.override(settings.LANGUAGE_CODE):
            title = notification_title(title_msgid, title_params)
    notification = Notification(user_id=user_id, kind=kind, title=title[:200], title_msgid=title_msgid[:200],
                                title_params=dict(title_params or {}), body=body[:500], url=url[:300],
                                dedupe_key=dedupe_key[:120])
    notification.full_clean()
    with transaction.atomic():
        notification.save()
    delivered = ["in_app"]
    if send_external:
        user = User.objects.select_related("followup_contact").get(pk=user_id)
        contact = getattr(user, "followup_contact", None)
        outgoing = OutgoingNotification(
            notification_id=notification.pk, user_id=user_id,
            email=user.email if contact is None or contact.email_enabled else "",
            phone=contact.phone if contact is not None and contact.sms_enabled else "",
            title=notification.title, body=notification.body,
            url=settings.PORTAL_BASE_URL.rstrip("/") + url if url else "")
        for backend in notification_backends():
            try:
                if backend.send(outgoing):
                    delivered.append(backend.channel)
            except Exception:  # noqa: BLE001 - one failing gateway must not stop the others
                logger.exception("notification %s: backend %s failed", notification.pk, type(backend).__name__)
    Notification.objects.filter(pk=notification.pk).update(delivered_via=delivered)
    notification.delivered_via = delivered
    ids = dict(user_id=user_id, notification_id=notification.pk, kind=kind, title=notification.title, url=url,
               title_msgid=notification.title_msgid, title_params=notification.title_params)
    transaction.on_commit(lambda: events.send_notification(**ids))
    return notification


@transaction.atomic
def notification_mark_read(*, user: User, notification: Notification) -> Notification:
    if notification.user_id != user.pk:
        raise ServiceError(_("No such notification."), code="not_found", status_code=404)
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


@transaction.atomic
def contact_preference_set(*, user: User, phone: str = "", email_enabled: bool = True,
                           sms_enabled: bool = True) -> ContactPreference:
    """Set the user's own mobile number and which external channels they want."""
    contact, _created = ContactPreference.objects.get_or_create(user=user)
    contact.phone, contact.email_enabled, contact.sms_enabled = phone.strip(), email_enabled, sms_enabled
    contact.full_clean()
    contact.save()
    return contact
