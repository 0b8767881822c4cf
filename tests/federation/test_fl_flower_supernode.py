"""The SuperNode entry point that shortens Flower's fixed idle sleeps (federation.fl.flower_supernode).

Every federated test starts its SuperNodes through it (LocalFederation's default, and `federation_node run`),
so the SuperNode it runs is Flower's own and works; these tests check what it changes and what it refuses.
"""

import subprocess
import sys

import pytest
from flwr.supernode import start_client_internal

from federation.fl.flower_supernode import DEFAULT_POLL_S, poll_interval, shorten_idle_polling
from federation.fl.launcher import supernode_command


def test_the_polling_interval_comes_from_the_environment_within_bounds():
    assert poll_interval({}) == DEFAULT_POLL_S == 0.2
    assert poll_interval({"FEDERATION_NODE_POLL_S": "0.05"}) == 0.05
    with pytest.raises(ValueError, match="between 0.01 and 0.5 s"):
        poll_interval({"FEDERATION_NODE_POLL_S": "3"})
    with pytest.raises(ValueError, match="between 0.01 and 0.5 s"):
        poll_interval({"FEDERATION_NODE_POLL_S": "0"})
    with pytest.raises(ValueError, match="a number of seconds"):
        poll_interval({"FEDERATION_NODE_POLL_S": "fast"})


def test_only_the_supernode_loops_sleeps_are_capped(monkeypatch):
    import time

    monkeypatch.setattr(start_client_internal, "time", start_client_internal.time)  # restored after the test
    slept = []
    module = shorten_idle_polling(0.2, sleep=slept.append)
    module.time.sleep(3)  # the idle wait after an empty pull
    module.time.sleep(0.5)  # the wait for a ClientApp's reply
    module.time.sleep(0.05)
    assert slept == [0.2, 0.2, 0.05]
    # The rest of `time` is the real one, and nothing outside that module changed.
    assert module.time.time is time.time and module.time.monotonic is time.monotonic
    assert time.sleep is not module.time.sleep


def test_another_flower_whose_loop_changed_is_refused(monkeypatch):
    monkeypatch.setattr(start_client_internal, "time", start_client_internal.time)
    monkeypatch.setattr("inspect.getsource", lambda obj: "while True:\n    time.sleep(1)\n")
    with pytest.raises(RuntimeError, match="no longer idles with time.sleep"):
        shorten_idle_polling(0.2)


def test_the_entry_point_runs_flowers_own_supernode_command(tmp_path):
    command = supernode_command(tmp_path, short_polling=True)
    assert command == [sys.executable, "-m", "federation.fl.flower_supernode"]
    assert supernode_command(tmp_path, short_polling=False) == [str(tmp_path / "flower-supernode")]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "usage: flower-supernode" in shown.stdout
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120,
                             env={"FEDERATION_NODE_POLL_S": "5", "PATH": "/usr/bin"})
    assert refused.returncode != 0 and "between 0.01 and 0.5 s" in refused.stderr
