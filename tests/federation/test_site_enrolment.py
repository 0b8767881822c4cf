"""Site enrolment with the hospital's own key (tokens, the CA signing the site's CSR, revocation) and a
ledger whose hospital statements only the hospital's enrolled key can sign."""

import datetime as dt
import hashlib
import io
import json
import stat

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from federation import services
from federation.fl import enrolment
from federation.fl import ledger as fl_ledger
from federation.models import LedgerEntry, SiteCertificate, SiteInvitation
from portal.api_errors import ServiceError
from portal.models import AuditLog
from tests.factories import HospitalFactory

pytestmark = pytest.mark.django_db

LABELS = [{"index": 1, "name": "Anterior", "color": "#ff0000"}]


@pytest.fixture
def partner():
    return HospitalFactory()


@pytest.fixture
def task(federation_settings, annotator, partner):
    return services.task_create(user=annotator, name="海马体联邦", label_table=LABELS, rounds=2, local_epochs=1,
                                invite=[partner])


def _invite(task, hospital) -> str:
    out = io.StringIO()
    call_command("federation_invite", str(task.pk), "--hospital", hospital.code, stdout=out)
    return out.getvalue().strip()


def _enrol(token, csr_pem):
    return APIClient().post(reverse("federation-site-enrol"), {"token": token, "csr": csr_pem.decode()}, format="json")


def _refusals(code):
    return AuditLog.objects.filter(target_type="federation_site_certificate", detail__refused=code)


# ---------------------------------------------------------------- invitations

def test_invite_prints_a_one_time_token_stored_only_as_its_hash(task, partner):
    token = _invite(task, partner)

    invitation = SiteInvitation.objects.get()
    assert token.startswith(f"{partner.code}.") and len(token) > len(partner.code) + 40
    assert invitation.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert invitation.hospital == partner and invitation.used_at is None
    assert timezone.now() + dt.timedelta(hours=23) < invitation.expires_at <= timezone.now() + dt.timedelta(hours=24)
    assert AuditLog.objects.filter(target_type="federation_site_invitation", target_id=str(invitation.pk),
                                   hospital=partner).exists()
    assert token.split(".", 1)[1] not in json.dumps(list(SiteInvitation.objects.values()), default=str)


def test_invite_refuses_a_hospital_that_is_not_a_client_of_the_task(task):
    stranger = HospitalFactory()
    with pytest.raises(CommandError, match=stranger.code):
        _invite(task, stranger)
    with pytest.raises(CommandError, match="no federated task"):
        call_command("federation_invite", "9999", "--hospital", stranger.code)
    assert not SiteInvitation.objects.exists()


# ---------------------------------------------------------------- enrolment over HTTP

def test_a_site_enrols_its_own_key_and_gets_a_certificate_of_the_federation_ca(task, partner):
    token = _invite(task, partner)
    identity = enrolment.site_csr_create(partner.code)

    response = _enrol(token, identity.csr_pem)

    assert response.status_code == 201, response.json()
    body = response.json()
    cert = enrolment.certificate_load(body["certificate"])
    ca_cert = enrolment.certificate_load(body["ca_certificate"])
    assert cert.public_key() == identity.private_key.public_key()
    assert enrolment.certificate_issued_by(cert, ca_cert)
    # The CA is the task's TLS CA, the one the SuperLink's certificate chains to.
    assert ca_cert == enrolment.certificate_load((services.task_dir(task) / "pki" / "ca.crt").read_bytes())
    row = SiteCertificate.objects.get()
    assert (row.task, row.hospital, row.revoked_at) == (task, partner, None)
    assert row.fingerprint_sha256 == body["fingerprint_sha256"] == enrolment.certificate_fingerprint(cert)
    assert SiteInvitation.objects.get().used_at is not None
    assert AuditLog.objects.filter(target_type="federation_site_certificate", target_id=str(row.pk)).exists()


def test_a_reused_token_is_refused_and_audited(task, partner):
    token = _invite(task, partner)
    assert _enrol(token, enrolment.site_csr_create(partner.code).csr_pem).status_code == 201

    response = _enrol(token, enrolment.site_csr_create(partner.code).csr_pem)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "token_used"
    assert SiteCertificate.objects.count() == 1
    assert _refusals("token_used").filter(hospital=partner).count() == 1


def test_an_expired_token_is_refused_and_audited(task, partner):
    token = _invite(task, partner)
    SiteInvitation.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    response = _enrol(token, enrolment.site_csr_create(partner.code).csr_pem)

    assert response.status_code == 410
    assert response.json()["error"]["code"] == "token_expired"
    assert not SiteCertificate.objects.exists() and SiteInvitation.objects.get().used_at is None
    assert _refusals("token_expired").count() == 1


def test_a_csr_for_another_hospital_is_refused_and_the_token_stays_usable(task, partner, hospital):
    token = _invite(task, partner)

    response = _enrol(token, enrolment.site_csr_create(hospital.code).csr_pem)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "csr_wrong_hospital" and partner.code in error["message"]
    assert not SiteCertificate.objects.exists() and SiteInvitation.objects.get().used_at is None
    assert _refusals("csr_wrong_hospital").filter(hospital=partner).count() == 1
    assert _enrol(token, enrolment.site_csr_create(partner.code).csr_pem).status_code == 201


@pytest.mark.parametrize("csr", [b"not a csr", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"])
def test_a_bad_csr_is_refused_and_audited(task, partner, csr):
    token = _invite(task, partner)

    response = _enrol(token, csr)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_csr"
    assert not SiteCertificate.objects.exists() and SiteInvitation.objects.get().used_at is None
    assert _refusals("invalid_csr").count() == 1


def test_an_unknown_token_is_refused_in_chinese_and_audited(task, partner):
    response = APIClient().post(reverse("federation-site-enrol"),
                                {"token": f"{partner.code}.guess", "csr": enrolment.site_csr_create(partner.code).csr_pem.decode()},
                                format="json", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invalid_token"
    assert "令牌" in response.json()["error"]["message"]
    assert _refusals("invalid_token").count() == 1


def test_a_hospital_revoked_after_its_invitation_cannot_enrol(task, partner, annotator):
    token = _invite(task, partner)
    services.participant_revoke(participant=task.participants.get(hospital=partner), user=annotator)

    response = _enrol(token, enrolment.site_csr_create(partner.code).csr_pem)

    assert response.status_code == 403 and response.json()["error"]["code"] == "not_a_participant"
    assert not SiteCertificate.objects.exists() and SiteInvitation.objects.get().used_at is None
    assert _refusals("not_a_participant").filter(hospital=partner).count() == 1
    with pytest.raises(CommandError, match=partner.code):
        _invite(task, partner)


def test_a_closed_task_takes_no_enrolment(task, partner):
    token = _invite(task, partner)
    task.status = "completed"
    task.save(update_fields=["status"])

    response = _enrol(token, enrolment.site_csr_create(partner.code).csr_pem)

    assert response.status_code == 409 and response.json()["error"]["code"] == "task_closed"
    assert not SiteCertificate.objects.exists()
    assert _refusals("task_closed").count() == 1


def test_a_node_key_that_is_not_ec_p384_is_refused_and_the_token_stays_usable(task, partner):
    token = _invite(task, partner)
    identity = enrolment.site_csr_create(partner.code)
    response = APIClient().post(reverse("federation-site-enrol"),
                                {"token": token, "csr": identity.csr_pem.decode(), "node_auth_public_key": "ssh-rsa AAAA"},
                                format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_node_key"
    assert not SiteCertificate.objects.exists() and SiteInvitation.objects.get().used_at is None
    assert _refusals("invalid_node_key").count() == 1

    _, public = enrolment.node_auth_key_create()
    response = APIClient().post(reverse("federation-site-enrol"),
                                {"token": token, "csr": identity.csr_pem.decode(), "node_auth_public_key": public.decode()},
                                format="json")
    assert response.status_code == 201 and response.json()["client_id"] == task.participants.get(hospital=partner).client_id
    assert SiteCertificate.objects.get().node_auth_public_key == public.decode()


def _enrol_node(token, hospital, stats, node_key=True):
    body = {"token": token, "csr": enrolment.site_csr_create(hospital.code).csr_pem.decode(), "label_statistics": stats}
    if node_key:
        body["node_auth_public_key"] = enrolment.node_auth_key_create()[1].decode()
    return APIClient().post(reverse("federation-site-enrol"), body, format="json")


def test_a_site_node_enrolling_with_its_label_statistics_accepts_the_invitation(task, partner):
    participant = task.participants.get(hospital=partner)
    assert participant.status == "invited"
    token = _invite(task, partner)
    good = {"cases": 3, "voxels": {"0": 900, "1": 40}, "cases_with_label": {"1": 3}}

    for stats, code in (({"cases": 3, "voxels": {"7": 5}}, "invalid_label_statistics"),
                        ({"cases": 0}, "invalid_label_statistics"),
                        ({"cases": 2, "voxels": {"1": -1}}, "invalid_label_statistics"),
                        ("three", "invalid_label_statistics")):
        response = _enrol_node(token, partner, stats)
        assert response.status_code == 400 and response.json()["error"]["code"] == code, stats
    response = _enrol_node(token, partner, good, node_key=False)
    assert response.status_code == 400 and response.json()["error"]["code"] == "node_key_required"
    participant.refresh_from_db()
    assert participant.status == "invited" and not SiteCertificate.objects.exists()

    assert _enrol_node(token, partner, good).status_code == 201
    participant.refresh_from_db()
    assert participant.status == "accepted" and participant.label_statistics == good and participant.datasets == []
    assert AuditLog.objects.filter(target_type="federated_participant", target_id=str(participant.pk),
                                   detail__accepted=True).exists()


def test_enrolment_needs_a_token_and_a_csr(task):
    response = APIClient().post(reverse("federation-site-enrol"), {"token": "x"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_input"


# ---------------------------------------------------------------- the node's command against a live coordinator

@pytest.mark.django_db(transaction=True)
def test_federation_node_enrol_keeps_the_key_at_the_site(live_server, federation_settings, annotator, partner, tmp_path):
    task = services.task_create(user=annotator, name="site", label_table=LABELS, rounds=1, local_epochs=1, invite=[partner])
    token = _invite(task, partner)
    out = io.StringIO()

    call_command("federation_node", "enrol", "--coordinator", live_server.url, "--token", token,
                 "--out", str(tmp_path / "node"), stdout=out)

    result = json.loads(out.getvalue())
    folder = tmp_path / "node" / f"task-{task.pk}"
    client_id = task.participants.get(hospital=partner).client_id
    assert result == {"task_id": task.pk, "hospital": partner.code, "dir": str(folder),
                      "fingerprint_sha256": SiteCertificate.objects.get().fingerprint_sha256,
                      "client_id": client_id, "superlink": None}
    # The SuperNode's own EC key stays here too; only its public half was enrolled.
    assert stat.S_IMODE((folder / "node-auth").stat().st_mode) == 0o600
    assert SiteCertificate.objects.get().node_auth_public_key == (folder / "node-auth.pub").read_text().strip()
    assert json.loads((folder / "node.json").read_text())["client_id"] == client_id
    key = fl_ledger.load_private_key((folder / "node.key").read_bytes())
    assert stat.S_IMODE((folder / "node.key").stat().st_mode) == 0o600
    cert = enrolment.certificate_load((folder / "node.crt").read_bytes())
    assert cert.public_key() == key.public_key()
    assert enrolment.certificate_issued_by(cert, enrolment.certificate_load((folder / "ca.crt").read_bytes()))
    # The coordinator's machine holds no copy of the site's private key.
    key_der = key.private_bytes_raw()
    for path in services.task_dir(task).rglob("*"):
        if path.is_file():
            assert key_der not in path.read_bytes() and fl_ledger.private_key_pem(key) not in path.read_bytes()

    # The token was used: a second enrolment is refused and leaves the enrolled identity alone.
    with pytest.raises(CommandError, match="token_used"):
        call_command("federation_node", "enrol", "--coordinator", live_server.url, "--token", token,
                     "--out", str(tmp_path / "node"))
    assert fl_ledger.load_private_key((folder / "node.key").read_bytes()).public_key() == key.public_key()


def test_federation_node_enrol_reports_an_unreachable_coordinator(tmp_path):
    with pytest.raises(CommandError, match="cannot reach the coordinator"):
        call_command("federation_node", "enrol", "--coordinator", "http://127.0.0.1:9", "--token", "h1.x",
                     "--out", str(tmp_path), "--timeout", "2")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- the ledger

@pytest.fixture
def enrolled(task, partner):
    """The partner's node enrolled; returns (site private key, coordinator's ledger key, partner's client id)."""
    paths = services.task_keys_ensure(task=task)
    identity = enrolment.site_csr_create(partner.code)
    services.site_enrol(token=services.site_invite(task=task, hospital=partner)[1], csr_pem=identity.csr_pem)
    coordinator_key = fl_ledger.load_private_key(paths.coordinator_signing_key.read_bytes())
    task.refresh_from_db()
    return identity.private_key, coordinator_key, task.participants.get(hospital=partner).client_id


def _statement(task, client_id, round_number, key):
    fields = {"update_sha256": hashlib.sha256(f"{client_id}-{round_number}".encode()).hexdigest(),
              "num_examples": 4, "metrics": {"loss": 0.5}}
    signature = fl_ledger.sign_bytes(key, fl_ledger.client_statement(
        task_id=task.pk, round_number=round_number, kind=fl_ledger.KIND_CLIENT_UPDATE, client=client_id, **fields))
    return {"client_id": client_id, "round_number": round_number, "client_signature": signature, **fields}


def _verify_ledger(task):
    out = io.StringIO()
    call_command("verify_ledger", str(task.pk), stdout=out)
    return out.getvalue()


def _forge_row(task, statement, coordinator_key):
    """What a dishonest coordinator can do: write a co-signed, correctly chained row with no check at all."""
    last = LedgerEntry.objects.filter(task=task).order_by("-index").first()
    entry = fl_ledger.LedgerEntry(
        task_id=str(task.pk), index=last.index + 1 if last else 0, prev_hash=last.entry_hash if last else fl_ledger.GENESIS_HASH,
        round_number=statement["round_number"], kind=fl_ledger.KIND_CLIENT_UPDATE, client=statement["client_id"],
        update_sha256=statement["update_sha256"], num_examples=statement["num_examples"], metrics=statement["metrics"],
    )
    signed = fl_ledger.sign_entry(entry, coordinator_key=coordinator_key, client_signature=statement["client_signature"])
    return LedgerEntry.objects.create(task=task, **{f: getattr(signed, f) for f in (
        "index", "round_number", "kind", "client", "update_sha256", "num_examples", "metrics", "reputation",
        "prev_hash", "client_signature", "coordinator_signature", "entry_hash")})


def test_a_statement_signed_with_the_enrolled_key_verifies(task, enrolled, annotator):
    site_key, coordinator_key, client_id = enrolled

    row = services.ledger_statement_append(task=task, coordinator_key=coordinator_key,
                                           **_statement(task, client_id, 1, site_key))

    assert row.index == 0 and row.client == client_id
    output = _verify_ledger(task)
    assert "1 entries, all valid" in output
    # The owner hospital never enrolled: the report says its statements would rest on a portal-held key.
    assert annotator.hospital.code in output and client_id not in output.split("portal-held keys):")[-1]


def test_the_coordinators_own_keys_cannot_sign_for_an_enrolled_hospital(task, enrolled):
    site_key, coordinator_key, client_id = enrolled
    portal_held = fl_ledger.load_private_key(
        (services.task_dir(task) / "pki" / "clients" / client_id / "signing.pem").read_bytes())

    for key in (coordinator_key, portal_held):
        with pytest.raises(ServiceError) as caught:
            services.ledger_statement_append(task=task, coordinator_key=coordinator_key,
                                             **_statement(task, client_id, 1, key))
        assert caught.value.code == "bad_signature"
    assert not LedgerEntry.objects.filter(task=task).exists()
    assert AuditLog.objects.filter(target_type="federated_ledger", detail__refused="bad_signature",
                                   detail__client=client_id).count() == 2

    # Written straight into the table, co-signed and chained, the forgery is still caught by verify_ledger.
    services.ledger_statement_append(task=task, coordinator_key=coordinator_key, **_statement(task, client_id, 1, site_key))
    forged = _forge_row(task, _statement(task, client_id, 2, coordinator_key), coordinator_key)
    with pytest.raises(CommandError, match=rf"entry 1 \(id {forged.pk}\) is bad: client signature does not verify"):
        _verify_ledger(task)


def test_a_revoked_certificates_later_statements_fail(task, enrolled, partner):
    site_key, coordinator_key, client_id = enrolled
    services.ledger_statement_append(task=task, coordinator_key=coordinator_key, **_statement(task, client_id, 1, site_key))

    call_command("federation_revoke", str(task.pk), "--hospital", partner.code, stdout=io.StringIO())

    assert SiteCertificate.objects.get().revoked_at is not None
    with pytest.raises(ServiceError) as caught:
        services.ledger_statement_append(task=task, coordinator_key=coordinator_key,
                                         **_statement(task, client_id, 2, site_key))
    assert caught.value.code == "bad_signature"
    assert LedgerEntry.objects.filter(task=task).count() == 1
    assert "1 entries, all valid" in _verify_ledger(task)  # the statement made before the revocation stands
    sneaked = _forge_row(task, _statement(task, client_id, 2, site_key), coordinator_key)
    with pytest.raises(CommandError, match=rf"entry 1 \(id {sneaked.pk}\)"):
        _verify_ledger(task)
    with pytest.raises(CommandError, match="no live certificate"):
        call_command("federation_revoke", str(task.pk), "--hospital", partner.code)


def test_a_certificate_row_not_issued_by_the_task_ca_certifies_nothing(task, enrolled):
    site_key, coordinator_key, client_id = enrolled
    services.ledger_statement_append(task=task, coordinator_key=coordinator_key, **_statement(task, client_id, 1, site_key))
    # Swap in a certificate from another CA for the same key: verification no longer accepts the entry.
    from federation.fl.certs import create_ca
    from cryptography.hazmat.primitives import serialization

    other_key, other_ca = create_ca("not the federation")
    row = SiteCertificate.objects.get()
    csr = enrolment.csr_check(enrolment.site_csr_create(client_id).csr_pem, hospital_code=client_id)
    foreign = enrolment.certificate_issue(other_key, other_ca, csr)
    SiteCertificate.objects.filter(pk=row.pk).update(certificate_pem=foreign.public_bytes(serialization.Encoding.PEM).decode())

    with pytest.raises(CommandError, match="entry 0"):
        _verify_ledger(task)


def test_revoking_a_participant_revokes_its_certificates(task, enrolled, partner, annotator):
    services.participant_revoke(participant=task.participants.get(hospital=partner), user=annotator)
    assert SiteCertificate.objects.get().revoked_at is not None


def test_a_round_whose_hospital_statement_the_portal_signed_is_refused_whole(task, enrolled, tmp_path):
    """The runner's SuperNodes sign with portal-held keys: for an enrolled hospital that is refused."""
    from federation.fl.flower_app import _save_arrays
    from federation.fl.local import arrays_sha256, initial_arrays
    from federation.models import Round

    site_key, coordinator_key, client_id = enrolled
    arrays = initial_arrays(services.task_spec(task))
    weights = tmp_path / "round-1.npz"
    _save_arrays(weights, arrays)
    portal_held = fl_ledger.load_private_key(
        (services.task_dir(task) / "pki" / "clients" / client_id / "signing.pem").read_bytes())

    def record(key):
        statement = _statement(task, client_id, 1, key)
        return {"round_number": 1, "global_sha256": arrays_sha256(arrays), "num_examples": 4,
                "metrics": {"val_dice": 0.5},
                "clients": {client_id: {"status": "answered", "num_examples": 4, "metrics": statement["metrics"],
                                        "sha256": statement["update_sha256"],
                                        "signature": statement["client_signature"]}}}

    with pytest.raises(ServiceError) as caught:
        services.round_ingest(task=task, record=record(portal_held), weights_path=weights,
                              coordinator_key=coordinator_key)

    assert caught.value.code == "bad_signature"
    assert not Round.objects.filter(task=task).exists() and not LedgerEntry.objects.filter(task=task).exists()
    assert AuditLog.objects.filter(target_type="federated_ledger", detail__refused="bad_signature",
                                   detail__client=client_id, detail__round_number=1).count() == 1

    services.round_ingest(task=task, record=record(site_key), weights_path=weights, coordinator_key=coordinator_key)
    assert Round.objects.filter(task=task).count() == 1
    assert list(LedgerEntry.objects.filter(task=task).values_list("kind", flat=True)) == ["client_update", "aggregation"]
    assert "2 entries, all valid" in _verify_ledger(task)
