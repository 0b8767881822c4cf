"""A hospital runs its own node: `federation_node enrol` then `federation_node run`, a real SuperNode that dials
out to the coordinator's SuperLink with the key made at the site and trains on the site's own folder."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from federation import services
from federation.fl import ledger as fl_ledger
from federation.models import ClientUpdate, FederatedTask, Participant, SiteCertificate
from tests.federation.conftest import start_runner, wait_for


def _invite(task, hospital) -> str:
    out = io.StringIO()
    call_command("federation_invite", str(task.pk), "--hospital", hospital.code, stdout=out)
    return out.getvalue().strip()


def _node_run(node_dir: Path, superlink: str, log: Path, *extra: str) -> subprocess.Popen:
    """Start `manage.py federation_node run` as the site's own process (its own session)."""
    return subprocess.Popen(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "federation_node", "run", "--out", str(node_dir),
         "--superlink", superlink, *extra],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=settings.BASE_DIR,
        env=dict(os.environ, FEDERATION_THREADS_PER_CLIENT="1"),
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_site_runs_its_own_node_and_signs_its_own_updates(
    live_server, hippocampus_split, federation_settings, free_port, tmp_path
):
    task = services.task_create_local(data_dirs=list(hippocampus_split.hospitals), rounds=2, local_epochs=1,
                                      strategy="fedavg", min_clients=3)
    site = Participant.objects.get(task=task, client_id="fedsite-3")
    # The third hospital's dataset, as its own machine holds it (a copy of the session's split, which
    # other tests share): its enrolment below leaves the coordinator no path to any of it.
    site_data = tmp_path / "site-3" / "hippocampus"
    shutil.copytree(hippocampus_split.hospitals[2], site_data, symlinks=True)
    node_dir = tmp_path / "site-3" / "node"
    out = io.StringIO()
    call_command("federation_node", "enrol", "--coordinator", live_server.url, "--token", _invite(task, site.hospital),
                 "--out", str(node_dir), "--data", str(site_data), stdout=out)
    enrolled = json.loads(out.getvalue())
    assert enrolled["client_id"] == "fedsite-3"
    assert SiteCertificate.objects.get(task=task).node_auth_public_key
    site.refresh_from_db()
    assert site.datasets == [] and site.label_statistics["cases"] == 3

    services.task_start(task=task, user=None, enqueue=False)
    events = []
    runner = start_runner(task, free_port, events)
    wait_for(lambda: any(k == "started" for k, _ in events), 120, "the coordinator")
    started = [d for k, d in events if k == "started"][-1]
    # The runner started SuperNodes only for the two hospitals whose data it was given.
    assert sorted(started["supernode_pids"]) == ["fedsite-1", "fedsite-2"]

    log = tmp_path / "node.log"
    node = _node_run(node_dir, f"127.0.0.1:{free_port}", log)
    try:
        runner.join(timeout=480)
        assert not runner.is_alive(), log.read_text(errors="replace")[-2000:]
        task.refresh_from_db()
        assert task.status == FederatedTask.Status.COMPLETED, task.error
        answered = set(ClientUpdate.objects.filter(round__task=task, participant=site, status="answered")
                       .values_list("round__round_number", flat=True))
        assert answered == {1, 2}
        site.refresh_from_db()
        assert site.node_status in ("online", "offline") and site.node_status_at is not None
        # Its statements verify against the certificate of the key made at the site, not a portal-held one.
        assert services.ledger_verify(task=task)["ok"]
        assert "fedsite-3" not in services.ledger_portal_held_clients(task=task)
        site_key = fl_ledger.load_private_key((node_dir / f"task-{task.pk}" / "node.key").read_bytes())
        raw = site_key.private_bytes_raw()
        for path in services.task_dir(task).rglob("*"):
            if path.is_file():
                assert raw not in path.read_bytes()
        # The node answers the stop a service manager sends, and its ClientApps go with it.
        assert node.poll() is None, log.read_text(errors="replace")[-2000:]
        first = next(json.loads(line) for line in log.read_text(errors="replace").splitlines()
                     if line.startswith('{"task_id"'))
        assert first["client_id"] == "fedsite-3" and first["data"] == [str(site_data.resolve())]
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
            pytest.fail("the node did not stop on SIGTERM")
    assert node.returncode == 0


@pytest.mark.django_db
def test_run_refuses_a_node_that_never_enrolled(tmp_path):
    with pytest.raises(CommandError, match="not enrolled in any task"):
        call_command("federation_node", "run", "--out", str(tmp_path), "--data", str(tmp_path))


def _fake_enrolment(folder: Path, **node) -> Path:
    """Lay out an enrolled task folder as `enrol` leaves it (the keys' content is not read before the SuperNode)."""
    folder.mkdir(parents=True)
    for name in ("node.key", "node-auth", "ca.crt"):
        (folder / name).write_text("x")
    (folder / "node.json").write_text(json.dumps({"task_id": 7, "hospital": "h1", "client_id": "h1", **node}))
    return folder


@pytest.mark.django_db
def test_run_checks_what_the_node_trains_on_before_it_connects(tmp_path):
    _fake_enrolment(tmp_path / "node" / "task-7", superlink="127.0.0.1:9")
    empty = tmp_path / "empty"
    (empty / "imagesTr").mkdir(parents=True)
    (empty / "labelsTr").mkdir()
    with pytest.raises(CommandError, match="say what this node trains on"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"))
    with pytest.raises(CommandError, match="not an MSD folder"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--data", str(tmp_path))
    with pytest.raises(CommandError, match="holds no labelled case"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--data", str(empty))


@pytest.mark.django_db
def test_run_needs_the_superlink_address_and_the_enrolled_keys(tmp_path, hippocampus_split):
    folder = _fake_enrolment(tmp_path / "node" / "task-7", superlink=None)
    data = str(hippocampus_split.hospitals[0])
    with pytest.raises(CommandError, match="no SuperLink address"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--data", data)
    (folder / "node-auth").unlink()
    with pytest.raises(CommandError, match="node-auth is missing"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--data", data,
                     "--superlink", "127.0.0.1:9")
    _fake_enrolment(tmp_path / "node" / "task-8", superlink="127.0.0.1:9")
    with pytest.raises(CommandError, match="several tasks"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--data", data)


@pytest.mark.django_db
def test_run_refuses_a_polling_interval_it_cannot_use_before_it_starts_anything(tmp_path, hippocampus_split, monkeypatch):
    _fake_enrolment(tmp_path / "node" / "task-7", superlink="127.0.0.1:9")
    for value, reason in (("3", "between 0.01 and 0.5 s"), ("soon", "a number of seconds")):
        monkeypatch.setenv("FEDERATION_NODE_POLL_S", value)
        with pytest.raises(CommandError, match=reason):
            call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--data",
                         str(hippocampus_split.hospitals[0]))
    assert not (tmp_path / "node" / "task-7" / "trainer").exists()  # no trainer, no SuperNode was started


@pytest.mark.django_db
def test_a_node_whose_supernode_keeps_failing_gives_up_with_its_status(tmp_path, hippocampus_split):
    # Nothing listens on the SuperLink address and the "keys" are not keys: the SuperNode exits at once.
    _fake_enrolment(tmp_path / "node" / "task-7", superlink="127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"exited with status \d+.*gave up after 1 restart"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--data",
                     str(hippocampus_split.hospitals[0]), "--max-restarts", "1", stdout=io.StringIO(),
                     stderr=io.StringIO())
    assert time.monotonic() - started < 120


# ---------------------------------------------------------------- --dataset: a snapshot of this hospital's portal

from tests.annotation.conftest import hippocampus_studies  # noqa: E402,F401 - fixtures shared with the dataset tests
from tests.annotation.test_training_datasets import approved, label_set  # noqa: E402,F401


@pytest.mark.django_db
def test_run_trains_on_a_training_dataset_of_its_own_portal_checked_against_its_manifest(
    approved, label_set, hospital, annotator, tmp_path  # noqa: F811
):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from annotation import services as annotation_services
    from annotation.interop.msd import dataset_read

    dataset = annotation_services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set,
                                                         user=annotator)
    _fake_enrolment(tmp_path / "node" / "task-7", superlink="127.0.0.1:9", hospital=hospital.code)
    out = io.StringIO()
    # The fake keys make the SuperNode exit at once; what matters here is what it was started on.
    with pytest.raises(CommandError, match="gave up after 0 restart"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--dataset", "hippo-train",
                     "--max-restarts", "0", stdout=out, stderr=io.StringIO())
    started = json.loads(out.getvalue().splitlines()[0])
    folder = tmp_path / "node" / "datasets" / "hippo-train-v1"
    assert started["data"] == [str(folder.resolve())]
    assert len(dataset_read(folder).cases) == dataset.case_count == 3

    with pytest.raises(CommandError, match="dataset_not_found"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--dataset", "other")
    # A snapshot whose stored files no longer match its manifest is refused; the node does not start.
    manifest = json.loads(default_storage.open(f"{dataset.storage_prefix}/manifest.json").read())
    label_file = next(f["path"] for f in manifest["files"] if f["path"].startswith("labelsTr/"))
    default_storage.delete(f"{dataset.storage_prefix}/{label_file}")
    default_storage.save(f"{dataset.storage_prefix}/{label_file}", ContentFile(b"not the label map"))
    out = io.StringIO()
    with pytest.raises(CommandError, match="manifest_mismatch"):
        call_command("federation_node", "run", "--out", str(tmp_path / "node"), "--dataset", "hippo-train", stdout=out)
    assert out.getvalue() == ""


@pytest.mark.django_db(transaction=True)
def test_a_task_with_site_nodes_needs_a_fixed_superlink_port(hippocampus_split, federation_settings):
    from federation.fl import enrolment

    federation_settings.FEDERATION_PORT = 0
    task = services.task_create_local(data_dirs=list(hippocampus_split.hospitals[:2]), rounds=1, local_epochs=1,
                                      strategy="fedavg")
    site = Participant.objects.get(task=task, client_id="fedsite-2")
    _, token = services.site_invite(task=task, hospital=site.hospital)
    services.site_enrol(token=token, csr_pem=enrolment.site_csr_create(site.hospital.code).csr_pem,
                        node_auth_public_key=enrolment.node_auth_key_create()[1].decode())
    services.task_start(task=task, user=None, enqueue=False)

    services.task_execute(task_id=task.pk)

    task.refresh_from_db()
    assert task.status == FederatedTask.Status.FAILED and "FEDERATION_PORT" in task.error
    assert not list(services.task_dir(task).glob("run-*"))
