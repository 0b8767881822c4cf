"""WSGI entry point (management commands and tools; the portal itself is served by daphne)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.base")
application = get_wsgi_application()
