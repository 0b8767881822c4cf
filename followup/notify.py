"""Pluggable external notification backends (e-mail, SMS). The in-app notification is always stored;
these only forward it. Selected by ``FOLLOWUP_NOTIFICATION_BACKENDS`` (default: the console).

A backend is a class with a ``channel`` name and ``send(notification) -> bool``. Backends never write
the notification's text to a log: the console backend prints to standard output, which is the
developer's terminal, and names the recipient by user id only.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class OutgoingNotification:
    """What a backend receives: ids, the recipient's contact details, a short title and body, a link."""

    notification_id: int
    user_id: int
    email: str
    phone: str
    title: str
    body: str
    url: str


class ConsoleBackend:
    """Print notifications to standard output (the default, for development and the demo)."""

    channel = "console"

    def __init__(self, stream=None):
        self.stream = stream

    def send(self, notification: OutgoingNotification) -> bool:
        stream = self.stream or sys.stdout
        stream.write(f"[notification {notification.notification_id} → user {notification.user_id}] "
                     f"{notification.title} {notification.url}\n")
        stream.flush()
        return True


class EmailBackend:
    """Send through Django's configured e-mail backend (``EMAIL_*`` settings) to the user's address."""

    channel = "email"

    def __init__(self, from_email: str | None = None):
        self.from_email = from_email

    def send(self, notification: OutgoingNotification) -> bool:
        if not notification.email:
            return False
        from django.core.mail import send_mail

        body = notification.body + (f"\n\n{notification.url}" if notification.url else "")
        return send_mail(notification.title, body, self.from_email, [notification.email]) == 1


class SmsGatewayBackend:
    """POST ``{"to", "text"}`` as JSON to an SMS gateway (an HTTP service outside the product).

    Parameters
    ----------
    url : str
        The gateway's endpoint (``FOLLOWUP_SMS_GATEWAY_URL``).
    token : str
        Sent as ``Authorization: Bearer <token>`` (``FOLLOWUP_SMS_GATEWAY_TOKEN``).
    timeout_s : float
        Per request.

    Raises
    ------
    RuntimeError
        When the gateway answers other than 2xx (the caller logs and carries on).
    """

    channel = "sms"

    def __init__(self, url: str = "", token: str = "", timeout_s: float = 5.0):
        self.url = url
        self.token = token
        self.timeout_s = timeout_s

    def send(self, notification: OutgoingNotification) -> bool:
        if not notification.phone or not self.url:
            return False
        text = notification.title + (f" {notification.url}" if notification.url else "")
        request = urllib.request.Request(
            self.url, data=json.dumps({"to": notification.phone, "text": text[:300]}).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - configured URL
            if not 200 <= response.status < 300:
                raise RuntimeError(f"SMS gateway answered {response.status}")
        return True
