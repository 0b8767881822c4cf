"""Orthanc (Debian package) as the hospital's PACS in tests: started on free loopback ports with its storage
in a temporary folder, stopped by the caller."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    """A running Orthanc: its DICOM port and AE title, and its REST API on loopback."""

    process: subprocess.Popen
    dicom_port: int
    http_port: int
    ae_title: str
    dicomweb_root: str = ""

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb plugin's base URL (started with ``dicomweb=True``)."""
        return f"http://127.0.0.1:{self.http_port}{self.dicomweb_root}"

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def upload(self, *files: Path) -> None:
        """Store DICOM files through the REST API (POST /instances), as a PACS would have them."""
        for path in files:
            request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/instances", data=path.read_bytes(),
                                             method="POST", headers={"Content-Type": "application/dicom"})
            with urllib.request.urlopen(request, timeout=30) as response:
                assert json.loads(response.read())["Status"] in ("Success", "AlreadyStored")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def orthanc_start(folder: Path, *, modalities: dict[str, dict] | None = None, ae_title: str = "ORTHANC",
                  dicomweb: bool = False, http_port: int | None = None) -> Orthanc:
    """Start Orthanc with its storage in ``folder``.

    HTTP answers loopback clients only (RemoteAccessAllowed false); called AE titles are checked, and only
    the ``modalities`` (Orthanc's DicomModalities, e.g. ``{"yixin": {"AET": "YIXIN", "Host": "127.0.0.1",
    "Port": 11112}}``) from their host may associate: Orthanc 1.10 has no bind address, so its ports listen
    on every interface and the modality list refuses everyone else. A modality is also where C-MOVE sends
    a study whose Move Destination is its AE title.

    With ``dicomweb`` the DICOMweb plugin (Debian ``orthanc-dicomweb``) serves QIDO-RS, WADO-RS and
    STOW-RS at ``/dicom-web`` (:attr:`Orthanc.dicomweb_url`); the test is skipped when it is not installed.
    """
    if shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed (apt-get install orthanc; scripts/setup.sh installs it)")
    if dicomweb and not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
    http_port, dicom_port = http_port or free_port(), free_port()
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "yixin-test-pacs", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [],
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": ae_title,
        "DicomCheckCalledAet": True, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": False, "DicomAlwaysAllowEcho": False, "DicomCheckModalityHost": True,
        "DicomModalities": modalities if modalities is not None else {"yixin": ["YIXIN", "127.0.0.1", 11112]},
        **({"DicomWeb": {"Enable": True, "Root": "/dicom-web/"}} if dicomweb else {}),
    }))
    process = subprocess.Popen(["Orthanc", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Orthanc(process=process, dicom_port=dicom_port, http_port=http_port, ae_title=ae_title,
                     dicomweb_root="/dicom-web" if dicomweb else "")
    deadline = time.monotonic() + 30
    while True:
        try:
            server.get("/system")
            return server
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("Orthanc did not start") from None
            time.sleep(0.2)
