"""Site enrolment: one-time invitation tokens for a hospital's node, the CA signing the node's own CSR
against a token, and revocation of the certificate it got. The node's private key never reaches the
coordinator; the certificate's Ed25519 key is what verifies the hospital's ledger statements
(:mod:`.ledger`). CSR checks and certificate issuing are plain Python in :mod:`federation.fl.enrolment`."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, Hospital, User
from portal.services import audit_record

from ..models import FederatedTask, Participant, SiteCertificate, SiteInvitation
from .paths import superlink_hosts, task_dir

SITE_INVITATION_TTL = dt.timedelta(hours=24)
SITE_CERTIFICATE_DAYS = 365
_CLOSED = (FederatedTask.Status.CANCELLED, FederatedTask.Status.COMPLETED, FederatedTask.Status.FAILED)


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def federation_ca(task: FederatedTask):
    """Return ``(ca_key, ca_certificate)`` of the task's federation CA (the TLS CA), creating it once.

    Returns
    -------
    tuple
        An EC P-384 private key and its self-signed ``cryptography.x509.Certificate``.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from ..fl.certs import create_federation_material

    paths = create_federation_material(task_dir(task) / "pki", [], hosts=superlink_hosts())
    ca_key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    return ca_key, x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())


@transaction.atomic
def site_invite(*, task: FederatedTask, hospital: Hospital, user: User | None = None,
                ttl: dt.timedelta = SITE_INVITATION_TTL) -> tuple[SiteInvitation, str]:
    """Create a one-time enrolment token for ``hospital``'s node in ``task``.

    The token is ``<hospital code>.<43 URL-safe characters>`` (256 random bits, :func:`secrets.token_urlsafe`);
    only its SHA-256 is stored. The hospital code in it tells the node which name its CSR must carry.

    Returns
    -------
    (SiteInvitation, str)
        The stored invitation and the token, shown once.

    Raises
    ------
    ServiceError
        The hospital is not an invited or accepted client of the task (``not_a_participant``); the task
        has ended (``task_closed``).
    """
    participant = Participant.objects.filter(task=task, hospital=hospital).first()
    if participant is None or participant.status not in (Participant.Status.INVITED, Participant.Status.ACCEPTED):
        raise ServiceError(_("Hospital %(code)s is not a client of this task."), params={"code": hospital.code},
                           code="not_a_participant")
    if task.status in _CLOSED:
        raise ServiceError(_("The task has ended; no site can enrol in it."), code="task_closed")
    token = f"{hospital.code}.{secrets.token_urlsafe(32)}"
    invitation = SiteInvitation(task=task, hospital=hospital, token_sha256=_token_sha256(token),
                                expires_at=timezone.now() + ttl, created_by=user if user and user.pk else None)
    invitation.full_clean()
    invitation.save()
    audit_record(actor=user, action=AuditLog.Action.CREATE, target_type="federation_site_invitation",
                 target_id=invitation.pk, hospital=hospital,
                 detail={"task": task.pk, "expires_at": invitation.expires_at.isoformat()})
    return invitation, token


@transaction.atomic
def _site_enrol(*, token: str, csr_pem: bytes, node_auth_public_key: str,
                label_statistics: dict | None) -> tuple[SiteCertificate, str]:
    from cryptography.hazmat.primitives import serialization

    from ..fl import enrolment

    def refuse(message, code: str, status_code: int = 400, params=None) -> ServiceError:
        error = ServiceError(message, params=params, code=code, status_code=status_code)
        error.invitation = invitation  # for the audit entry of the refusal
        return error

    invitation = (SiteInvitation.objects.select_for_update().select_related("task", "hospital")
                  .filter(token_sha256=_token_sha256(token)).first())
    if invitation is None:
        raise refuse(_("Unknown enrolment token."), "invalid_token", 403)
    if invitation.used_at is not None:
        raise refuse(_("This enrolment token was already used."), "token_used", 409)
    if invitation.expires_at <= timezone.now():
        raise refuse(_("This enrolment token has expired."), "token_expired", 410)
    participant = Participant.objects.filter(task=invitation.task, hospital=invitation.hospital).first()
    if participant is None or participant.status not in (Participant.Status.INVITED, Participant.Status.ACCEPTED):
        raise refuse(_("Hospital %(code)s is not a client of this task."), "not_a_participant", 403,
                     {"code": invitation.hospital.code})
    if invitation.task.status in _CLOSED:
        raise refuse(_("The task has ended; no site can enrol in it."), "task_closed", 409)
    try:
        csr = enrolment.csr_check(csr_pem, hospital_code=invitation.hospital.code)
        node_key = enrolment.node_auth_public_key_check(node_auth_public_key) if node_auth_public_key else ""
        stats = None
        if label_statistics is not None and node_key:
            stats = enrolment.label_statistics_check(
                label_statistics, [int(e["index"]) for e in invitation.task.label_table])
    except enrolment.EnrolmentError as exc:
        raise refuse(exc.template, exc.code, 400, exc.params) from exc
    if label_statistics is not None and not node_key:
        raise refuse(_("Label statistics come with a node key: only a site that runs its own node sends them."),
                     "node_key_required", 400)
    if stats is not None and participant.status == Participant.Status.INVITED \
            and invitation.task.status != FederatedTask.Status.DRAFT:
        raise refuse(_("The task has started; invitations are closed."), "task_started", 409)
    # Consume first, conditionally: of two concurrent requests with one token only one gets a certificate.
    if not SiteInvitation.objects.filter(pk=invitation.pk, used_at__isnull=True).update(used_at=timezone.now()):
        raise refuse(_("This enrolment token was already used."), "token_used", 409)
    ca_key, ca_cert = federation_ca(invitation.task)
    cert = enrolment.certificate_issue(ca_key, ca_cert, csr, days=SITE_CERTIFICATE_DAYS)
    row = SiteCertificate(
        task=invitation.task, hospital=invitation.hospital, invitation=invitation,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        serial_number=f"{cert.serial_number:x}", fingerprint_sha256=enrolment.certificate_fingerprint(cert),
        node_auth_public_key=node_key,
    )
    row.full_clean()
    row.save()
    if stats is not None:
        # The hospital's node enrolled with its own data: that is its acceptance (an invitation still open
        # is accepted), and only the counts of its data reach the coordinator.
        participant.label_statistics = stats
        participant.datasets = []
        if participant.status == Participant.Status.INVITED:
            participant.status = Participant.Status.ACCEPTED
            participant.responded_at = timezone.now()
        participant.save(update_fields=["label_statistics", "datasets", "status", "responded_at"])
        audit_record(actor=None, action=AuditLog.Action.UPDATE, target_type="federated_participant",
                     target_id=participant.pk, hospital=invitation.hospital,
                     detail={"accepted": True, "site_node": row.fingerprint_sha256, "cases": stats["cases"]})
    audit_record(actor=None, action=AuditLog.Action.CREATE, target_type="federation_site_certificate",
                 target_id=row.pk, hospital=invitation.hospital,
                 detail={"task": invitation.task_id, "fingerprint_sha256": row.fingerprint_sha256})
    return row, ca_cert.public_bytes(serialization.Encoding.PEM).decode()


def site_enrol(*, token: str, csr_pem: bytes | str, node_auth_public_key: str = "",
               label_statistics: dict | None = None) -> tuple[SiteCertificate, str]:
    """Certify a site's own key: check the token and the CSR, consume the token, store the certificate.

    ``node_auth_public_key`` is the OpenSSH EC P-384 key the site's own SuperNode will authenticate with
    (:func:`federation.fl.enrolment.node_auth_key_create`); a site that sends one runs its node itself
    (``federation_node run``) and the runner registers that key with the SuperLink instead of starting a
    SuperNode for the hospital on the coordinator. ``label_statistics`` (counts per label of the data
    that node trains on, never images) make the enrolment the hospital's acceptance: the participant is
    accepted with them and no dataset on the coordinator.

    Returns
    -------
    (SiteCertificate, str)
        The stored certificate and the CA's PEM (what the node verifies the coordinator's TLS against).

    Raises
    ------
    ServiceError
        ``invalid_token`` (403), ``token_used`` (409), ``token_expired`` (410), ``not_a_participant``
        (403: the hospital was revoked or declined since), ``task_closed`` (409), ``invalid_csr``,
        ``csr_wrong_hospital``, ``invalid_node_key``, ``invalid_label_statistics`` or ``node_key_required``
        (400). Each refusal is audit-logged; nothing stored changes and the token
        stays usable unless it was the reason.
    """
    if isinstance(csr_pem, str):
        csr_pem = csr_pem.encode("utf-8")
    try:
        return _site_enrol(token=str(token), csr_pem=csr_pem, node_auth_public_key=str(node_auth_public_key or ""),
                           label_statistics=label_statistics)
    except ServiceError as exc:
        invitation = getattr(exc, "invitation", None)
        audit_record(actor=None, action=AuditLog.Action.CREATE, target_type="federation_site_certificate",
                     target_id="", hospital=invitation.hospital if invitation else None,
                     detail={"refused": exc.code, **({"task": invitation.task_id, "invitation": invitation.pk}
                                                     if invitation else {})})
        raise


@transaction.atomic
def site_certificate_revoke(*, task: FederatedTask, hospital: Hospital, user: User | None = None) -> int:
    """Revoke every live certificate of ``hospital`` in ``task``; return how many were revoked.

    Statements appended after the revocation no longer verify with them; earlier ones still do.
    """
    now = timezone.now()
    ids = list(SiteCertificate.objects.filter(task=task, hospital=hospital, revoked_at__isnull=True)
               .values_list("pk", flat=True))
    SiteCertificate.objects.filter(pk__in=ids).update(revoked_at=now)
    for pk in ids:
        audit_record(actor=user, action=AuditLog.Action.UPDATE, target_type="federation_site_certificate",
                     target_id=pk, hospital=hospital, detail={"task": task.pk, "revoked": True})
    return len(ids)
