"""A site's warm trainer (federation.fl.warm_trainer) serving the ClientApp, on real hippocampus MRIs
(no Django): the ClientApp hands its work over without importing PyTorch, falls back to its own process
when the trainer is gone, and the trainer refuses a peer without its authkey and dies with its SuperNode."""

import dataclasses
import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import time
from multiprocessing.connection import AuthenticationError, Client
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from federation.fl import flower_app
from federation.fl.flower_app import encode_json
from federation.fl.ledger import generate_signing_key, private_key_pem
from federation.fl.local import ModelSpec, arrays_sha256, initial_arrays
from federation.fl.polling import PollingGrid
from federation.fl.warm_trainer import (
    TrainerUnavailable, main, serve, start_trainer, trainer_paths, trainer_request, write_authkey,
)

ROOT = Path(__file__).resolve().parents[2]
SPEC = ModelSpec()


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _wait_ready(socket_path: Path, authkey_path: Path, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return trainer_request(socket_path, authkey_path, {"op": "status"})
        except TrainerUnavailable:
            time.sleep(0.2)
    pytest.fail("the trainer never answered")


@pytest.fixture(scope="module")
def site(hippocampus_split, tmp_path_factory):
    """A site with a signing key and a live trainer watching a stand-in SuperNode (a ``sleep``)."""
    folder = tmp_path_factory.mktemp("site")
    key = folder / "node.key"
    key.write_bytes(private_key_pem(generate_signing_key()))
    supernode = subprocess.Popen(["sleep", "3600"])
    trainer = start_trainer(folder / "trainer", [hippocampus_split.hospitals[0]], threads=1, watch_pid=supernode.pid,
                            env=_env(), log_path=folder / "trainer.log")
    socket_path, authkey_path = trainer_paths(folder / "trainer")
    try:
        _wait_ready(socket_path, authkey_path)
        yield {"folder": folder, "key": key, "data": hippocampus_split.hospitals[0], "supernode": supernode,
               "trainer": trainer, "socket": socket_path, "authkey": authkey_path}
    finally:
        supernode.kill()
        supernode.wait()
        try:
            trainer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            trainer.kill()
            trainer.wait()


def _node_config(site, socket_path=None) -> dict:
    return {"client-id": "site-a", "data-dir": str(site["data"]), "signing-key": str(site["key"]), "threads": 1,
            "trainer-socket": str(socket_path or site["socket"]), "trainer-authkey": str(site["authkey"])}


def _train(site, *, socket_path=None, run_config=None):
    """Call the ClientApp's train function here, as Flower's ClientApp process would."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    try:
        context = Context(run_id=1, node_id=7, node_config=_node_config(site, socket_path), state=RecordDict(),
                          run_config={"seed": 0, "local-epochs": 1, "mu": 0.0, **(run_config or {})})
        arrays = initial_arrays(SPEC)
        msg = Message(RecordDict({"arrays": ArrayRecord(arrays), "config": ConfigRecord(
            {"server-round": 1, "local-epochs": 1, "task-id": "t1", "spec": encode_json(dataclasses.asdict(SPEC))})}),
            dst_node_id=7, message_type="train")
        return arrays, flower_app.train(msg, context)
    finally:
        TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None


CLIENTAPP_SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity
    from federation.fl import flower_app
    from federation.fl.local import ModelSpec, arrays_sha256

    node_config, arrays_path = json.loads(sys.argv[1]), sys.argv[2]
    import numpy as np
    with np.load(arrays_path) as f:
        arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    context = Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(),
                      run_config={"seed": 0, "local-epochs": 1, "mu": 0.0})
    spec = flower_app.encode_json(dataclasses.asdict(ModelSpec()))
    msg = Message(RecordDict({"arrays": ArrayRecord(arrays), "config": ConfigRecord(
        {"server-round": 1, "local-epochs": 1, "task-id": "t1", "spec": spec})}), dst_node_id=7, message_type="train")
    reply = flower_app.train(msg, context)
    query = flower_app.query(Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=7, message_type="query"), context)
    sent = reply.content["arrays"].to_numpy_ndarrays()
    print(json.dumps({"torch": "torch" in sys.modules, "monai": "monai" in sys.modules,
                      "trainer": reply.content["config"]["trainer"], "sha_ok": arrays_sha256(sent) == reply.content["config"]["sha256"],
                      "num_examples": reply.content["metrics"]["num-examples"], "changed": any(not np.array_equal(a, b) for a, b in zip(arrays, sent)),
                      "stats": json.loads(query.content["config"]["label-stats"])}))
""")


def test_the_clientapp_hands_its_work_to_the_trainer_without_importing_torch(site, tmp_path):
    before = trainer_request(site["socket"], site["authkey"], {"op": "status"})["requests"]
    weights = tmp_path / "global.npz"
    np.savez(weights, *initial_arrays(SPEC))
    out = subprocess.run([sys.executable, "-c", CLIENTAPP_SCRIPT, json.dumps(_node_config(site)), str(weights)],
                         capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["torch"] is False and result["monai"] is False
    assert result["trainer"] == "warm"
    assert result["sha_ok"] and result["changed"]
    assert result["num_examples"] == 5 and result["stats"]["cases"] == 5
    # The trainer answered the training and the label statistics.
    assert trainer_request(site["socket"], site["authkey"], {"op": "status"})["requests"] == before + 3


def test_a_clientapp_whose_trainer_is_gone_trains_in_its_own_process_and_says_so(site, tmp_path, caplog):
    before = trainer_request(site["socket"], site["authkey"], {"op": "status"})["requests"]
    with caplog.at_level(logging.INFO, logger="flwr"):
        received, reply = _train(site, socket_path=tmp_path / "gone.sock")
    assert reply.content["config"]["trainer"] == "in-process"
    sent = reply.content["arrays"].to_numpy_ndarrays()
    assert reply.content["config"]["sha256"] == arrays_sha256(sent)
    assert int(reply.content["metrics"]["num-examples"]) == 5
    assert "warm trainer unreachable" in caplog.text
    assert str(site["data"]) not in caplog.text and "hippocampus_" not in caplog.text
    assert trainer_request(site["socket"], site["authkey"], {"op": "status"})["requests"] == before + 1


def test_a_run_that_asks_for_in_process_training_ignores_the_trainer(site):
    before = trainer_request(site["socket"], site["authkey"], {"op": "status"})["requests"]
    _, reply = _train(site, run_config={"in-process-training": True})
    assert reply.content["config"]["trainer"] == "in-process"
    assert trainer_request(site["socket"], site["authkey"], {"op": "status"})["requests"] == before + 1


def test_the_trainer_refuses_a_peer_without_its_authkey(site, tmp_path):
    assert stat.S_IMODE(site["socket"].stat().st_mode) == 0o600
    assert stat.S_IMODE(site["authkey"].stat().st_mode) == 0o600
    with pytest.raises(AuthenticationError):
        Client(str(site["socket"]), family="AF_UNIX", authkey=b"not the key")
    wrong = tmp_path / "wrong.key"
    write_authkey(wrong)
    with pytest.raises(TrainerUnavailable):
        trainer_request(site["socket"], wrong, {"op": "status"})
    # It keeps serving the ClientApp that holds the key.
    assert trainer_request(site["socket"], site["authkey"], {"op": "status"})["pid"] == site["trainer"].pid


def test_the_trainer_reports_bad_requests_as_errors(site):
    with pytest.raises(RuntimeError, match="unknown op"):
        trainer_request(site["socket"], site["authkey"], {"op": "delete-everything"})
    with pytest.raises(RuntimeError, match="KeyError"):
        trainer_request(site["socket"], site["authkey"], {"op": "train", "arrays": []})


def test_the_trainer_dies_with_its_supernode(hippocampus_split, tmp_path):
    supernode = subprocess.Popen(["sleep", "3600"])
    # A deep folder: the socket goes to a short private folder instead (Unix socket paths are short).
    folder = tmp_path / ("deep-" * 20) / "trainer"
    trainer = start_trainer(folder, [hippocampus_split.hospitals[1]], threads=1, watch_pid=supernode.pid, env=_env(),
                            preload_patch_size=None)
    socket_path, authkey_path = trainer_paths(folder)
    assert len(str(socket_path)) <= 100 and socket_path.parent != folder
    try:
        assert _wait_ready(socket_path, authkey_path)["pid"] == trainer.pid
        assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
        supernode.kill()
        supernode.wait()
        assert trainer.wait(timeout=30) == 0
        assert not socket_path.exists() and not socket_path.parent.exists()
    finally:
        supernode.kill()
        trainer.kill()
        trainer.wait()


def test_the_trainer_refuses_to_start_without_its_key_or_data(tmp_path, hippocampus_split):
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        serve(tmp_path / "t.sock", empty, [hippocampus_split.hospitals[0]])
    with pytest.raises(FileNotFoundError):
        serve(tmp_path / "t.sock", tmp_path / "missing.key", [hippocampus_split.hospitals[0]])
    key = tmp_path / "k"
    write_authkey(key)
    with pytest.raises(FileNotFoundError, match="missing"):
        serve(tmp_path / "t.sock", key, [tmp_path / "no-such-folder"])
    with pytest.raises(SystemExit):
        main(["--socket", "s", "--authkey-file", str(key), "--data-dir", str(tmp_path), "--preload-patch-size", "1,2"])


def test_the_coordinators_polling_interval_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        PollingGrid(grid=None, interval_s=0)
