"""Start a federation on one machine: a coordinator (SuperLink + ServerApp) and hospital SuperNodes
as separate processes on 127.0.0.1, every link over TLS and every SuperNode authenticated.

Flower 1.41 deployment engine: ``flower-superlink`` serves its Fleet, Control and Runtime APIs on one
port with the federation's server certificate (``--ssl-certfile/--ssl-keyfile/--ssl-ca-certfile``)
and ``--enable-supernode-auth``; a hospital's public key is registered with ``flwr supernode
register`` (and revoked with ``flwr supernode unregister``) before its ``flower-supernode`` connects
with ``--root-certificates`` (the federation CA) and ``--auth-supernode-private-key``; a SuperNode
whose key is not registered is refused (it exits with Flower's exit code 305). ``flwr run`` submits
the app. Runtime dependency installation stays off (it would pull a CUDA build of torch).
Each process gets its own ``FLWR_HOME`` so hospitals share no files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .certs import FederationPaths

__all__ = ["LocalFederation", "FederationError", "APP_CONFIG_DEFAULTS", "free_port", "kill_flower_helpers"]

HOST = "127.0.0.1"

APP_CONFIG_DEFAULTS: dict = {
    "task-id": "",
    "num-rounds": 1,
    "start-round": 1,
    "local-epochs": 1,
    "strategy": "fedavg",
    "mu": 0.01,
    "min-clients": 1,
    "round-timeout-s": 600.0,
    "rejoin-grace-s": 60.0,
    "wait-clients-s": 120.0,
    "outbox": "",
    "initial-weights": "",
    "validation-dir": "",
    "spec": "",
    "seed": 0,
    "reputation-epsilon": 0.7,
    "indirect-reputation": "",
    "min-reputation": 0.25,
    "select-k": 0,
    "dp-clipping-norm": 0.0,
    "dp-epsilon": 0.0,
    "dp-delta": 0.0,
    "secure-aggregation": False,
    "secagg-clipping-range": 8.0,
    "secagg-reconstruction-threshold": 0.5,
    # The server optimiser of the aggregate (federation.fl.server_opt); these are its dataclass defaults.
    "server-optimizer": "none",
    "server-lr": 1.0,
    "server-momentum": 0.9,
    "server-beta1": 0.9,
    "server-beta2": 0.99,
    "server-tau": 1e-3,
    "in-process-training": False,
}


class FederationError(RuntimeError):
    """A federation process failed to start or a Flower command failed."""


def supernode_command(bin_dir: Path, *, short_polling: bool = True) -> list[str]:
    """The command that starts a SuperNode (its arguments follow): Flower's own ``flower-supernode`` in
    ``bin_dir``, or with ``short_polling`` that command run by this Python through
    :mod:`federation.fl.flower_supernode` (its folder must be on the child's ``PYTHONPATH``)."""
    if short_polling:
        return [sys.executable, "-m", "federation.fl.flower_supernode"]
    return [str(bin_dir / "flower-supernode")]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def kill_flower_helpers(address: str) -> None:
    """SIGKILL the Flower helper processes (SuperExec, ServerApp, ClientApp) serving ``address``.

    Flower starts them in sessions of their own, so killing a SuperLink's or SuperNode's process
    group leaves them running; they are found by the Runtime API address on their command line.
    """
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = [a.decode(errors="replace") for a in argv if a]
        if any(n.rsplit("/", 1)[-1] in ("flower-superexec", "flwr-serverapp", "flwr-clientapp") for n in names) and address in names:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


@dataclass
class LocalFederation:
    """The processes of one federation on this machine.

    Parameters
    ----------
    paths : FederationPaths
        CA, server certificate and client keys (see :func:`federation.fl.certs.create_federation_material`).
    work_dir : Path
        Logs, per-process ``FLWR_HOME`` folders, the SuperLink state database and the app folder.
    port : int
        The SuperLink's single port; each SuperNode's local Runtime API gets a free port of its own.
    python_path : str
        Put on ``PYTHONPATH`` so the ServerApp/ClientApp processes import :mod:`federation.fl`.
    superlink_host : str
        The address the SuperLink binds to (loopback unless hospitals' own nodes dial in from elsewhere;
        the server certificate must name it).
    warm_trainers : bool
        Start a warm trainer (:mod:`federation.fl.warm_trainer`) next to each SuperNode (default); its
        socket and authkey live in ``work_dir/trainer-<client>/`` and reach the ClientApp in the node config.
    """

    paths: FederationPaths
    work_dir: Path
    port: int
    python_path: str
    threads_per_client: int = 1
    superlink_host: str = HOST
    superlink: subprocess.Popen | None = None
    supernodes: dict = field(default_factory=dict)
    node_ids: dict = field(default_factory=dict)
    node_ports: dict = field(default_factory=dict)
    trainers: dict = field(default_factory=dict)
    warm_trainers: bool = True
    #: Start each SuperNode through :mod:`federation.fl.flower_supernode` (0.2 s idle polling instead of
    #: Flower's fixed 3 s); False runs Flower's own ``flower-supernode`` (the benchmark's Flower baseline).
    short_polling: bool = True

    def __post_init__(self) -> None:
        self.work_dir = Path(self.work_dir)
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.bin_dir = Path(sys.executable).parent

    # -- processes ---------------------------------------------------------------------------

    def _env(self, name: str) -> dict:
        home = self.work_dir / "flwr-home" / name
        home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["FLWR_HOME"] = str(home)
        env["PYTHONPATH"] = self.python_path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PATH"] = str(self.bin_dir) + os.pathsep + env.get("PATH", "")
        env["OMP_NUM_THREADS"] = str(self.threads_per_client)
        env.setdefault("FLWR_TELEMETRY_ENABLED", "0")
        return env

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.work_dir / "logs" / f"{name}.log", "ab")
        try:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self._env(name), start_new_session=True)
        finally:
            log.close()

    def start_superlink(self, timeout_s: float = 60.0) -> None:
        """Start the coordinator's SuperLink with TLS and SuperNode authentication.

        Raises
        ------
        FederationError
            It exited or did not listen within ``timeout_s``.
        """
        from portal.embedded import wait_for_port

        p = self.paths
        argv = [
            str(self.bin_dir / "flower-superlink"),
            "--ssl-ca-certfile", str(p.ca_cert), "--ssl-certfile", str(p.server_cert), "--ssl-keyfile", str(p.server_key),
            "--enable-supernode-auth", "--disable-runtime-dependency-installation",
            "--host", self.superlink_host, "--port", str(self.port),
            "--database", str(self.work_dir / "superlink-state.db"),
        ]
        self.superlink = self._spawn("superlink", argv)
        try:
            wait_for_port(self.port, host=self.superlink_host, timeout_s=timeout_s, process=self.superlink)
        except (TimeoutError, RuntimeError) as exc:
            raise FederationError(f"SuperLink did not start: {exc}") from exc
        self._write_cli_config()

    def _write_cli_config(self) -> None:
        home = self.work_dir / "flwr-home" / "cli"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            "[superlink]\ndefault = \"local\"\n\n[superlink.local]\n"
            f"address = \"{self.superlink_host}:{self.port}\"\nroot-certificates = \"{self.paths.ca_cert}\"\n",
            encoding="utf-8",
        )

    def _flwr(self, *args: str, timeout_s: float = 120.0, attempts: int = 3) -> dict:
        """Run a ``flwr`` CLI command against this SuperLink and return its JSON output.

        A SuperLink that has just opened its port may not answer its Control API yet ("Connection to the
        SuperLink is unavailable"): that answer is retried up to ``attempts`` times, 2 s apart.
        """
        import time

        for attempt in range(1, attempts + 1):
            result = subprocess.run(
                [str(self.bin_dir / "flwr"), *args, "--format", "json"],
                capture_output=True, text=True, env=self._env("cli"), timeout=timeout_s,
            )
            text = result.stdout.strip()
            start = text.find("{")
            try:
                payload = json.loads(text[start:]) if start >= 0 else {}
            except json.JSONDecodeError:
                payload = {}
            if result.returncode == 0 and payload.get("success", False):
                return payload
            unavailable = "SuperLink is unavailable" in str(payload.get("error-message", "")) + text
            if not unavailable or attempt == attempts or (self.superlink is not None and self.superlink.poll() is not None):
                raise FederationError(f"flwr {' '.join(args[:2])} failed: {(result.stderr or text)[-400:]}")
            time.sleep(2.0)
        raise AssertionError("unreachable")

    def register(self, client_id: str, public_key: Path | None = None) -> int:
        """Register a hospital's node-authentication public key; return its Flower node id.

        ``public_key`` is an OpenSSH public-key file; by default the key the coordinator made for the
        client (a hospital that runs its own node sends its key at enrolment instead).
        """
        key = public_key or self.paths.node_auth_public_key(client_id)
        payload = self._flwr("supernode", "register", str(key), "local")
        self.node_ids[client_id] = int(payload["node-id"])
        return self.node_ids[client_id]

    def node_statuses(self) -> dict[int, str]:
        """Return the SuperLink's status of each registered node (``registered``, ``online``, ``offline``).

        Raises
        ------
        FederationError
            The ``flwr supernode list`` command failed.
        """
        payload = self._flwr("supernode", "list", "local", timeout_s=60)
        return {int(n["node-id"]): str(n["status"]) for n in payload.get("nodes", [])}

    def unregister(self, client_id: str) -> None:
        """Revoke a hospital: its key is removed from the SuperLink, which then refuses it."""
        node_id = self.node_ids.pop(client_id)
        self._flwr("supernode", "unregister", str(node_id), "local")

    def start_supernode(self, client_id: str, data_dir: Path | Sequence[Path], index: int = 0) -> subprocess.Popen:
        """Start a hospital's SuperNode; it reads only ``data_dir`` (one MSD folder or several, which it
        trains on together) and signs with its own key.

        ``index`` is kept for callers' bookkeeping; the local Runtime API port is a free one.

        Raises
        ------
        ValueError
            A folder path containing ``os.pathsep`` or a double quote (the node config cannot carry it).
        """
        dirs = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
        resolved = [str(Path(d).resolve()) for d in dirs]
        for path in resolved:
            if os.pathsep in path or '"' in path:
                raise ValueError(f"dataset folder {path!r} contains {os.pathsep!r} or a double quote")
        old = self.node_ports.get(client_id)
        if old:
            kill_flower_helpers(f"{HOST}:{old}")
        self.stop_process(self.trainers.pop(client_id, None), kill=True)
        port = free_port()
        self.node_ports[client_id] = port
        p = self.paths
        node_config = (
            f'client-id="{client_id}" data-dir="{os.pathsep.join(resolved)}" '
            f'signing-key="{p.signing_key(client_id)}" threads={self.threads_per_client}'
        )
        trainer_dir = self.work_dir / f"trainer-{client_id}"
        if self.warm_trainers:
            from .warm_trainer import trainer_paths

            socket_path, authkey_path = trainer_paths(trainer_dir)
            node_config += f' trainer-socket="{socket_path}" trainer-authkey="{authkey_path}"'
        argv = [
            *supernode_command(self.bin_dir, short_polling=self.short_polling),
            "--root-certificates", str(p.ca_cert), "--superlink", f"{self.superlink_host}:{self.port}",
            "--auth-supernode-private-key", str(p.node_auth_key(client_id)),
            "--host", HOST, "--port", str(port),
            "--node-config", node_config, "--max-retries", "3",
        ]
        process = self._spawn(f"supernode-{client_id}", argv)
        self.supernodes[client_id] = process
        if self.warm_trainers:
            from .warm_trainer import start_trainer

            self.trainers[client_id] = start_trainer(
                trainer_dir, [Path(d) for d in resolved], threads=self.threads_per_client, watch_pid=process.pid,
                env=self._env(f"trainer-{client_id}"), log_path=self.work_dir / "logs" / f"trainer-{client_id}.log")
        return process

    def write_app(self) -> Path:
        """Write the Flower app folder (pyproject + a module re-exporting :mod:`federation.fl.flower_app`)."""
        app = self.work_dir / "app"
        app.mkdir(parents=True, exist_ok=True)
        config = "\n".join(f"{k} = {_toml_value(v)}" for k, v in APP_CONFIG_DEFAULTS.items())
        (app / "pyproject.toml").write_text(
            "[build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n\n"
            "[project]\nname = \"yixinfed\"\nversion = \"1.0.0\"\n"
            "description = \"Yixin Portal federated segmentation\"\nlicense = \"Apache-2.0\"\ndependencies = []\n\n"
            "[tool.hatch.build.targets.wheel]\npackages = [\".\"]\n\n"
            "[tool.flwr.app]\npublisher = \"yixin\"\n\n"
            "[tool.flwr.app.components]\nserverapp = \"yixinfed_app:serverapp\"\nclientapp = \"yixinfed_app:clientapp\"\n\n"
            f"[tool.flwr.app.config]\n{config}\n",
            encoding="utf-8",
        )
        (app / "yixinfed_app.py").write_text(
            '"""Entry points for Flower; the code lives in federation.fl.flower_app."""\n'
            "from federation.fl import flower_app as _app\n\n"
            "# Flower checks these names statically (an assignment, not an import).\n"
            "serverapp = _app.serverapp\nclientapp = _app.clientapp\n",
            encoding="utf-8",
        )
        return app

    def run(self, run_config: dict) -> int:
        """Submit a run with ``run_config`` overriding :data:`APP_CONFIG_DEFAULTS`; return its run id."""
        unknown = set(run_config) - set(APP_CONFIG_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown run-config keys: {sorted(unknown)}")
        app = self.write_app()
        overrides = " ".join(f"{k}={_toml_value(v)}" for k, v in run_config.items())
        payload = self._flwr("run", str(app), "local", "--run-config", overrides, timeout_s=180)
        return int(payload.get("run-id", 0))

    def stop_process(self, process: subprocess.Popen | None, *, kill: bool = False) -> None:
        """Stop one process group (SIGKILL when ``kill``, else SIGTERM then SIGKILL)."""
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        except ProcessLookupError:
            pass

    def kill_supernode(self, client_id: str) -> None:
        """Kill a hospital's SuperNode, its ClientApp processes and its warm trainer at once (a crash)."""
        self.stop_process(self.supernodes.get(client_id), kill=True)
        self.stop_process(self.trainers.get(client_id), kill=True)
        kill_flower_helpers(f"{HOST}:{self.node_ports.get(client_id)}")

    def kill_coordinator(self) -> None:
        """Kill the SuperLink and the ServerApp it started (a coordinator crash)."""
        self.stop_process(self.superlink, kill=True)
        kill_flower_helpers(f"{self.superlink_host}:{self.port}")

    def stop(self) -> None:
        """Stop every process this federation started, Flower's helper processes included."""
        for client_id, process in list(self.supernodes.items()):
            self.stop_process(process)
            self.stop_process(self.trainers.get(client_id))
            kill_flower_helpers(f"{HOST}:{self.node_ports.get(client_id)}")
        self.stop_process(self.superlink)
        kill_flower_helpers(f"{self.superlink_host}:{self.port}")

    def log_text(self, name: str) -> str:
        path = self.work_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
