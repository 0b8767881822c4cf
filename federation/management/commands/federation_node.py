"""Site side of a federation: enrol this hospital's node with the coordinator using its own key.

``enrol`` generates an Ed25519 key pair and a CSR here, posts only the CSR with the one-time token, and
keeps the key (mode 0600) with the certificate and the federation CA in ``--out``/task-<id>/. The private
key never leaves this machine.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

ENROL_PATH = "/api/federation/enrol/"


def node_dir(out: Path, task_id: int) -> Path:
    """Return the folder of one task's enrolled identity under a node's data directory."""
    return Path(out) / f"task-{int(task_id)}"


class Command(BaseCommand):
    help = "A hospital's federation node. `enrol`: certify a key made here with the coordinator's one-time token."

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

    def handle(self, *args, action, **options):
        if action == "enrol":
            self._enrol(**options)

    def _enrol(self, *, coordinator, token, out, hospital, cacert, timeout, **_):
        from django.conf import settings

        from federation.fl.enrolment import (
            certificate_fingerprint,
            certificate_load,
            private_key_write,
            site_csr_create,
        )

        hospital = hospital or token.rpartition(".")[0]
        if not hospital:
            raise CommandError("the token names no hospital: pass --hospital CODE")
        out = Path(out or settings.FEDERATION_NODE_DIR)
        out.mkdir(parents=True, exist_ok=True)
        identity = site_csr_create(hospital)
        body = json.dumps({"token": token, "csr": identity.csr_pem.decode()}).encode()
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
        (folder / "node.crt").write_text(answer["certificate"])
        (folder / "ca.crt").write_text(answer["ca_certificate"])
        self.stdout.write(json.dumps({"task_id": task_id, "hospital": hospital, "dir": str(folder),
                                      "fingerprint_sha256": certificate_fingerprint(cert)}))
