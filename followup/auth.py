"""JWT for websockets of mobile apps: the browser uses its session cookie; an app that holds a JWT
access token offers the subprotocols ``["yixin.jwt", "<access token>"]`` (a token never goes into the
URL, where proxies and access logs would keep it)."""

from __future__ import annotations

from channels.db import database_sync_to_async

SUBPROTOCOL = "yixin.jwt"


@database_sync_to_async
def _user_for_token(raw: str):
    from rest_framework_simplejwt.authentication import JWTAuthentication
    from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

    auth = JWTAuthentication()
    try:
        return auth.get_user(auth.get_validated_token(raw))
    except (InvalidToken, TokenError, Exception):  # noqa: BLE001 - any failure: not signed in
        return None


class JwtSubprotocolAuthMiddleware:
    """Set ``scope["user"]`` from a JWT offered as a subprotocol when the session gave no user."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        protocols = list(scope.get("subprotocols") or [])
        user = scope.get("user")
        if SUBPROTOCOL in protocols and (user is None or not user.is_authenticated):
            index = protocols.index(SUBPROTOCOL)
            if index + 1 < len(protocols):
                found = await _user_for_token(protocols[index + 1])
                if found is not None:
                    scope = {**scope, "user": found, "subprotocols": [SUBPROTOCOL]}
        return await self.app(scope, receive, send)
