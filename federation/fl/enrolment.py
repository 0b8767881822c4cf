"""Site enrolment: a hospital's own Ed25519 key, its certificate signing request, and the certificate the
federation's CA issues for it. Plain Python (``cryptography``), no Django.

The site generates its key and CSR (PKCS #10, RFC 2986) locally; only the CSR travels. The CSR's subject
common name (OID 2.5.4.3) is the hospital's code. The CA (the federation's TLS CA of
:mod:`federation.fl.certs`, EC P-384) issues an X.509 v3 certificate (RFC 5280) for the key, marked as a
non-CA end-entity key for digital signatures and TLS client authentication. The certified Ed25519 key is
what verifies that hospital's ledger statements (:mod:`federation.fl.ledger`): the coordinator holds
only the public half.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .ledger import generate_signing_key, private_key_pem

__all__ = [
    "EnrolmentError",
    "SiteIdentity",
    "site_csr_create",
    "csr_check",
    "certificate_issue",
    "certificate_load",
    "certificate_public_key",
    "certificate_fingerprint",
    "certificate_issued_by",
    "private_key_write",
    "node_auth_key_create",
    "node_auth_public_key_check",
    "label_statistics_check",
]


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for a no-op marker
    """Mark ``message`` as a msgid (English, ``%(name)s`` parameters); the portal translates it."""
    return message


class EnrolmentError(ValueError):
    """A CSR or certificate refused; ``code`` is stable, ``template``/``params`` an English msgid."""

    def __init__(self, code: str, template: str, **params):
        self.code = code
        self.template = template
        self.params = params
        super().__init__(template % params if params else template)


@dataclass(frozen=True)
class SiteIdentity:
    """A site's freshly generated key and the PEM CSR naming its hospital code."""

    private_key: Ed25519PrivateKey
    csr_pem: bytes


def site_csr_create(hospital_code: str) -> SiteIdentity:
    """Generate an Ed25519 key pair and a CSR whose subject CN is ``hospital_code``.

    Ed25519 signatures carry no separate hash (RFC 8032), so the CSR is signed with ``algorithm=None``.

    Raises
    ------
    ValueError
        An empty hospital code.
    """
    if not hospital_code:
        raise ValueError("a hospital code is needed")
    key = generate_signing_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hospital_code)]))
        .sign(key, None)
    )
    return SiteIdentity(private_key=key, csr_pem=csr.public_bytes(serialization.Encoding.PEM))


def csr_check(csr_pem: bytes, *, hospital_code: str) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check that it may be certified for ``hospital_code``.

    Checks: PEM PKCS #10 that parses; its self-signature verifies (proof that the sender holds the private
    key); its key is Ed25519 (the ledger's algorithm); its subject has exactly one CN, equal to the code.

    Raises
    ------
    EnrolmentError
        ``invalid_csr`` (unreadable, bad self-signature, wrong key type) or ``csr_wrong_hospital``.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except (ValueError, TypeError) as exc:
        raise EnrolmentError("invalid_csr", N_("The certificate signing request is not a PEM CSR.")) from exc
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature):
        valid = False
    if not valid:
        raise EnrolmentError("invalid_csr", N_("The certificate signing request's signature does not verify."))
    if not isinstance(csr.public_key(), Ed25519PublicKey):
        raise EnrolmentError("invalid_csr", N_("The certificate signing request must carry an Ed25519 key."))
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [hospital_code]:
        raise EnrolmentError(
            "csr_wrong_hospital",
            N_("The certificate signing request names %(names)s, not the invited hospital %(hospital)s."),
            names=", ".join(map(str, names)) or "-", hospital=hospital_code,
        )
    return csr


def certificate_issue(ca_key, ca_cert: x509.Certificate, csr: x509.CertificateSigningRequest, *,
                      days: int = 365) -> x509.Certificate:
    """Return the end-entity certificate the CA issues for a checked CSR (see :func:`csr_check`).

    Subject and public key come from the CSR; validity starts 5 minutes back (clock skew) and lasts
    ``days``; extensions: BasicConstraints CA=false, KeyUsage digitalSignature + contentCommitment
    (non-repudiation of ledger statements), ExtendedKeyUsage clientAuth. Signed with SHA-384 (RFC 5480).
    """
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )


def certificate_load(pem: bytes | str) -> x509.Certificate:
    """Parse one PEM certificate.

    Raises
    ------
    ValueError
        Not a PEM certificate.
    """
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


def certificate_public_key(cert: x509.Certificate) -> Ed25519PublicKey:
    """Return the certified Ed25519 key.

    Raises
    ------
    ValueError
        The certificate carries another kind of key.
    """
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the certificate does not carry an Ed25519 key")
    return key


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """Return the hex SHA-256 of the certificate's DER encoding (what ``openssl x509 -fingerprint -sha256`` shows)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Return whether ``cert`` carries a valid signature of ``ca_cert``'s key and names it as issuer."""
    try:
        cert.verify_directly_issued_by(ca_cert)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def private_key_write(path: Path, key: Ed25519PrivateKey) -> None:
    """Write ``key`` as PKCS #8 PEM readable by its owner only (mode 0600 from creation, never wider).

    Raises
    ------
    FileExistsError
        A key already lies there: an enrolled identity is never overwritten.
    """
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(key))


def node_auth_key_create() -> tuple[bytes, bytes]:
    """Generate the key a site's SuperNode authenticates to the SuperLink with (Flower SuperNode auth).

    Flower 1.41 takes an EC key: the private half in OpenSSH PEM (``--auth-supernode-private-key``), the
    public half as one OpenSSH line (``flwr supernode register``). It is a second key beside the Ed25519
    signing key: Flower does not accept Ed25519 here, and a key that only opens the connection is kept
    apart from the one that signs the hospital's ledger statements.

    Returns
    -------
    (bytes, bytes)
        ``(private OpenSSH PEM, public OpenSSH line)`` of a fresh EC P-384 key.
    """
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public


def node_auth_public_key_check(text: bytes | str) -> str:
    """Return ``text`` as one normalised OpenSSH public-key line if it is an EC P-384 key.

    Raises
    ------
    EnrolmentError
        ``invalid_node_key``: not an OpenSSH public key, or another kind of key or curve.
    """
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    try:
        key = serialization.load_ssh_public_key(raw.strip())
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm) as exc:
        raise EnrolmentError("invalid_node_key", N_("The node key is not an OpenSSH public key.")) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise EnrolmentError("invalid_node_key", N_("The node key must be an EC P-384 key."))
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode("ascii")


def label_statistics_check(stats, label_indices) -> dict:
    """Check label statistics a site sends (the shape of :func:`federation.fl.data.label_statistics`).

    Parameters
    ----------
    stats : dict
        ``{"cases": int >= 1, "voxels": {label: int >= 0}, "cases_with_label": {label: int >= 0}}``.
    label_indices : iterable of int
        The task's label values; ``"0"`` (background) is allowed besides them.

    Returns
    -------
    dict
        The statistics with plain ``int`` counts and ``str`` labels.

    Raises
    ------
    EnrolmentError
        ``invalid_label_statistics``: another shape, a negative or non-integer count, no case, or a
        label the task does not have.
    """
    allowed = {"0", *(str(int(i)) for i in label_indices)}

    def refuse(why: str):
        return EnrolmentError("invalid_label_statistics",
                              N_("The dataset's label statistics are not valid: %(why)s."), why=why)

    if not isinstance(stats, dict) or set(stats) - {"cases", "voxels", "cases_with_label"}:
        raise refuse("expected cases, voxels and cases_with_label")
    cases = stats.get("cases")
    if not isinstance(cases, int) or isinstance(cases, bool) or cases < 1:
        raise refuse("no case")
    clean = {"cases": cases, "voxels": {}, "cases_with_label": {}}
    for key in ("voxels", "cases_with_label"):
        counts = stats.get(key, {})
        if not isinstance(counts, dict):
            raise refuse(f"{key} is not a mapping")
        for label, count in counts.items():
            if str(label) not in allowed:
                raise refuse(f"label {label} is not one of the task's")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise refuse(f"{key} of label {label} is not a count")
            clean[key][str(label)] = count
    return clean
