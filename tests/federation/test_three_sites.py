"""Three hospitals, each with its own portal (its own PostgreSQL database, bucket and data directory) and its
own node, train with a coordinator that never holds an image (issue 17).

Each site is a separate set of processes: its portal imports its hippocampus MRIs, an annotator and a doctor
submit and approve the label maps, and a training dataset is built (``tests/federation/site_portal.py``,
the real services); ``federation_node enrol --dataset`` certifies its keys with the coordinator's one-time
token (sending label counts only) and ``federation_node run`` trains. The coordinator is this test's
process: its live server takes the enrolments and its runner drives the SuperLink. One site's node is
killed mid-round and restarted, as the hospital's service manager would.

Each site's enrolment and node run in network namespaces of their own (``portal.embedded.netns
--relay``): the node's only route to the coordinator is the SuperLink port (the enrolment's, the
coordinator's web port), besides the site's own database and object store. On this one machine those
two are the same servers as the coordinator's, holding the site's own database and bucket; at a real
site they are the site's own servers (docs/federation.md, "Site nodes").
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation.models import Study
from federation import services
from federation.fl.launcher import kill_flower_helpers
from federation.models import ClientUpdate, FederatedTask, Participant
from portal.services import hospital_create
from tests.e2e.conftest import CHROMIUM, csp_violations
from tests.federation.conftest import coordinator_status, start_runner, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SITES = ("site-a", "site-b", "site-c")
LABELS = [{"index": 1, "name": "Anterior", "color": "#ff0000"}, {"index": 2, "name": "Posterior", "color": "#00ff00"}]
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".dcm", ".nrrd", ".mha", ".mhd")


def _pg():
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the three-site test gives each site a PostgreSQL database of its own: set DATABASE_URL to "
                    "a PostgreSQL server")
    return {"host": db["HOST"] or "127.0.0.1", "port": int(db["PORT"] or 5432), "user": db["USER"] or "postgres",
            "password": db["PASSWORD"] or None}


@pytest.fixture
def site_databases():
    """One empty PostgreSQL database per site (dropped afterwards); yields their URLs."""
    import psycopg

    pg = _pg()
    names = [f"yixin_site_{os.getpid()}_{i}" for i in range(len(SITES))]
    with psycopg.connect(dbname="postgres", autocommit=True, **pg) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    auth = pg["user"] + (f":{pg['password']}" if pg["password"] else "")
    yield [f"postgres://{auth}@{pg['host']}:{pg['port']}/{name}" for name in names]
    with psycopg.connect(dbname="postgres", autocommit=True, **pg) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _count(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def _manage(env: dict, *args: str, relay: list[int], **popen) -> subprocess.Popen:
    """Start ``manage.py ARGS`` in a new network namespace whose only routes out are the ``relay`` ports."""
    relays = [arg for port in relay for arg in ("--relay", str(port))]
    return subprocess.Popen([sys.executable, "-m", "portal.embedded.netns", *relays, "--", sys.executable,
                             str(Path(settings.BASE_DIR) / "manage.py"), *args], env=env, cwd=settings.BASE_DIR,
                            **popen)


def _ports_open_in_namespace_of(pid: int, ports: dict[str, int]) -> dict[str, bool]:
    """Which of ``ports`` accept a connection on 127.0.0.1 in the network namespace of process ``pid``."""
    probe = ("import json, sys; from portal.embedded.netns import namespace_enter, port_open_here; "
             "namespace_enter(int(sys.argv[1])); ports = json.loads(sys.argv[2]); "
             "print(json.dumps({name: port_open_here(port) for name, port in ports.items()}))")
    result = subprocess.run([sys.executable, "-c", probe, str(pid), json.dumps(ports)], cwd=settings.BASE_DIR,
                            capture_output=True, text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def _bucket_keys(bucket: str, since=None) -> set[str]:
    """The keys in ``bucket`` (written at or after ``since``, an aware datetime, when given)."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=settings.S3_ENDPOINT_URL, aws_access_key_id=settings.S3_ACCESS_KEY_ID,
                          aws_secret_access_key=settings.S3_SECRET_ACCESS_KEY, region_name=settings.S3_REGION,
                          config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
    keys = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(o["Key"] for o in page.get("Contents", []) if since is None or o["LastModified"] >= since)
    return keys


def _task_page_node_cells(url: str, session_cookie: dict, timeout_s: float = 90) -> list[str]:
    """Open the task page in Debian's headless Chromium (reloading every 5 s) until it shows three site-run
    nodes online; return the text of their node cells. Playwright runs here, in a block of its own, so its
    event loop is gone before the test reads the database again."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (scripts/setup.sh installs it)")
    messages: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(locale="zh-CN")
        context.add_cookies([session_cookie])
        page = context.new_page()
        page.on("console", lambda msg: messages.append(msg.text))
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                page.goto(url)
                cells = page.locator('#clients td.node[data-runs-at="site"]')
                texts = [cells.nth(i).inner_text() for i in range(cells.count())]
                if len(texts) == 3 and page.locator('#clients td.node[data-runs-at="site"] .badge-ready').count() == 3:
                    break
                assert time.monotonic() < deadline, page.locator("#clients").inner_text()
                time.sleep(5)
        finally:
            browser.close()
    assert not csp_violations(messages), csp_violations(messages)
    return texts


def test_three_hospitals_with_their_own_portals_and_nodes_train_without_moving_an_image(
    live_server, hippocampus_split, federation_settings, free_port, site_databases, annotator, tmp_path
):
    federation_settings.FEDERATION_PORT = free_port
    federation_settings.FEDERATION_SUPERLINK_ADDRESS = f"127.0.0.1:{free_port}"
    # A site's own services (on this machine, the shared servers holding its own database and bucket).
    site_services = [_pg()["port"], urlsplit(settings.S3_ENDPOINT_URL).port]
    web_port = urlsplit(live_server.url).port
    # Object stores keep whole seconds: a key written during the test is stamped at or after this.
    test_start = timezone.now().replace(microsecond=0)

    # --- each hospital's own portal: import, annotate, approve, build a training dataset
    envs, procs = {}, {}
    for i, (code, url) in enumerate(zip(SITES, site_databases)):
        root = tmp_path / code
        envs[code] = dict(os.environ, DATABASE_URL=url, S3_BUCKET=f"yixin-{code}-{os.getpid()}",
                          FEDERATION_DIR=str(root / "federation"), FEDERATION_NODE_DIR=str(root / "node"),
                          FEDERATION_DATASETS_ROOT=str(root / "datasets"), FEDERATION_THREADS_PER_CLIENT="1")
        script = (f"{sys.executable} manage.py migrate -v0 && {sys.executable} manage.py ensure_bucket && "
                  f"{sys.executable} -m tests.federation.site_portal --hospital {code} "
                  f"--data {hippocampus_split.hospitals[i]} --dataset hippocampus")
        procs[code] = subprocess.Popen(["bash", "-c", script], env=envs[code], cwd=settings.BASE_DIR,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    built = {}
    for code, proc in procs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-3000:]
        built[code] = json.loads(output.strip().splitlines()[-1])
        assert built[code]["cases"] == len(os.listdir(hippocampus_split.hospitals[SITES.index(code)] / "labelsTr"))

    # --- the coordinator: invite the three hospitals, each enrols its own node with its dataset
    hospitals = [hospital_create(code=code, name=f"Hospital {code}") for code in SITES]
    task = services.task_create(user=annotator, name="三院海马体", label_table=LABELS, rounds=3, local_epochs=1,
                                min_clients=2, invite=hospitals)
    for code, hospital in zip(SITES, hospitals):
        out = io.StringIO()
        call_command("federation_invite", str(task.pk), "--hospital", code, stdout=out)
        enrol = _manage(envs[code], "federation_node", "enrol", "--coordinator", live_server.url,
                        "--token", out.getvalue().strip(), "--dataset", "hippocampus", relay=[web_port, *site_services],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, _ = enrol.communicate(timeout=180)
        assert enrol.returncode == 0, output[-3000:]
        participant = Participant.objects.get(task=task, hospital=hospital)
        assert participant.status == "accepted" and participant.datasets == []
        assert participant.label_statistics["cases"] == built[code]["cases"]

    # --- the nodes start before the coordinator: they wait, refused or unanswered, until it is up
    logs = {code: tmp_path / f"{code}-node.log" for code in SITES}

    def node_start(code):
        return _manage(envs[code], "federation_node", "run", relay=[free_port, *site_services],
                       stdout=open(logs[code], "ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def supernode_pid(code):
        return [json.loads(line) for line in logs[code].read_text(errors="replace").splitlines()
                if line.startswith('{"task_id"')][-1]

    nodes = {code: node_start(code) for code in SITES}
    try:
        services.task_start(task=task, user=None, enqueue=False)
        events = []
        runner = start_runner(task, free_port, events)
        outbox = services.task_dir(task) / "outbox"
        wait_for(lambda: coordinator_status(outbox).get("state") == "training"
                 and coordinator_status(outbox).get("round") == 1, 300, "round 1")
        # Each site's SuperNode lives in a network namespace of its own, where the SuperLink port and the
        # site's own services are reachable and nothing else of the coordinator is: not its web port, its
        # broker or its graph.
        namespaces = {code: os.readlink(f"/proc/{supernode_pid(code)['pid']}/ns/net") for code in SITES}
        assert len(set(namespaces.values())) == 3 and os.readlink("/proc/self/ns/net") not in namespaces.values()
        for code in SITES:
            reachable = _ports_open_in_namespace_of(supernode_pid(code)["pid"], {
                "superlink": free_port, "database": site_services[0], "object_store": site_services[1],
                "coordinator_web": web_port, "broker": urlsplit(settings.CELERY_BROKER_URL).port or 6379,
                "graph": urlsplit(settings.NEO4J_URI).port})
            assert reachable == {"superlink": True, "database": True, "object_store": True,
                                 "coordinator_web": False, "broker": False, "graph": False}, (code, reachable)
        # site-c's machine loses its node mid-round (the command, its SuperNode and its ClientApps) ...
        started = supernode_pid("site-c")
        os.killpg(nodes["site-c"].pid, signal.SIGKILL)
        os.killpg(started["pid"], signal.SIGKILL)
        kill_flower_helpers(started["runtime_address"])
        nodes["site-c"].wait(timeout=30)
        # ... and its service manager starts it again.
        nodes["site-c"] = node_start("site-c")

        # While round 3 trains, a doctor of the coordinating hospital opens the task page in Chromium: three
        # site-run nodes, all online.
        wait_for(lambda: coordinator_status(outbox).get("state") == "training"
                 and coordinator_status(outbox).get("round") == 3, 420, "round 3")
        client = Client()
        client.force_login(annotator)
        url = live_server.url + reverse("federation:task-detail", args=[task.pk])
        cells = _task_page_node_cells(url, {"name": settings.SESSION_COOKIE_NAME, "url": live_server.url,
                                            "value": client.cookies[settings.SESSION_COOKIE_NAME].value})
        assert len(cells) == 3 and all("在线" in text for text in cells), cells

        runner.join(timeout=600)
        assert not runner.is_alive(), {c: logs[c].read_text(errors="replace")[-1500:] for c in SITES}
        task.refresh_from_db()
        assert task.status == FederatedTask.Status.COMPLETED, task.error
        assert task.current_round == 3
        for code in SITES:
            assert nodes[code].poll() is None, logs[code].read_text(errors="replace")[-2000:]
    finally:
        for proc in nodes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in nodes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    status = {(u.round.round_number, u.participant.client_id): u.status
              for u in ClientUpdate.objects.filter(round__task=task).select_related("round", "participant")}
    # Round 1 went on without the lost node. The SuperLink takes its restarted SuperNode back once the old
    # one has missed two heartbeats (about a minute), and round 2 waited for it (rejoin-grace-s): it answered
    # rounds 2 and 3, however short the rounds.
    assert status[(1, "site-a")] == status[(1, "site-b")] == "answered" and status[(1, "site-c")] == "absent"
    assert all(status[(r, code)] == "answered" for r in (2, 3) for code in SITES)
    # Every hospital statement verifies against the certificate of the key made at that hospital.
    assert services.ledger_verify(task=task)["ok"]
    assert not set(SITES) & set(services.ledger_portal_held_clients(task=task))

    # The coordinator holds no image: no image file in its federation folder, none in its bucket (it got
    # only round weights), no study in its database; each site's database holds its own studies.
    assert not [p for p in Path(settings.FEDERATION_DIR).rglob("*") if p.name.endswith(IMAGE_SUFFIXES)]
    new_keys = _bucket_keys(settings.S3_BUCKET, since=test_start)
    assert new_keys and all(k.startswith(f"federation/task-{task.pk}/") for k in new_keys), sorted(new_keys)[:10]
    assert not [k for k in new_keys if k.endswith(IMAGE_SUFFIXES)]
    assert Study.objects.count() == 0
    for code, url in zip(SITES, site_databases):
        assert _count(url, "select count(*) from annotation_study") == built[code]["cases"]

    # The task page shows the three sites' own nodes and the rounds each answered.
    client = Client()
    client.force_login(annotator)
    page = client.get(reverse("federation:task-detail", args=[task.pk])).content.decode()
    assert page.count('data-runs-at="site"') == 3
    assert all(Participant.objects.get(task=task, client_id=code).node_status_at is not None for code in SITES)
