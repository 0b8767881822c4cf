"""Ledger: append signed entries to a task's hash chain (each client update with the client's own
signature, then the coordinator's aggregation) and verify the whole chain against the stored public
keys; contribution credits are derived only from a ledger that verifies. The hashing and signing
themselves are plain Python in :mod:`federation.fl.ledger`.

Whose key verifies a client update: once a hospital has enrolled its own key for the task
(:mod:`.enrolment`), only its enrolled certificates that were issued by the task's CA and not revoked
when the entry was appended; the coordinator holds no private key that can sign for it. A hospital that
never enrolled is verified with the key the portal generated for it (``Participant.signing_public_key``),
and :func:`ledger_portal_held_clients` names such clients.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.api_errors import ServiceError
from portal.models import AuditLog, User
from portal.services import audit_record

from ..fl import ledger as fl_ledger
from ..models import FederatedTask, LedgerEntry, SiteCertificate
from .paths import task_dir


class _ClientKeys:
    """The keys that may sign each client's statements at a given time (see the module docstring)."""

    def __init__(self, task: FederatedTask):
        from ..fl import enrolment

        participants = list(task.participants.all())
        ca_path = task_dir(task) / "pki" / "ca.crt"
        ca_cert = enrolment.certificate_load(ca_path.read_bytes()) if ca_path.is_file() else None
        by_hospital: dict[int, list[tuple[dt.datetime, dt.datetime | None, object]]] = {}
        for row in SiteCertificate.objects.filter(task=task).order_by("enrolled_at"):
            windows = by_hospital.setdefault(row.hospital_id, [])
            cert = enrolment.certificate_load(row.certificate_pem)
            # A certificate the task's CA did not issue (an edited row) certifies nothing, but the hospital
            # still counts as enrolled: the portal-held key no longer speaks for it.
            if ca_cert is not None and enrolment.certificate_issued_by(cert, ca_cert):
                windows.append((row.enrolled_at, row.revoked_at, enrolment.certificate_public_key(cert)))
        self.enrolled: dict[str, list] = {}
        self.portal_held: dict[str, object] = {}
        for p in participants:
            if p.hospital_id in by_hospital:
                self.enrolled[p.client_id] = by_hospital[p.hospital_id]
            elif p.signing_public_key:
                self.portal_held[p.client_id] = fl_ledger.load_public_key(p.signing_public_key.encode())

    def at(self, client_id: str, when: dt.datetime) -> list:
        """Return the public keys that may have signed ``client_id``'s statement appended at ``when``."""
        if client_id in self.enrolled:
            return [key for start, revoked, key in self.enrolled[client_id]
                    if start <= when and (revoked is None or when < revoked)]
        return [self.portal_held[client_id]] if client_id in self.portal_held else []


def _entry_of(row: LedgerEntry) -> fl_ledger.LedgerEntry:
    return fl_ledger.LedgerEntry(
        task_id=str(row.task_id), index=row.index, round_number=row.round_number, kind=row.kind, client=row.client,
        update_sha256=row.update_sha256, num_examples=row.num_examples, metrics=row.metrics,
        reputation=row.reputation, prev_hash=row.prev_hash, client_signature=row.client_signature,
        coordinator_signature=row.coordinator_signature, entry_hash=row.entry_hash,
    )


def _statement_check(task: FederatedTask, entry: fl_ledger.LedgerEntry, client_signature: str | None) -> None:
    """Refuse a client statement whose signature no key of that client verifies right now."""
    keys = _ClientKeys(task).at(entry.client, timezone.now())
    if not client_signature or not fl_ledger.statement_verify(entry, client_signature, keys):
        raise ServiceError(
            _("Round %(round_number)s: the statement of %(client_id)s is not signed with a valid key of that "
              "hospital."), params={"round_number": entry.round_number, "client_id": entry.client},
            code="bad_signature",
        )


def _ledger_append(task: FederatedTask, entry: fl_ledger.LedgerEntry, *, coordinator_key, client_signature: str | None) -> LedgerEntry:
    if entry.kind == fl_ledger.KIND_CLIENT_UPDATE:
        _statement_check(task, entry, client_signature)
    last = LedgerEntry.objects.filter(task=task).order_by("-index").first()
    entry = dataclasses.replace(
        entry, index=0 if last is None else last.index + 1, prev_hash=fl_ledger.GENESIS_HASH if last is None else last.entry_hash
    )
    signed = fl_ledger.sign_entry(entry, coordinator_key=coordinator_key, client_signature=client_signature)
    return LedgerEntry.objects.create(
        task=task, index=signed.index, round_number=signed.round_number, kind=signed.kind, client=signed.client,
        update_sha256=signed.update_sha256, num_examples=signed.num_examples, metrics=signed.metrics,
        reputation=signed.reputation, prev_hash=signed.prev_hash, client_signature=signed.client_signature,
        coordinator_signature=signed.coordinator_signature, entry_hash=signed.entry_hash,
    )


def ledger_verify(*, task: FederatedTask) -> dict:
    """Check a task's whole ledger.

    Returns
    -------
    dict
        ``{"ok": True, "entries": n}`` or ``{"ok": False, "entries": n, "first_bad_index": i,
        "entry_id": pk, "reason": str}``.
    """
    rows = list(LedgerEntry.objects.filter(task=task).order_by("index"))
    if not task.coordinator_public_key:
        return {"ok": not rows, "entries": len(rows), **({} if not rows else {"first_bad_index": 0, "entry_id": rows[0].pk, "reason": "no coordinator key"})}
    keys = _ClientKeys(task)
    appended_at = {r.index: r.created_at for r in rows}
    try:
        fl_ledger.verify_chain(
            [_entry_of(r) for r in rows],
            coordinator_public_key=fl_ledger.load_public_key(task.coordinator_public_key.encode()),
            client_public_keys={},
            client_keys_for=lambda e: keys.at(e.client, appended_at[e.index]),
        )
    except fl_ledger.LedgerError as exc:
        row = rows[exc.index] if exc.index < len(rows) else None
        return {"ok": False, "entries": len(rows), "first_bad_index": exc.index,
                "entry_id": row.pk if row else None, "reason": exc.reason}
    return {"ok": True, "entries": len(rows)}


def ledger_portal_held_clients(*, task: FederatedTask) -> list[str]:
    """Return the client ids whose statements verify with a key the portal generated (never enrolled)."""
    return sorted(_ClientKeys(task).portal_held)


def ledger_statement_append(
    *, task: FederatedTask, client_id: str, round_number: int, update_sha256: str, num_examples: int,
    metrics: dict, client_signature: str, coordinator_key, reputation: float | None = None,
    actor: User | None = None,
) -> LedgerEntry:
    """Append one hospital's signed statement (a client update) to the task's ledger, co-signed by the coordinator.

    Parameters
    ----------
    client_signature : str
        Hex Ed25519 signature over :func:`federation.fl.ledger.client_statement`, made at the site with
        its own key.
    coordinator_key : Ed25519PrivateKey
        The coordinator's ledger key: it co-signs and chains, it cannot sign for the hospital.

    Raises
    ------
    ServiceError
        ``bad_signature``: no key of that hospital valid now (its enrolled, unrevoked certificates, or the
        portal-held key of a hospital that never enrolled) verifies the signature. Nothing is appended
        and the refusal is audit-logged.
    """
    entry = fl_ledger.LedgerEntry(
        task_id=str(task.pk), index=0, round_number=round_number, kind=fl_ledger.KIND_CLIENT_UPDATE,
        client=client_id, update_sha256=update_sha256, num_examples=int(num_examples), metrics=dict(metrics),
        reputation=reputation,
    )
    try:
        with transaction.atomic():
            return _ledger_append(task, entry, coordinator_key=coordinator_key, client_signature=client_signature)
    except ServiceError as exc:
        ledger_refusal_record(task=task, client_id=client_id, round_number=round_number, code=exc.code, actor=actor)
        raise


def ledger_refusal_record(*, task: FederatedTask, client_id: str, round_number: int, code: str,
                          actor: User | None = None) -> None:
    """Audit-log a statement refused from the ledger (ids only)."""
    participant = task.participants.filter(client_id=client_id).select_related("hospital").first()
    audit_record(actor=actor, action=AuditLog.Action.CREATE, target_type="federated_ledger", target_id=task.pk,
                 hospital=participant.hospital if participant else None,
                 detail={"refused": code, "client": client_id, "round_number": int(round_number)})


def contribution_credits(*, task: FederatedTask) -> dict:
    """Return contribution credits per client derived from the task's ledger (only when it verifies)."""
    check = ledger_verify(task=task)
    if not check["ok"]:
        return {"verified": False, "credits": {}, "check": check}
    entries = [_entry_of(r) for r in LedgerEntry.objects.filter(task=task).order_by("index")]
    return {"verified": True, "credits": fl_ledger.credits_from_entries(entries), "check": check}
