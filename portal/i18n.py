"""The language of a websocket connection, chosen as LocaleMiddleware chooses a request's."""

from __future__ import annotations

from types import SimpleNamespace

from django.conf import settings
from django.utils import translation


def language_from_scope(scope: dict) -> str:
    """Return the language code (one of ``settings.LANGUAGES``) of an ASGI websocket scope.

    The same order as :func:`django.utils.translation.get_language_from_request` without the URL
    prefix: the language cookie the language switcher sets (``settings.LANGUAGE_COOKIE_NAME``), then
    the ``Accept-Language`` header, then ``settings.LANGUAGE_CODE``. Channels' ``CookieMiddleware``
    (part of ``AuthMiddlewareStack``) puts the cookies in ``scope["cookies"]``; without it the header
    is parsed here.
    """
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    cookies = scope.get("cookies")
    if cookies is None:
        from django.http.cookie import parse_cookie

        cookies = parse_cookie(headers.get("cookie", ""))
    shim = SimpleNamespace(COOKIES=cookies, META={"HTTP_ACCEPT_LANGUAGE": headers.get("accept-language", "")},
                           path_info="/")
    return translation.get_language_from_request(shim, check_path=False) or settings.LANGUAGE_CODE
