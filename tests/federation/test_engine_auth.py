"""Every federated link runs over TLS and only registered hospitals connect: an unknown client and a
revoked one are refused by the real SuperLink (separate processes on 127.0.0.1)."""

import time

import pytest

from federation.fl.certs import create_federation_material
from federation.fl.launcher import LocalFederation

pytestmark = pytest.mark.slow


def _wait_exit(process, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process.returncode
        time.sleep(0.5)
    return None


def test_unknown_and_revoked_clients_are_refused(tmp_path, free_port, hippocampus_split):
    paths = create_federation_material(tmp_path / "pki", ["known", "stranger"])
    cert = paths.server_cert.read_text()
    assert "BEGIN CERTIFICATE" in cert and paths.node_auth_public_key("known").read_text().startswith("ecdsa-sha2-nistp384")
    fed = LocalFederation(paths=paths, work_dir=tmp_path / "work", port=free_port, python_path=".")
    try:
        fed.start_superlink()
        fed.register("known")
        known = fed.start_supernode("known", hippocampus_split.hospitals[0], 0)
        stranger = fed.start_supernode("stranger", hippocampus_split.hospitals[1], 1)  # key never registered

        # Flower exits with code 305 ("failed to activate SuperNode") when the SuperLink refuses the key.
        assert _wait_exit(stranger) not in (None, 0)
        assert "Failed to activate SuperNode" in fed.log_text("supernode-stranger")
        assert known.poll() is None, fed.log_text("supernode-known")[-2000:]
        assert "SuperNode ID" in fed.log_text("supernode-known")

        # Revoked: the key is unregistered; the same hospital cannot connect again.
        fed.unregister("known")
        fed.stop_process(known)
        again = fed.start_supernode("known", hippocampus_split.hospitals[0], 2)
        assert _wait_exit(again) not in (None, 0)
    finally:
        fed.stop()


def test_a_client_without_the_federation_ca_cannot_connect(tmp_path, free_port, hippocampus_split):
    paths = create_federation_material(tmp_path / "pki", ["h"])
    other = create_federation_material(tmp_path / "other-pki", [])
    fed = LocalFederation(paths=paths, work_dir=tmp_path / "work", port=free_port, python_path=".")
    try:
        fed.start_superlink()
        fed.register("h")
        # Point the SuperNode at a CA that did not sign the coordinator's certificate.
        original_ca = paths.ca_cert.read_bytes()
        paths.ca_cert.write_bytes(other.ca_cert.read_bytes())
        try:
            process = fed.start_supernode("h", hippocampus_split.hospitals[0], 0)
            assert _wait_exit(process) not in (None, 0)
        finally:
            paths.ca_cert.write_bytes(original_ca)
    finally:
        fed.stop()
