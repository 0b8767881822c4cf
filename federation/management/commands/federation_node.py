"""Site side of a federation: a hospital's own node, enrolled with its own keys, training where its images are.

``enrol`` generates an Ed25519 key pair (ledger signatures) with its CSR and an EC P-384 key (Flower
SuperNode authentication) here, posts only the CSR and the EC public key with the one-time token, and
keeps both private keys (mode 0600) with the certificate, the federation CA and ``node.json`` (task,
hospital, client id, the SuperLink address) in ``--out``/task-<id>/. No private key leaves this machine.

``run`` starts this hospital's Flower SuperNode, which dials out to the coordinator's SuperLink over TLS
(verified against the federation CA; no inbound port is opened here) and authenticates with the node
key. Its ClientApps train on ``--data`` (MSD folders) or ``--dataset`` (a training-dataset snapshot of
this portal, materialised and hash-checked first) and sign each update with the hospital's own key. It
runs in the foreground until stopped (SIGTERM/SIGINT stop the SuperNode too) and exits with its status.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

ENROL_PATH = "/api/federation/enrol/"


def node_dir(out: Path, task_id: int) -> Path:
    """Return the folder of one task's enrolled identity under a node's data directory."""
    return Path(out) / f"task-{int(task_id)}"


NODE_FILE = "node.json"
REFUSED_EXIT_CODE = 305  # flower-supernode's exit status when the SuperLink refuses its key (Flower 1.41)


def enrolled_task_dir(out: Path, task_id: int | None) -> Path:
    """Return the enrolled task folder to run: ``task_id``'s, or the only one under ``out``.

    Raises
    ------
    CommandError
        Nothing is enrolled there, several tasks are and none was named, or the named one is missing.
    """
    if task_id is not None:
        folder = node_dir(out, task_id)
        if not (folder / NODE_FILE).exists():
            raise CommandError(f"this node is not enrolled in task {task_id} (no {folder / NODE_FILE}): "
                               "run `federation_node enrol` first")
        return folder
    folders = sorted(p.parent for p in Path(out).glob(f"task-*/{NODE_FILE}"))
    if not folders:
        raise CommandError(f"this node is not enrolled in any task under {out}: run `federation_node enrol` first")
    if len(folders) > 1:
        names = ", ".join(f.name.removeprefix("task-") for f in folders)
        raise CommandError(f"this node is enrolled in several tasks ({names}): pass --task ID")
    return folders[0]


class Command(BaseCommand):
    help = ("A hospital's federation node. `enrol`: certify keys made here with the coordinator's one-time token; "
            "`run`: train in the federation on this hospital's own data.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        enrol = sub.add_parser("enrol", help="generate the node's key and CSR here and get the CSR certified")
        enrol.add_argument("--coordinator", required=True, help="the coordinator portal's base URL")
        enrol.add_argument("--token", required=True, help="the token printed by federation_invite")
        enrol.add_argument("--out", type=Path, default=None,
                           help="the node's data directory (default FEDERATION_NODE_DIR)")
        enrol.add_argument("--hospital", default=None, help="this hospital's code (default: the one in the token)")
        enrol.add_argument("--cacert", type=Path, default=None, help="CA bundle for an https coordinator")
        enrol.add_argument("--timeout", type=float, default=30.0)
        self._data_arguments(enrol)

        run = sub.add_parser("run", help="run this hospital's SuperNode: dial out to the coordinator and train here")
        run.add_argument("--task", type=int, default=None, help="the enrolled task (default: the only one)")
        run.add_argument("--out", type=Path, default=None,
                         help="the node's data directory (default FEDERATION_NODE_DIR)")
        run.add_argument("--superlink", default=None,
                         help="the coordinator's SuperLink as HOST:PORT (default: the address given at enrolment)")
        run.add_argument("--threads", type=int, default=None,
                         help="CPU threads per ClientApp (default FEDERATION_THREADS_PER_CLIENT)")
        run.add_argument("--max-restarts", type=int, default=20,
                         help="restarts of a SuperNode that exited (refused or crashed) before this node gives up "
                              "(default 20; each waits twice as long as the last, from 2 s up to 15 s)")
        run.add_argument("--wait-for-enrolment", action="store_true",
                         help="if nothing is enrolled yet, wait (checking every 10 s) instead of failing: "
                              "the Procfile's `node` process starts before the hospital enrols")
        self._data_arguments(run)

    @staticmethod
    def _data_arguments(parser) -> None:
        data = parser.add_mutually_exclusive_group()
        data.add_argument("--data", type=Path, action="append", default=None,
                          help="an MSD/nnU-Net folder (imagesTr/, labelsTr/) to train on; repeat for several")
        data.add_argument("--dataset", default=None, help="a training dataset of this hospital's portal, by name")
        parser.add_argument("--dataset-version", type=int, default=None, help="its version (default: the latest)")

    def handle(self, *args, action, **options):
        if action == "enrol":
            self._enrol(**options)
        elif action == "run":
            self._run(**options)

    def _enrol(self, *, coordinator, token, out, hospital, cacert, timeout, **options):
        from django.conf import settings

        from federation.fl.enrolment import (
            certificate_fingerprint,
            certificate_load,
            node_auth_key_create,
            private_key_write,
            site_csr_create,
        )

        hospital = hospital or token.rpartition(".")[0]
        if not hospital:
            raise CommandError("the token names no hospital: pass --hospital CODE")
        out = Path(out or settings.FEDERATION_NODE_DIR)
        out.mkdir(parents=True, exist_ok=True)
        # What the node trains on, when given here, is checked now and remembered for `run`.
        data_choice = {}
        if options.get("data") or options.get("dataset"):
            dirs = self._data_dirs(out=out, data=options.get("data"), dataset=options.get("dataset"),
                                   version=options.get("dataset_version"), hospital_code=hospital)
            data_choice = ({"data": [str(d) for d in dirs]} if options.get("data") else
                           {"dataset": options["dataset"], "dataset_version": options.get("dataset_version")})
        identity = site_csr_create(hospital)
        node_auth_private, node_auth_public = node_auth_key_create()
        payload = {"token": token, "csr": identity.csr_pem.decode(), "node_auth_public_key": node_auth_public.decode("ascii")}
        if data_choice:
            # Only counts per label travel: with them the enrolment is this hospital's acceptance.
            from federation.fl.data import label_statistics, merge_label_statistics

            try:
                payload["label_statistics"] = merge_label_statistics([label_statistics(d) for d in dirs])
            except ValueError as exc:
                raise CommandError(f"the data cannot be read: {exc}") from exc
        body = json.dumps(payload).encode()
        request = urllib.request.Request(coordinator.rstrip("/") + ENROL_PATH, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        context = ssl.create_default_context(cafile=str(cacert)) if cacert else None
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
                reason = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                reason = f"HTTP {exc.code}"
            raise CommandError(f"the coordinator refused the enrolment ({reason})") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise CommandError(f"cannot reach the coordinator at {coordinator}: {exc}") from exc
        try:
            cert = certificate_load(answer["certificate"])
            certificate_load(answer["ca_certificate"])
            task_id = int(answer["task_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CommandError("the coordinator's answer holds no certificate") from exc
        if cert.public_key() != identity.private_key.public_key():
            raise CommandError("the coordinator certified another key than this node's")
        folder = node_dir(out, task_id)
        try:
            private_key_write(folder / "node.key", identity.private_key)
        except FileExistsError as exc:
            raise CommandError(
                f"{folder / 'node.key'} exists: this node is already enrolled in task {task_id}"
            ) from exc
        fd = os.open(folder / "node-auth", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(node_auth_private)
        (folder / "node-auth.pub").write_bytes(node_auth_public + b"\n")
        (folder / "node.crt").write_text(answer["certificate"])
        (folder / "ca.crt").write_text(answer["ca_certificate"])
        node = {"task_id": task_id, "hospital": hospital, "client_id": answer.get("client_id") or hospital,
                "superlink": answer.get("superlink"), "coordinator": coordinator,
                "fingerprint_sha256": certificate_fingerprint(cert), **data_choice}
        (folder / NODE_FILE).write_text(json.dumps(node, indent=1))
        self.stdout.write(json.dumps({"task_id": task_id, "hospital": hospital, "dir": str(folder),
                                      "fingerprint_sha256": node["fingerprint_sha256"],
                                      "client_id": node["client_id"], "superlink": node["superlink"]}))

    def _data_dirs(self, *, out: Path, data, dataset, version, hospital_code: str) -> list[Path]:
        """Return the MSD folders the node trains on: ``--data`` checked, or ``--dataset`` materialised.

        Raises
        ------
        CommandError
            Neither given; a folder without ``imagesTr``/``labelsTr`` or with no case; a dataset that is
            not this hospital's, or whose files do not match its manifest.
        """
        if data:
            folders = [Path(d).resolve() for d in data]
            for folder in folders:
                if not (folder / "imagesTr").is_dir() or not (folder / "labelsTr").is_dir():
                    raise CommandError(f"{folder} is not an MSD folder (it needs imagesTr/ and labelsTr/)")
                if not any((folder / "labelsTr").glob("*.nii*")):
                    raise CommandError(f"{folder} holds no labelled case (labelsTr/ is empty)")
            return folders
        if dataset:
            return [self._dataset_materialise(out=out, name=dataset, version=version, hospital_code=hospital_code)]
        raise CommandError("say what this node trains on: --data DIR (MSD layout) or --dataset NAME")

    def _dataset_materialise(self, *, out: Path, name: str, version, hospital_code: str) -> Path:
        """Download this hospital's training dataset ``name`` from its own portal's storage, hash-checked.

        It lands in ``out/datasets/<name>-v<version>/``, fetched afresh each time (a folder left by an
        earlier run is replaced), so the node trains only on files that match the snapshot's manifest.
        """
        import shutil

        from annotation import selectors as annotation_selectors
        from annotation import services as annotation_services
        from portal.api_errors import ServiceError
        from portal.models import Hospital

        hospital = Hospital.objects.filter(code=hospital_code).first()
        if hospital is None:
            raise CommandError(f"this portal has no hospital {hospital_code}: --dataset reads the hospital's own "
                               "portal (run the node next to it), or pass --data DIR")
        try:
            dataset = annotation_selectors.training_dataset_get(hospital=hospital, name=name, version=version)
            dest = Path(out) / "datasets" / f"{dataset.name}-v{dataset.version}"
            if dest.exists():
                shutil.rmtree(dest)
            folder = annotation_services.training_dataset_materialise(dataset=dataset, dest=dest)
        except ServiceError as exc:
            raise CommandError(f"training dataset {name}: {exc.message} ({exc.code})") from exc
        return folder.resolve()

    def _run(self, *, task, out, superlink, threads, max_restarts, data, dataset, dataset_version,
             wait_for_enrolment=False, **_):
        from django.conf import settings

        out = Path(out or settings.FEDERATION_NODE_DIR)
        if wait_for_enrolment:
            announced = False
            while not list(Path(out).glob(f"task-*/{NODE_FILE}")):
                if not announced:
                    self.stderr.write(f"no task enrolled under {out} yet: waiting (run `federation_node enrol`)")
                    announced = True
                time.sleep(10)
        folder = enrolled_task_dir(out, task)
        try:
            node = json.loads((folder / NODE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"{folder / NODE_FILE} is unreadable: {exc}") from exc
        for name in ("node.key", "node-auth", "ca.crt"):
            if not (folder / name).exists():
                raise CommandError(f"{folder / name} is missing: enrol this node again with a new token")
        address = superlink or node.get("superlink")
        if not address or ":" not in address:
            raise CommandError("the coordinator gave no SuperLink address at enrolment: pass --superlink HOST:PORT")
        if not data and not dataset:  # what enrolment remembered
            data = [Path(d) for d in node.get("data") or []] or None
            dataset, dataset_version = node.get("dataset"), node.get("dataset_version")
        dirs = self._data_dirs(out=out, data=data, dataset=dataset, version=dataset_version,
                               hospital_code=node["hospital"])
        for path in map(str, dirs):
            if os.pathsep in path or '"' in path:
                raise CommandError(f"dataset folder {path!r} contains {os.pathsep!r} or a double quote")
        threads = int(threads or settings.FEDERATION_THREADS_PER_CLIENT)
        from federation.fl.flower_supernode import poll_interval
        from federation.fl.launcher import HOST, free_port, kill_flower_helpers, supernode_command
        from federation.fl.warm_trainer import start_trainer, trainer_paths

        # The warm trainer (one per node, restarted with it) keeps PyTorch and the cases loaded for the ClientApps.
        trainer_dir = folder / "trainer"
        trainer_socket, trainer_authkey = trainer_paths(trainer_dir)
        node_config = (f'client-id="{node["client_id"]}" data-dir="{os.pathsep.join(map(str, dirs))}" '
                       f'signing-key="{folder / "node.key"}" threads={threads} '
                       f'trainer-socket="{trainer_socket}" trainer-authkey="{trainer_authkey}"')

        bin_dir = Path(sys.executable).parent
        # The SuperNode's own Runtime API (for its ClientApps) listens on loopback only.
        runtime_address = f"{HOST}:{free_port()}"
        try:
            poll_interval()  # refused here, with the reason, rather than by every SuperNode start
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        argv = [*supernode_command(bin_dir), "--root-certificates", str(folder / "ca.crt"),
                "--superlink", address, "--auth-supernode-private-key", str(folder / "node-auth"),
                "--host", HOST, "--port", runtime_address.rsplit(":", 1)[1], "--node-config", node_config]
        home = folder / "flwr-home"
        home.mkdir(exist_ok=True)
        env = dict(os.environ, FLWR_HOME=str(home), OMP_NUM_THREADS=str(threads))
        env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
        env["PYTHONPATH"] = str(settings.BASE_DIR) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")

        stopping = False
        process = None
        trainer = None

        def stop(signum, _frame):
            nonlocal stopping
            stopping = True
            for child in (process, trainer):
                if child is not None:
                    try:
                        os.killpg(child.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        restarts, backoff = 0, 2.0
        try:
            while True:
                process = subprocess.Popen(argv, env=env, start_new_session=True)
                trainer = start_trainer(trainer_dir, dirs, threads=threads, watch_pid=process.pid, env=env,
                                        log_path=folder / "trainer.log")
                self.stdout.write(json.dumps({"task_id": node["task_id"], "client_id": node["client_id"],
                                              "superlink": address, "pid": process.pid, "restarts": restarts,
                                              "runtime_address": runtime_address,
                                              "data": [str(d) for d in dirs]}))
                self.stdout.flush()
                code = process.wait()
                for group in (process.pid, trainer.pid):
                    try:
                        os.killpg(group, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
                try:
                    trainer.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    trainer.kill()
                    trainer.wait()
                kill_flower_helpers(runtime_address)  # its ClientApps run in sessions of their own
                if stopping:
                    return
                # Refused (a coordinator that restarted and has not registered this node's key again yet,
                # or a revoked node) or crashed: try again later, a bounded number of times.
                reason = (" (the coordinator refused this node's key: not registered yet, or revoked)"
                          if code == REFUSED_EXIT_CODE else "")
                if restarts >= max_restarts:
                    raise CommandError(f"the SuperNode exited with status {code}{reason}; "
                                       f"gave up after {restarts} restart(s)")
                self.stderr.write(f"the SuperNode exited with status {code}{reason}; restarting in {backoff:.0f} s")
                restarts += 1
                deadline = time.monotonic() + backoff
                while time.monotonic() < deadline and not stopping:
                    time.sleep(0.2)
                if stopping:
                    return
                # A SuperNode that crashed stays "online" at the SuperLink until two of its 30 s heartbeats
                # are missed, and a new one with the same key is refused until then: a refusal is retried
                # every 5 s at most, so that the node is back within seconds of that (the coordinator waits
                # for a lost node once, ``rejoin-grace-s``); a crash backs off to 15 s.
                backoff = min(backoff * 2, 5.0 if code == REFUSED_EXIT_CODE else 15.0)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
