"""``python -m portal.embedded.netns --relay PORT -- PROGRAM``: a program in a network namespace of its own
whose only routes out are the relayed ports (the three-site federation test runs each hospital's node so)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from django.conf import settings

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="network namespaces are Linux's")


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def _netns(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "portal.embedded.netns", *args], cwd=settings.BASE_DIR,
                          capture_output=True, text=True, timeout=60, **kwargs)


def test_only_the_relayed_port_reaches_the_host_and_bytes_cross_both_ways():
    relayed, other = _listener(), _listener()
    probe = textwrap.dedent(f"""
        import socket, sys
        from portal.embedded.netns import port_open_here
        with socket.create_connection(("127.0.0.1", {relayed.getsockname()[1]}), timeout=10) as s:
            s.sendall(b"ping")
            reply = s.recv(4)
        sys.exit(0 if reply == b"pong" and not port_open_here({other.getsockname()[1]}) else 7)
    """)
    import threading

    def serve():
        conn, _ = relayed.accept()
        with conn:
            assert conn.recv(4) == b"ping"
            conn.sendall(b"pong")

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        result = _netns("--relay", str(relayed.getsockname()[1]), "--", sys.executable, "-c", probe)
        assert result.returncode == 0, result.stderr
    finally:
        relayed.close()
        other.close()


def test_the_program_exit_status_is_passed_on():
    result = _netns("--relay", "5", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert result.returncode == 3, result.stderr


def test_sigterm_reaches_the_program():
    proc = subprocess.Popen([sys.executable, "-m", "portal.embedded.netns", "--relay", "5", "--", sys.executable,
                             "-c", "import time; print('up', flush=True); time.sleep(60)"],
                            cwd=settings.BASE_DIR, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("args, message", [
    (["--relay", "0", "--", "true"], "within 1–65535"),
    (["--relay", "80", "--relay", "80", "--", "true"], "distinct"),
    (["--relay", "http", "--", "true"], "takes a port number"),
])
def test_bad_relays_are_refused_before_anything_runs(args, message):
    result = _netns(*args)
    assert result.returncode != 0 and message in result.stderr, result.stderr
