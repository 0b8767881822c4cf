"""Ledger: append signed entries to a task's hash chain (each client update with the client's own
signature, then the coordinator's aggregation) and verify the whole chain against the stored public
keys; contribution credits are derived only from a ledger that verifies. The hashing and signing
themselves are plain Python in :mod:`federation.fl.ledger`."""

from __future__ import annotations

import dataclasses

from ..fl import ledger as fl_ledger
from ..models import FederatedTask, LedgerEntry


def _entry_of(row: LedgerEntry) -> fl_ledger.LedgerEntry:
    return fl_ledger.LedgerEntry(
        task_id=str(row.task_id), index=row.index, round_number=row.round_number, kind=row.kind, client=row.client,
        update_sha256=row.update_sha256, num_examples=row.num_examples, metrics=row.metrics,
        reputation=row.reputation, prev_hash=row.prev_hash, client_signature=row.client_signature,
        coordinator_signature=row.coordinator_signature, entry_hash=row.entry_hash,
    )


def _ledger_append(task: FederatedTask, entry: fl_ledger.LedgerEntry, *, coordinator_key, client_signature: str | None) -> LedgerEntry:
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
    client_keys = {
        p.client_id: fl_ledger.load_public_key(p.signing_public_key.encode())
        for p in task.participants.exclude(signing_public_key="")
    }
    try:
        fl_ledger.verify_chain(
            [_entry_of(r) for r in rows],
            coordinator_public_key=fl_ledger.load_public_key(task.coordinator_public_key.encode()),
            client_public_keys=client_keys,
        )
    except fl_ledger.LedgerError as exc:
        row = rows[exc.index] if exc.index < len(rows) else None
        return {"ok": False, "entries": len(rows), "first_bad_index": exc.index,
                "entry_id": row.pk if row else None, "reason": exc.reason}
    return {"ok": True, "entries": len(rows)}


def contribution_credits(*, task: FederatedTask) -> dict:
    """Return contribution credits per client derived from the task's ledger (only when it verifies)."""
    check = ledger_verify(task=task)
    if not check["ok"]:
        return {"verified": False, "credits": {}, "check": check}
    entries = [_entry_of(r) for r in LedgerEntry.objects.filter(task=task).order_by("index")]
    return {"verified": True, "credits": fl_ledger.credits_from_entries(entries), "check": check}
