"""Hospital splits of the real hippocampus MRIs (symbolic links in a temporary folder)."""

import json
import socket
import threading
import time

import pytest

from tests.conftest import shared_data


@pytest.fixture(scope="session")
def hippocampus_split(tmp_path_factory):
    """Three small non-IID hospitals (5, 4, 3 cases) and a held-out set of 4, from MSD Task04."""
    from federation.fl.data import split_non_iid

    source = shared_data("msd_task04_hippocampus")
    return split_non_iid(source, tmp_path_factory.mktemp("hippo-split"), sizes=[5, 4, 3], held_out=4)


@pytest.fixture
def free_port():
    """A TCP port with a free neighbourhood (the SuperNodes use the next few)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 60000:
            return port
    pytest.fail("no free port")


@pytest.fixture
def federation_settings(settings, tmp_path):
    settings.FEDERATION_DIR = tmp_path / "federation"
    settings.FEDERATION_DATASETS_ROOT = tmp_path / "datasets"
    settings.FEDERATION_THREADS_PER_CLIENT = 1
    return settings


def wait_for(predicate, timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 0.3 s; fail the test naming ``what`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def coordinator_status(outbox) -> dict:
    """The coordinator's ``status.json`` (state, round), or {} while it is not written yet."""
    try:
        return json.loads((outbox / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def start_runner(task, port: int, events: list, *, round_timeout_s: float = 60) -> threading.Thread:
    """Run ``services.task_execute`` for ``task`` in a thread (its events appended to ``events``), as the
    Celery worker would, so that the test can kill processes meanwhile.

    ``round_timeout_s`` is how long a round (each SecAgg+ stage) waits for its clients. A killed client
    costs a round that long, but a live one must never miss it: in the first round every ClientApp
    imports PyTorch and MONAI before it trains, and with four of them on two loaded cores 25 s was
    once too short, which failed a round of survivors in CI."""
    from django.db import connection

    from federation import services

    def run():
        try:
            services.task_execute(task_id=task.pk, port=port, round_timeout_s=round_timeout_s, poll_s=0.5,
                                  on_event=lambda kind, data: events.append((kind, data)))
        finally:
            connection.close()

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    return runner
