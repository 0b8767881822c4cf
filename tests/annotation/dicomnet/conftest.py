"""A real DICOM listener on a free loopback port, with a short series-completion time."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PEER_AE = "CT_SCANNER_1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dcmtk(tool: str) -> str:
    # pynetdicom installs Python apps of the same names (echoscu, storescu) into the virtualenv's bin,
    # which ./yixin puts first on PATH: look for dcmtk's programs outside the virtualenv.
    venv_bin = Path(sys.executable).parent
    search = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                             if d and Path(d).resolve() != venv_bin.resolve())
    path = shutil.which(tool, path=search)
    if path is None:
        pytest.skip(f"dcmtk's {tool} is not installed (apt-get install -y dcmtk; scripts/setup.sh does it)")
    return path


@dataclass
class RunningListener:
    ae_title: str
    port: int
    spool: object

    def scu(self, tool: str, *files: str, options: tuple[str, ...] = (), calling: str = PEER_AE) -> subprocess.CompletedProcess:
        """Run a dcmtk SCU (echoscu, storescu) against the listener: ``tool [options] host port [files]``."""
        return subprocess.run(
            [dcmtk(tool), "-v", "-aet", calling, "-aec", self.ae_title, *options, "127.0.0.1", str(self.port), *files],
            capture_output=True, text=True, timeout=300,
        )

    def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Wait until every received series has been imported or refused (the completion thread's work)."""
        deadline = time.monotonic() + timeout_s
        root = Path(self.spool.root)
        while time.monotonic() < deadline:
            busy = self.spool.pending() or any((root / "processing").iterdir())
            if not busy:
                return
            time.sleep(0.2)
        raise TimeoutError("received series were not imported in time")


@pytest.fixture
def listener(tmp_path, transactional_db, hospital):
    """The DICOM service as ``dicom_listener`` runs it, with ``CT_SCANNER_1`` mapped to ``hospital``."""
    from annotation import services
    from annotation.dicomnet.spool import SeriesSpool

    services.dicom_peer_create(hospital=hospital, ae_title=PEER_AE)
    spool = SeriesSpool(tmp_path / "spool")
    port = free_port()
    running = services.dicom_listener_build(ae_title="YIXIN_TEST", port=port, host="127.0.0.1", spool=spool).start()
    stop = threading.Event()
    completion = services.dicom_completion_start(spool=spool, stop=stop, quiet_s=1.0, poll_s=0.2)
    try:
        yield RunningListener(ae_title="YIXIN_TEST", port=port, spool=spool)
    finally:
        stop.set()
        running.stop()
        completion.join(timeout=60)
