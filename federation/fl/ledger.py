"""A hash-chained ledger of client updates and aggregations, signed with Ed25519.

Each entry's *payload* (task, index, round, kind, client, SHA-256 of the update, number of examples,
metrics, reputation, previous entry's hash) is serialised canonically (JSON, sorted keys, no spaces,
UTF-8). The client signs its *statement* — the part it knows when it sends the update: task, round,
kind, client, SHA-256, examples, metrics — with its own Ed25519 key (RFC 8032) inside its own process;
the coordinator signs the payload followed by the client's signature; the entry hash is ``SHA-256(payload ‖ client_signature ‖ coordinator_signature)``
and the next entry stores it as ``prev_hash``. Changing any stored field, re-ordering, deleting or
inserting an entry therefore breaks either a signature or the chain. The first entry's ``prev_hash`` is
:data:`GENESIS_HASH`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "GENESIS_HASH",
    "KIND_CLIENT_UPDATE",
    "KIND_AGGREGATION",
    "LedgerEntry",
    "LedgerError",
    "canonical_payload",
    "client_statement",
    "statement_verify",
    "sign_entry",
    "verify_chain",
    "generate_signing_key",
    "private_key_pem",
    "public_key_pem",
    "load_private_key",
    "load_public_key",
    "sign_bytes",
    "credits_from_entries",
]

GENESIS_HASH = "0" * 64
KIND_CLIENT_UPDATE = "client_update"
KIND_AGGREGATION = "aggregation"
COORDINATOR = "coordinator"


class LedgerError(ValueError):
    """An entry that fails verification; ``index`` is the first bad entry's position."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"entry {index}: {reason}")
        self.index = index
        self.reason = reason


def _clean(value):
    """Make metrics JSON-canonical: floats rounded to 12 significant digits, NaN/inf as strings."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float) or hasattr(value, "__float__"):
        f = float(value)
        if not math.isfinite(f):
            return str(f)
        return float(f"{f:.12g}")
    raise TypeError(f"cannot put {type(value).__name__} in a ledger entry")


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger entry.

    Attributes
    ----------
    task_id : str
    index : int
        0-based position in the task's chain.
    round_number : int
        1-based round.
    kind : str
        :data:`KIND_CLIENT_UPDATE` or :data:`KIND_AGGREGATION`.
    client : str
        Client (hospital) id of an update; ``"coordinator"`` for an aggregation.
    update_sha256 : str
        Hex SHA-256 of the serialised weights (the update, or the aggregated global model).
    num_examples : int
        Training examples behind the update (the sum over clients for an aggregation).
    metrics : dict
        Loss, Dice, ... (JSON values).
    reputation : float or None
        The client's reputation after the round (None when not computed, e.g. under SecAgg+).
    prev_hash : str
    client_signature, coordinator_signature : str
        Hex Ed25519 signatures (an aggregation is signed by the coordinator in both places).
    entry_hash : str
    """

    task_id: str
    index: int
    round_number: int
    kind: str
    client: str
    update_sha256: str
    num_examples: int
    metrics: dict = field(default_factory=dict)
    reputation: float | None = None
    prev_hash: str = GENESIS_HASH
    client_signature: str = ""
    coordinator_signature: str = ""
    entry_hash: str = ""


def canonical_payload(entry: LedgerEntry) -> bytes:
    """Return the bytes every signature and the entry hash cover (signatures and hash excluded)."""
    payload = {
        "task_id": str(entry.task_id),
        "index": int(entry.index),
        "round_number": int(entry.round_number),
        "kind": str(entry.kind),
        "client": str(entry.client),
        "update_sha256": str(entry.update_sha256),
        "num_examples": int(entry.num_examples),
        "metrics": _clean(entry.metrics or {}),
        "reputation": None if entry.reputation is None else _clean(float(entry.reputation)),
        "prev_hash": str(entry.prev_hash),
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def client_statement(
    *, task_id, round_number: int, kind: str, client: str, update_sha256: str, num_examples: int, metrics: Mapping
) -> bytes:
    """Return the bytes a client signs for its update (what it knows before the coordinator orders it)."""
    statement = {
        "task_id": str(task_id),
        "round_number": int(round_number),
        "kind": str(kind),
        "client": str(client),
        "update_sha256": str(update_sha256),
        "num_examples": int(num_examples),
        "metrics": _clean(dict(metrics or {})),
    }
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _statement_of(entry: LedgerEntry) -> bytes:
    return client_statement(
        task_id=entry.task_id, round_number=entry.round_number, kind=entry.kind, client=entry.client,
        update_sha256=entry.update_sha256, num_examples=entry.num_examples, metrics=entry.metrics,
    )


def _entry_hash(payload: bytes, client_signature: str, coordinator_signature: str) -> str:
    return hashlib.sha256(payload + bytes.fromhex(client_signature) + bytes.fromhex(coordinator_signature)).hexdigest()


def sign_bytes(private_key: Ed25519PrivateKey, data: bytes) -> str:
    """Return the hex Ed25519 signature of ``data``."""
    return private_key.sign(data).hex()


def sign_entry(
    entry: LedgerEntry,
    *,
    coordinator_key: Ed25519PrivateKey,
    client_key: Ed25519PrivateKey | None = None,
    client_signature: str | None = None,
) -> LedgerEntry:
    """Return ``entry`` with both signatures and its hash filled in.

    The client's signature over :func:`client_statement` is either computed from ``client_key`` or
    passed in (made by the client process with its own key); an aggregation is signed by the
    coordinator in both places.

    Raises
    ------
    ValueError
        Neither a client key nor a client signature for a client update.
    """
    payload = canonical_payload(entry)
    if client_signature is None:
        if client_key is None:
            if entry.kind != KIND_AGGREGATION:
                raise ValueError("a client update needs the client's signature")
            client_key = coordinator_key
        client_signature = sign_bytes(client_key, _statement_of(entry))
    coordinator_signature = sign_bytes(coordinator_key, payload + bytes.fromhex(client_signature))
    return replace(
        entry,
        client_signature=client_signature,
        coordinator_signature=coordinator_signature,
        entry_hash=_entry_hash(payload, client_signature, coordinator_signature),
    )


def statement_verify(entry: LedgerEntry, client_signature: str, public_keys: Sequence[Ed25519PublicKey]) -> bool:
    """Return whether ``client_signature`` (hex) over ``entry``'s client statement verifies with one of the keys."""
    statement = _statement_of(entry)
    return any(_verify(key, client_signature, statement) for key in public_keys)


def _verify(public_key: Ed25519PublicKey, signature_hex: str, data: bytes) -> bool:
    try:
        public_key.verify(bytes.fromhex(signature_hex), data)
        return True
    except (InvalidSignature, ValueError):
        return False


def verify_chain(
    entries: Sequence[LedgerEntry],
    *,
    coordinator_public_key: Ed25519PublicKey,
    client_public_keys: Mapping[str, Ed25519PublicKey],
    client_keys_for: Callable[[LedgerEntry], Sequence[Ed25519PublicKey]] | None = None,
) -> None:
    """Check a whole chain, in order.

    ``client_keys_for``, when given, replaces ``client_public_keys`` for client updates: it returns the
    keys that may have signed that entry (e.g. the hospital's enrolled certificates that were not revoked
    when it was appended); the client signature must verify with one of them.

    Checks, for entry ``i``: its index is ``i``; ``prev_hash`` equals entry ``i − 1``'s hash
    (:data:`GENESIS_HASH` for the first); the client's signature over its statement verifies with that
    client's public key (the coordinator's for an aggregation); the coordinator's signature verifies; the stored hash equals
    the recomputed one.

    Raises
    ------
    LedgerError
        At the first entry that fails, with its index and the reason.
    """
    previous = GENESIS_HASH
    for position, entry in enumerate(entries):
        if entry.index != position:
            raise LedgerError(position, f"index {entry.index} out of sequence (expected {position})")
        if entry.prev_hash != previous:
            raise LedgerError(position, "previous-hash link broken")
        try:
            payload = canonical_payload(entry)
        except (TypeError, ValueError) as exc:
            raise LedgerError(position, f"unreadable payload: {exc}") from exc
        if entry.kind == KIND_AGGREGATION:
            signers = [coordinator_public_key]
        elif entry.kind == KIND_CLIENT_UPDATE:
            signers = list(client_keys_for(entry)) if client_keys_for is not None else (
                [client_public_keys[entry.client]] if entry.client in client_public_keys else [])
            if not signers:
                raise LedgerError(position, f"no public key for client {entry.client!r}")
        else:
            raise LedgerError(position, f"unknown kind {entry.kind!r}")
        statement = _statement_of(entry)
        if not any(_verify(key, entry.client_signature, statement) for key in signers):
            raise LedgerError(position, "client signature does not verify")
        try:
            cosigned = payload + bytes.fromhex(entry.client_signature)
        except ValueError as exc:
            raise LedgerError(position, "client signature is not hex") from exc
        if not _verify(coordinator_public_key, entry.coordinator_signature, cosigned):
            raise LedgerError(position, "coordinator signature does not verify")
        if _entry_hash(payload, entry.client_signature, entry.coordinator_signature) != entry.entry_hash:
            raise LedgerError(position, "entry hash does not match its content")
        previous = entry.entry_hash


def credits_from_entries(entries: Sequence[LedgerEntry]) -> dict[str, dict]:
    """Derive contribution credits per client from (verified) ledger entries.

    A client's credit for a round is ``num_examples × reputation`` of its update entry (reputation 1
    when none was computed, e.g. under secure aggregation); its share is its credit over the sum.

    Returns
    -------
    dict
        Client → ``{"rounds": int, "examples": int, "credit": float, "share": float}``.
    """
    credits: dict[str, dict] = {}
    for entry in entries:
        if entry.kind != KIND_CLIENT_UPDATE:
            continue
        row = credits.setdefault(entry.client, {"rounds": 0, "examples": 0, "credit": 0.0, "share": 0.0})
        row["rounds"] += 1
        row["examples"] += int(entry.num_examples)
        row["credit"] += int(entry.num_examples) * (1.0 if entry.reputation is None else float(entry.reputation))
    total = sum(r["credit"] for r in credits.values())
    for row in credits.values():
        row["share"] = row["credit"] / total if total > 0 else 0.0
    return credits


def generate_signing_key() -> Ed25519PrivateKey:
    """Return a fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """Return the key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """Return the public key as SubjectPublicKeyInfo PEM."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Read a PKCS#8 PEM Ed25519 private key.

    Raises
    ------
    ValueError
        Not PEM, or not an Ed25519 key.
    """
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Read a SubjectPublicKeyInfo PEM Ed25519 public key.

    Raises
    ------
    ValueError
        Not PEM, or not an Ed25519 key.
    """
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key
