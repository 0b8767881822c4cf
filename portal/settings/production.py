"""Settings for a production deployment behind a TLS-terminating reverse proxy.

Everything of ``base`` (services selected by environment variables), plus: a secret key and the
allowed host names from the environment (no generated default), HTTPS only (the proxy sets
``X-Forwarded-Proto``), secure cookies, HSTS, and shorter sessions. ``manage.py check --deploy``
is clean with these settings (tests/portal/test_production_settings.py).
"""

from .base import *  # noqa: F401,F403
from .base import _required, env

DEBUG = False
SECRET_KEY = _required("DJANGO_SECRET_KEY", "production settings never generate a secret key")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[])
if not ALLOWED_HOSTS:
    _required("DJANGO_ALLOWED_HOSTS", "production settings serve only the hospital's own host names")

# The proxy terminates TLS and says so in X-Forwarded-Proto; it must overwrite a client's header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# The header only allows preloading; the domain enters browsers' lists only when its owner submits it.
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
# A workstation left signed in: the session ends after DJANGO_SESSION_COOKIE_AGE seconds (8 hours,
# one shift) and when the browser closes.
SESSION_COOKIE_AGE = env.int("DJANGO_SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
