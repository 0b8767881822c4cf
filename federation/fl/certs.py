"""TLS certificates and node-authentication keys for a federation, made with ``cryptography``.

* a self-signed CA (EC P-384), and a coordinator (SuperLink) server certificate it signs, valid for
  ``127.0.0.1``/``localhost`` and any extra host names: every Flower link runs over TLS verified
  against this CA;
* per hospital, an EC P-384 key pair in OpenSSH format: Flower's SuperNode authentication
  (``flower-supernode --auth-supernode-private-key``; the SuperLink accepts only registered public keys);
* per hospital and for the coordinator, an Ed25519 key pair signing the ledger
  (:mod:`federation.fl.ledger`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .ledger import generate_signing_key, private_key_pem, public_key_pem

__all__ = ["FederationPaths", "create_ca", "create_server_certificate", "create_node_keys", "create_federation_material"]


@dataclass(frozen=True)
class FederationPaths:
    """Where a federation's material lies under one directory.

    ``ca.crt``/``ca.key``, ``server.crt``/``server.key``, ``coordinator-signing.pem`` (+ ``.pub``),
    and per client ``clients/<id>/node-auth`` (+ ``.pub``, OpenSSH EC P-384) and
    ``clients/<id>/signing.pem`` (+ ``.pub``, Ed25519).
    """

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def coordinator_signing_key(self) -> Path:
        return self.root / "coordinator-signing.pem"

    def client_dir(self, client_id: str) -> Path:
        return self.root / "clients" / client_id

    def node_auth_key(self, client_id: str) -> Path:
        return self.client_dir(client_id) / "node-auth"

    def node_auth_public_key(self, client_id: str) -> Path:
        return self.client_dir(client_id) / "node-auth.pub"

    def signing_key(self, client_id: str) -> Path:
        return self.client_dir(client_id) / "signing.pem"

    def signing_public_key(self, client_id: str) -> Path:
        return self.client_dir(client_id) / "signing.pub"


def _write(path: Path, data: bytes, *, private: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def create_ca(common_name: str = "Yixin federation CA", *, days: int = 365):
    """Return ``(key, certificate)`` of a new self-signed EC P-384 certificate authority."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA384())
    )
    return key, cert


def create_server_certificate(ca_key, ca_cert, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 365):
    """Return ``(key, certificate)`` of a TLS server certificate signed by the CA.

    ``hosts`` become subjectAltName entries (IP addresses as IP entries, names as DNS entries).

    Raises
    ------
    ValueError
        No host given.
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    key = ec.generate_private_key(ec.SECP384R1())
    alt_names = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def create_node_keys(paths: FederationPaths, client_id: str) -> None:
    """Write a client's node-authentication key pair (OpenSSH EC P-384) and ledger signing pair (Ed25519).

    Raises
    ------
    ValueError
        A client id that is not a plain name (letters, digits, ``-``, ``_``).
    """
    if not client_id or not all(c.isalnum() or c in "-_" for c in client_id):
        raise ValueError(f"client id must be letters, digits, '-' or '_', got {client_id!r}")
    node_key = ec.generate_private_key(ec.SECP384R1())
    _write(
        paths.node_auth_key(client_id),
        node_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()),
        private=True,
    )
    _write(
        paths.node_auth_public_key(client_id),
        node_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        private=False,
    )
    signing = generate_signing_key()
    _write(paths.signing_key(client_id), private_key_pem(signing), private=True)
    _write(paths.signing_public_key(client_id), public_key_pem(signing), private=False)


def create_federation_material(root: Path, client_ids: list[str], *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> FederationPaths:
    """Write a CA, the coordinator's certificate and signing key, and every client's keys under ``root``.

    Existing client keys are kept (a client keeps its identity); the CA and server certificate are made
    once.
    """
    paths = FederationPaths(Path(root))
    paths.root.mkdir(parents=True, exist_ok=True)
    if not paths.ca_cert.exists():
        ca_key, ca_cert = create_ca()
        _write(paths.ca_key, _key_pem(ca_key), private=True)
        _write(paths.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        key, cert = create_server_certificate(ca_key, ca_cert, hosts=hosts)
        _write(paths.server_key, _key_pem(key), private=True)
        _write(paths.server_cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    if not paths.coordinator_signing_key.exists():
        signing = generate_signing_key()
        _write(paths.coordinator_signing_key, private_key_pem(signing), private=True)
        _write(paths.coordinator_signing_key.with_suffix(".pub"), public_key_pem(signing), private=False)
    for client_id in client_ids:
        if not paths.node_auth_key(client_id).exists():
            create_node_keys(paths, client_id)
    return paths
