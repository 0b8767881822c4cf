"""A real portal for browser tests: daphne and a Celery worker as separate processes, with their own
database (a fresh PostgreSQL database when DATABASE_URL is PostgreSQL, else SQLite), bucket and Redis
database, next to the session's SeaweedFS and Redis."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from portal import embedded
from portal.embedded.credentials import CREDENTIALS_FILE
from tests.conftest import REPO_DIR

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_DIR / "test-artifacts"
E2E_PASSWORD = "e2e-password-2026"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_url_with_db(url: str, db: int) -> str:
    base, _, tail = url.rpartition("/")
    return f"{base}/{db}" if tail.isdigit() else f"{url.rstrip('/')}/{db}"


@pytest.fixture(scope="session")
def portal_server(embedded_services):
    """Start daphne and a Celery worker; yield the base URL. Creates the demo hospital and users.

    One portal serves the whole session: browser tests see each other's data."""
    with _portal_started(embedded_services, bucket="yixin-e2e") as server:
        yield server


@pytest.fixture(scope="module")
def own_portal_server(embedded_services):
    """A portal of the test module's own (its own database, bucket and processes), for a test that must
    see no data but its own; otherwise as ``portal_server``."""
    with _portal_started(embedded_services, bucket=f"yixin-e2e-{uuid.uuid4().hex[:8]}") as server:
        yield server


@contextlib.contextmanager
def _portal_started(embedded_services, *, bucket: str):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    if not (REPO_DIR / "static" / "build" / "study.js").exists():
        pytest.skip("the front-end bundle is not built (npm ci && npm run build)")
    settings = embedded_services
    workdir = Path(tempfile.mkdtemp(prefix="yixin-e2e-"))
    # The portal's processes use the session's embedded services, so they need the same credentials.
    credentials_file = Path(settings.VAR_DIR) / CREDENTIALS_FILE
    if credentials_file.exists():
        shutil.copy2(credentials_file, workdir / CREDENTIALS_FILE)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings.test", YIXIN_VAR_DIR=str(workdir), S3_BUCKET=bucket,
               PYTHONUNBUFFERED="1", TORCH_NUM_THREADS="2")
    db_name = None
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        db_name = f"yixin_e2e_{uuid.uuid4().hex[:8]}"
        base, _, _ = database_url.rpartition("/")
        env["DATABASE_URL"] = f"{base}/{db_name}"
        subprocess.run(["psql", f"{base}/postgres", "-c", f"CREATE DATABASE {db_name}"], check=True, capture_output=True)
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'e2e.sqlite3'}"
    env["REDIS_URL"] = _redis_url_with_db(os.environ.get("REDIS_URL") or settings.REDIS_URL, 5)
    port = _free_port()
    # Browser-test portals of other checkouts may share this broker database: a queue of its own keeps
    # another checkout's worker from taking (and failing) this portal's tasks.
    env["CELERY_TASK_DEFAULT_QUEUE"] = f"e2e-{uuid.uuid4().hex[:12]}"
    manage = [sys.executable, str(REPO_DIR / "manage.py")]
    processes: list[subprocess.Popen] = []
    try:
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, check=True, cwd=REPO_DIR)
        subprocess.run([*manage, "ensure_bucket"], env=env, check=True, cwd=REPO_DIR, capture_output=True)
        seeded = subprocess.run([*manage, "demo", "--users-only", "--password", E2E_PASSWORD], env=env,
                                cwd=REPO_DIR, capture_output=True, text=True)
        if seeded.returncode != 0:
            raise RuntimeError(f"manage.py demo --users-only failed:\n{seeded.stdout}\n{seeded.stderr}")
        for name, argv in [
            ("worker", [sys.executable, "-m", "celery", "-A", "portal", "worker", "--loglevel", "INFO",
                        "--concurrency", "1", "--hostname", f"e2e-{port}@%h"]),
            ("web", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"]),
        ]:
            log = open(workdir / f"{name}.log", "wb")
            processes.append(subprocess.Popen(argv, env=env, cwd=REPO_DIR, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        embedded.wait_for_port(port, timeout_s=60, process=processes[-1])
        # database_url: tests that run management commands against the same portal use it.
        # celery_queue: a command run against this portal must publish to the queue its worker takes.
        yield {"url": f"http://127.0.0.1:{port}", "password": E2E_PASSWORD, "logs": workdir,
               "database_url": env["DATABASE_URL"], "redis_url": env["REDIS_URL"],
               "celery_queue": env["CELERY_TASK_DEFAULT_QUEUE"], "bucket": bucket}
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if db_name:
            base, _, _ = database_url.rpartition("/")
            subprocess.run(["psql", f"{base}/postgres", "-c", f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"],
                           capture_output=True)
        for log in workdir.glob("*.log"):
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(log, ARTIFACTS / f"e2e-{log.name}")
        shutil.rmtree(workdir, ignore_errors=True)


def csp_violations(lines: list[str]) -> list[str]:
    """Console lines in which chromium reports that the Content-Security-Policy blocked something."""
    return [line for line in lines if "Content Security Policy" in line]


@pytest.fixture
def browser_page(request):
    """A Playwright page in Debian's headless chromium; a screenshot is kept when the test fails."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True, locale="zh-CN")
        page = context.new_page()
        messages: list[str] = []
        page.on("console", lambda msg: messages.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: messages.append(f"pageerror: {exc}"))
        page.console_lines = messages
        yield page
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            (ARTIFACTS / f"{request.node.name}.console.txt").write_text("\n".join(messages))
        context.close()
        browser.close()
        # Every page the test visited ran under the portal's policy: nothing it needs may be blocked.
        assert not csp_violations(messages), csp_violations(messages)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def wait_for_js(page, expression: str, *, timeout: int) -> None:
    """Poll a JavaScript expression (or function source) in ``page`` until it is truthy.

    Playwright's ``page.wait_for_function`` polls with ``eval`` inside the page, which the portal's
    Content-Security-Policy (``script-src 'self'``, no ``'unsafe-eval'``) forbids. ``page.evaluate`` goes
    through the DevTools protocol, which the page's policy does not govern, so the pages are tested under
    the policy they ship with. An exception in the expression propagates, as it does in wait_for_function.

    Raises
    ------
    AssertionError
        When the expression is still falsy after ``timeout`` milliseconds.
    """
    import time

    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} ms: {expression}")
        page.wait_for_timeout(100)


@pytest.fixture
def starter_graph_loaded(portal_server):
    """The shipped starter graph in the graph the portal reads (the session's FalkorDB); yields its client."""
    from django.conf import settings

    from knowledge_graph import services
    from knowledge_graph.graph import graph_client_create, store
    from knowledge_graph.importers import batch_write, qasystem_parse

    client = graph_client_create(uri=settings.NEO4J_URI, user=settings.NEO4J_USER,
                                 password=settings.NEO4J_PASSWORD, database=settings.NEO4J_DATABASE)
    try:
        store.graph_clear(client)
        batch_write(client, qasystem_parse(services.STARTER_GRAPH_PATH), source="starter")
        yield client
    finally:
        store.graph_clear(client)
        client.close()
