"""Production settings: ``check --deploy`` is clean, the API docs work offline and need a login, and
every page carries a Content-Security-Policy that allows only the portal's own scripts and styles."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from django.urls import reverse

from tests.conftest import REPO_DIR
from tests.factories import UserFactory

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "portal.settings.production",
    "DJANGO_SECRET_KEY": "x7!k2p@9qz$w4v#t8r^m1n&b5c*j3h(g6f)d0s-a_l+e=yuio-Q8Z3",
    "DJANGO_ALLOWED_HOSTS": "portal.hospital.example",
    "API_DOCS_PUBLIC": "",
}


def _run_production(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, **PRODUCTION_ENV, "YIXIN_VAR_DIR": str(tmp_path)}
    env.pop("API_DOCS_PUBLIC")
    return subprocess.run([sys.executable, *args], cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=300)


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = _run_production(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_base_settings_fail_check_deploy(tmp_path):
    """The check has teeth: the embedded defaults (no HTTPS) are reported."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings.base", "YIXIN_VAR_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    env = {**os.environ, **PRODUCTION_ENV, "YIXIN_VAR_DIR": str(tmp_path), "DJANGO_SECRET_KEY": ""}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO_DIR, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr


PROBE = """
import django, json
django.setup()
from django.conf import settings
from django.test import Client
# Behind the proxy: it terminates TLS and says so in X-Forwarded-Proto.
client = Client(HTTP_HOST="portal.hospital.example", HTTP_X_FORWARDED_PROTO="https")
schema = client.get("/api/schema/")
docs = client.get("/api/docs/")
plain = Client(HTTP_HOST="portal.hospital.example").get("/login/")
login = client.get("/login/")
print(json.dumps({
    "schema": schema.status_code, "docs": docs.status_code, "plain_http": plain.status_code,
    "plain_location": plain.get("Location", ""), "hsts": login.get("Strict-Transport-Security", ""),
    "csp": login.get("Content-Security-Policy", ""), "session_age": settings.SESSION_COOKIE_AGE,
    "cookies_secure": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""


def test_production_requires_a_login_for_the_schema_and_redirects_to_https(tmp_path):
    result = _run_production(["-c", PROBE], tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["schema"] == 401 and seen["docs"] == 401
    assert seen["plain_http"] == 301 and seen["plain_location"].startswith("https://portal.hospital.example/")
    assert "max-age=31536000" in seen["hsts"] and "includeSubDomains" in seen["hsts"]
    assert "script-src 'self'" in seen["csp"] and "unsafe-inline" not in seen["csp"]
    assert seen["session_age"] == 8 * 3600 and seen["cookies_secure"] == [True, True]


@pytest.mark.django_db
def test_the_docs_page_references_only_the_portals_own_static_files(client):
    client.force_login(UserFactory())
    page = client.get(reverse("docs"))
    assert page.status_code == 200
    html = page.content.decode()
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in u for u in urls)
    assert urls and all(u.startswith("/static/") or u.startswith("/api/docs/") for u in urls), urls
    assert "cdn" not in html.lower()
    assert "<script>" not in html  # the split view: its script is a separate, same-origin file
    script = client.get(reverse("docs") + "?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    for url in urls:
        if url.startswith("/static/"):
            from django.contrib.staticfiles import finders

            assert finders.find(url.removeprefix("/static/")), url


@pytest.mark.django_db
def test_anonymous_clients_get_no_schema_by_default(client):
    assert client.get(reverse("schema")).status_code == 401


@pytest.mark.django_db
def test_pages_carry_a_policy_without_inline_scripts(client):
    response = client.get(reverse("login"))
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # no inline script element
    assert not re.search(r"\son[a-z]+=", html)  # no event-handler attribute
    assert not re.search(r"\sstyle=", html)
