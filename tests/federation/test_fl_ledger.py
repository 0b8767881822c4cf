"""The signed hash chain, without Django."""

import dataclasses

import pytest

from federation.fl import ledger


@pytest.fixture
def keys():
    return {"coordinator": ledger.generate_signing_key(), "h1": ledger.generate_signing_key(), "h2": ledger.generate_signing_key()}


def _chain(keys):
    entries, prev = [], ledger.GENESIS_HASH
    rows = [
        ("client_update", "h1", 10, {"loss": 0.5, "dice": 0.7}, 0.9),
        ("client_update", "h2", 30, {"loss": 0.4, "dice": float("nan")}, 0.4),
        ("aggregation", "coordinator", 40, {"dice": 0.75}, None),
    ]
    for index, (kind, client, n, metrics, rep) in enumerate(rows):
        entry = ledger.LedgerEntry(
            task_id="7", index=index, round_number=1, kind=kind, client=client, update_sha256="ab" * 32,
            num_examples=n, metrics=metrics, reputation=rep, prev_hash=prev,
        )
        client_sig = None
        if kind == "client_update":  # made by the client process with its own key
            client_sig = ledger.sign_bytes(keys[client], ledger.client_statement(
                task_id="7", round_number=1, kind=kind, client=client, update_sha256="ab" * 32,
                num_examples=n, metrics=metrics,
            ))
        entry = ledger.sign_entry(entry, coordinator_key=keys["coordinator"], client_signature=client_sig)
        entries.append(entry)
        prev = entry.entry_hash
    return entries


def _verify(entries, keys):
    ledger.verify_chain(
        entries, coordinator_public_key=keys["coordinator"].public_key(),
        client_public_keys={c: k.public_key() for c, k in keys.items()},
    )


def test_a_signed_chain_verifies(keys):
    _verify(_chain(keys), keys)


@pytest.mark.parametrize(
    "position,change,reason",
    [
        (0, {"num_examples": 11}, "client signature"),
        (1, {"metrics": {"loss": 0.1, "dice": float("nan")}}, "client signature"),
        (0, {"reputation": 1.0}, "coordinator signature"),
        (2, {"update_sha256": "cd" * 32}, "client signature"),
        (1, {"prev_hash": "0" * 64}, "previous-hash"),
        (2, {"entry_hash": "f" * 64}, "entry hash"),
        (0, {"coordinator_signature": "00" * 64}, "coordinator signature"),
        (1, {"index": 5}, "out of sequence"),
    ],
)
def test_any_edit_is_caught_at_the_edited_entry(keys, position, change, reason):
    entries = _chain(keys)
    entries[position] = dataclasses.replace(entries[position], **change)
    with pytest.raises(ledger.LedgerError, match=reason) as caught:
        _verify(entries, keys)
    assert caught.value.index == position


def test_deleting_an_entry_breaks_the_chain(keys):
    entries = _chain(keys)
    del entries[1]
    with pytest.raises(ledger.LedgerError) as caught:
        _verify(entries, keys)
    assert caught.value.index == 1


def test_an_update_signed_by_another_client_is_refused(keys):
    entries = _chain(keys)
    forged = dataclasses.replace(entries[0], client="h2")
    forged = ledger.sign_entry(
        dataclasses.replace(forged, client_signature="", coordinator_signature="", entry_hash=""),
        coordinator_key=keys["coordinator"],
        client_signature=ledger.sign_bytes(keys["h1"], ledger.client_statement(
            task_id="7", round_number=1, kind="client_update", client="h2", update_sha256="ab" * 32,
            num_examples=10, metrics=entries[0].metrics,
        )),
    )
    with pytest.raises(ledger.LedgerError, match="client signature") as caught:
        _verify([forged], keys)
    assert caught.value.index == 0


def test_unknown_client_and_missing_signature(keys):
    entries = _chain(keys)
    with pytest.raises(ledger.LedgerError, match="no public key"):
        ledger.verify_chain(entries, coordinator_public_key=keys["coordinator"].public_key(), client_public_keys={})
    with pytest.raises(ValueError, match="client's signature"):
        ledger.sign_entry(dataclasses.replace(entries[0]), coordinator_key=keys["coordinator"])


def test_credits_weigh_examples_by_reputation(keys):
    credits = ledger.credits_from_entries(_chain(keys))
    # h1: 10 × 0.9 = 9; h2: 30 × 0.4 = 12 → shares 9/21 and 12/21; the aggregation earns nothing
    assert credits["h1"]["credit"] == pytest.approx(9.0) and credits["h2"]["credit"] == pytest.approx(12.0)
    assert credits["h1"]["share"] == pytest.approx(9 / 21)
    assert "coordinator" not in credits


def test_key_pem_round_trip(keys):
    key = ledger.load_private_key(ledger.private_key_pem(keys["h1"]))
    public = ledger.load_public_key(ledger.public_key_pem(key))
    assert ledger.public_key_pem(public) == ledger.public_key_pem(keys["h1"])
    with pytest.raises(ValueError):
        ledger.load_public_key(b"not a key")
