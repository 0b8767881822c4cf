"""The embedded services' generated credentials, kept in the data directory. Imports no Django.

One JSON file (``embedded-credentials.json``, mode 0600) under ``YIXIN_VAR_DIR`` holds the passwords of
the broker Redis, the graph's Redis and Bolt, and SeaweedFS's S3 key pair. It is written once, at the
first start of any process that needs it (the services or Django's settings, whichever comes first),
and read by all of them afterwards; production deployments set ``REDIS_URL``, ``NEO4J_*`` and ``S3_*``
instead and never read it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, fields
from pathlib import Path

CREDENTIALS_FILE = "embedded-credentials.json"
S3_CONFIG_FILE = "seaweedfs-s3.json"
BOLT_USER = "yixin"


@dataclass(frozen=True)
class EmbeddedCredentials:
    """Secrets of one embedded stack; every value is URL-safe ASCII (no quoting needed in a URL)."""

    redis_password: str
    graph_redis_password: str
    bolt_user: str
    bolt_password: str
    s3_access_key: str
    s3_secret_key: str


def _generate() -> EmbeddedCredentials:
    return EmbeddedCredentials(
        redis_password=secrets.token_urlsafe(32),
        graph_redis_password=secrets.token_urlsafe(32),
        bolt_user=BOLT_USER,
        bolt_password=secrets.token_urlsafe(32),
        s3_access_key="YX" + secrets.token_hex(9).upper(),
        s3_secret_key=secrets.token_urlsafe(30),
    )


def credentials_load_or_create(var_dir: Path) -> EmbeddedCredentials:
    """Return the stack's credentials from ``var_dir``, generating the file on first use.

    Several processes start together (the Procfile's services and the web process): the file is
    written to a private temporary name and linked into place, so exactly one generation wins and
    nobody reads a half-written file.

    Raises
    ------
    ValueError
        When the file exists but is not a complete credentials file (it is left untouched).
    """
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / CREDENTIALS_FILE
    if not path.exists():
        tmp = var_dir / f".{CREDENTIALS_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(_generate()), handle, indent=2)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process generated them first: use those
        finally:
            tmp.unlink()
    data = json.loads(path.read_text())
    names = {f.name for f in fields(EmbeddedCredentials)}
    if set(data) != names or not all(isinstance(v, str) and v for v in data.values()):
        raise ValueError(f"{path} is not a complete embedded-credentials file; remove it to generate new credentials")
    return EmbeddedCredentials(**data)


def seaweedfs_s3_config_write(var_dir: Path, credentials: EmbeddedCredentials) -> Path:
    """Write SeaweedFS's S3 identity file (mode 0600) and return its path.

    One identity with every action, and no ``anonymous`` identity: SeaweedFS then refuses unsigned
    requests (AccessDenied). Format: SeaweedFS wiki, "Amazon S3 API" → "Static Configuration".
    """
    config = {
        "identities": [
            {
                "name": "yixin",
                "credentials": [{"accessKey": credentials.s3_access_key, "secretKey": credentials.s3_secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    path = var_dir / S3_CONFIG_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config, handle)
    os.chmod(path, 0o600)
    return path
