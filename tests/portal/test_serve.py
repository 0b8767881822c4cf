"""``python -m portal.serve``: several daphne processes accepting on one socket, stopped together.

Real processes on a kernel-chosen loopback port; the application is the small ASGI app below (it
answers with its process id), so the test needs no database and checks only the launcher.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


async def app(scope, receive, send):
    """Answer every HTTP request with this process's id."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def launcher():
    process = subprocess.Popen([sys.executable, "-m", "portal.serve", "--processes", "2", "-b", "127.0.0.1", "-p", "0",
                                "tests.portal.test_serve:app"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    line = process.stdout.readline()
    match = re.match(r"listening on 127\.0\.0\.1:(\d+) with 2 daphne process\(es\): (\d+) (\d+)", line)
    assert match, f"unexpected first line: {line!r}"
    port, pids = int(match.group(1)), {int(match.group(2)), int(match.group(3))}
    yield process, port, pids
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _get(port: int, timeout_s: float = 60) -> int:
    """Return the process id that answered, retrying while the daphne processes start."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
                return int(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_serves_one_port_from_several_daphne_processes_and_stops_them_together(launcher):
    process, port, pids = launcher

    answered = {_get(port) for _ in range(20)}

    assert _children(process.pid) == pids
    assert answered <= pids and answered  # every answer comes from one of the launcher's processes
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not any(_alive(pid) for pid in pids)


def test_one_process_ending_stops_the_others_with_an_error_code(launcher):
    process, port, pids = launcher
    _get(port)
    victim, other = sorted(pids)

    os.kill(victim, signal.SIGKILL)

    assert process.wait(timeout=30) != 0  # the process manager sees the service fail and restarts it whole
    assert not _alive(other)


def test_refuses_a_port_in_use():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "portal.serve", "-b", "127.0.0.1", "-p",
                                 str(taken.getsockname()[1]), "tests.portal.test_serve:app"],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Address already in use" in result.stderr
