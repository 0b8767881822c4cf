"""The front end's strings: Django's JavaScript catalogue (domain ``djangojs``), cached per language.

The bundles under ``frontend/src`` call ``gettext``/``ngettext``/``pgettext``/``interpolate`` through
``frontend/src/lib/i18n.js``; the catalogue this view serves defines them with the Chinese of
``locale/zh_Hans/LC_MESSAGES/djangojs.po`` (or the msgids themselves under English).

``templates/base.html`` loads it with :func:`catalogue_url`, whose query string names the page's language
and the compiled catalogues' modification time. That makes each (language, deployment) its own URL, so
browsers and the server-side ``cache_page`` keep it for a day without serving one language's strings to
the other or yesterday's strings after a release (the i18n caching Django documents for
``JavaScriptCatalog``, with the version taken from the ``.mo`` files instead of the Django version).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.urls import reverse
from django.utils import translation
from django.utils.translation import get_language
from django.views.decorators.cache import cache_page
from django.views.decorators.http import last_modified
from django.views.i18n import JavaScriptCatalog

CACHE_SECONDS = 24 * 60 * 60


def catalogue_mtime() -> float:
    """Return the latest modification time (Unix seconds) of the compiled ``djangojs.mo`` catalogues.

    Looks for the languages of ``settings.LANGUAGES`` in ``settings.LOCALE_PATHS`` and every app's
    ``locale`` folder (a few dozen ``stat`` calls); 0.0 when none is compiled.
    """
    folders = [Path(p) for p in settings.LOCALE_PATHS]
    folders += [Path(config.path) / "locale" for config in apps.get_app_configs()]
    locales = [translation.to_locale(code) for code, _name in settings.LANGUAGES]
    times = []
    for folder in folders:
        for locale in locales:
            try:
                times.append((folder / locale / "LC_MESSAGES" / "djangojs.mo").stat().st_mtime)
            except OSError:
                continue
    return max(times, default=0.0)


def catalogue_url() -> str:
    """Return the catalogue's URL for the active language: ``/jsi18n/?l=<language>&v=<mtime>``."""
    return f"{reverse('javascript-catalog')}?l={get_language()}&v={int(catalogue_mtime())}"


def _last_modified(request, *args, **kwargs) -> dt.datetime | None:
    mtime = catalogue_mtime()
    return dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc) if mtime else None


_cached_catalogue = cache_page(CACHE_SECONDS, key_prefix="jsi18n")(JavaScriptCatalog.as_view(domain="djangojs"))


@last_modified(_last_modified)
def javascript_catalog(request):
    """Serve the ``djangojs`` catalogue of the language the URL names (``?l=``), else the request's.

    The URL decides, so a browser's cached copy of one URL is always in one language.
    """
    language = request.GET.get("l", "")
    if language in dict(settings.LANGUAGES):
        with translation.override(language):
            return _cached_catalogue(request)
    return _cached_catalogue(request)

