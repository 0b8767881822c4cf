"""The Origin check of websockets, which tells browsers from apps.

A browser always sends ``Origin`` on a websocket handshake: it must be one of ALLOWED_HOSTS, or a page
of another site could open a socket with the user's session cookie (cross-site websocket hijacking).
A client without ``Origin`` is not a browser (a mobile app): no other site can act through it, so it is
let through, but without cookies, so that it can sign in only with a JWT offered as a subprotocol
(``followup.auth``).
"""

from __future__ import annotations

from channels.security.websocket import AllowedHostsOriginValidator


class BrowserOriginValidator:
    """ASGI middleware: check ``Origin`` when present; without it, drop the ``Cookie`` header."""

    def __init__(self, app):
        self.app = app
        self.with_origin = AllowedHostsOriginValidator(app)

    async def __call__(self, scope, receive, send):
        headers = scope.get("headers") or []
        if any(name.lower() == b"origin" for name, _ in headers):
            return await self.with_origin(scope, receive, send)
        cookieless = [(name, value) for name, value in headers if name.lower() != b"cookie"]
        return await self.app({**scope, "headers": cookieless}, receive, send)
