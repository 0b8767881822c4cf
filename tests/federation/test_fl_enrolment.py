"""Plain-Python site enrolment: the CSR a site makes, the checks on it, and the certificate the CA issues."""

import stat

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from federation.fl import enrolment, ledger
from federation.fl.certs import create_ca


@pytest.fixture(scope="module")
def ca():
    return create_ca()


def test_a_site_csr_is_certified_for_its_own_key(ca):
    ca_key, ca_cert = ca
    identity = enrolment.site_csr_create("h-west")
    csr = enrolment.csr_check(identity.csr_pem, hospital_code="h-west")
    cert = enrolment.certificate_issue(ca_key, ca_cert, csr, days=30)

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "h-west"
    assert enrolment.certificate_issued_by(cert, ca_cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # The certified key verifies what the site's private key signs, and nothing another key signs.
    statement = b"round 1"
    key = enrolment.certificate_public_key(cert)
    key.verify(identity.private_key.sign(statement), statement)
    with pytest.raises(InvalidSignature):
        key.verify(ledger.generate_signing_key().sign(statement), statement)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30


def test_a_csr_naming_another_hospital_is_refused():
    identity = enrolment.site_csr_create("h-east")
    with pytest.raises(enrolment.EnrolmentError) as caught:
        enrolment.csr_check(identity.csr_pem, hospital_code="h-west")
    assert caught.value.code == "csr_wrong_hospital"
    assert "h-east" in str(caught.value) and "h-west" in str(caught.value)


def test_unreadable_tampered_and_non_ed25519_csrs_are_refused():
    with pytest.raises(enrolment.EnrolmentError, match="not a PEM CSR") as caught:
        enrolment.csr_check(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                            hospital_code="h1")
    assert caught.value.code == "invalid_csr"

    # An EC key is a valid CSR but cannot verify Ed25519 ledger statements.
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_csr = (x509.CertificateSigningRequestBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h1")])).sign(ec_key, hashes.SHA256()))
    with pytest.raises(enrolment.EnrolmentError, match="Ed25519"):
        enrolment.csr_check(ec_csr.public_bytes(serialization.Encoding.PEM), hospital_code="h1")

    # A CSR whose signature no longer matches its content (someone else's key swapped in).
    der = bytearray(x509.load_pem_x509_csr(enrolment.site_csr_create("h1").csr_pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF  # inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(enrolment.EnrolmentError, match="signature does not verify"):
        enrolment.csr_check(tampered, hospital_code="h1")


def test_a_certificate_of_another_ca_is_not_issued_by_ours(ca):
    other_key, other_cert = create_ca("another CA")
    csr = enrolment.csr_check(enrolment.site_csr_create("h1").csr_pem, hospital_code="h1")
    cert = enrolment.certificate_issue(other_key, other_cert, csr)
    assert not enrolment.certificate_issued_by(cert, ca[1])


def test_the_private_key_is_written_owner_only_and_never_overwritten(tmp_path):
    identity = enrolment.site_csr_create("h1")
    path = tmp_path / "node" / "node.key"
    enrolment.private_key_write(path, identity.private_key)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ledger.load_private_key(path.read_bytes()).public_key() == identity.private_key.public_key()
    with pytest.raises(FileExistsError):
        enrolment.private_key_write(path, ledger.generate_signing_key())
    assert ledger.load_private_key(path.read_bytes()).public_key() == identity.private_key.public_key()


def test_the_node_key_is_an_openssh_ec_p384_pair_and_other_keys_are_refused():
    private, public = enrolment.node_auth_key_create()
    key = serialization.load_ssh_private_key(private, password=None)
    assert isinstance(key.curve, ec.SECP384R1)
    assert enrolment.node_auth_public_key_check(public.decode() + "\n") == public.decode()
    assert key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) == public

    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    ed = ledger.generate_signing_key().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    for bad in (p256, ed, b"ecdsa-sha2-nistp384 AAAA", b"", private):
        with pytest.raises(enrolment.EnrolmentError) as info:
            enrolment.node_auth_public_key_check(bad)
        assert info.value.code == "invalid_node_key"
