"""Signed records (issue 9): central accepts a record only from a registered, unrevoked kiosk,
signed with one of its keys, and keeps the signed envelope as evidence.

Each refusal is a dead letter with its reason; none is rejected to the kiosk (a forger with a
real record id must not make central tell the real kiosk to drop its record).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.collector import process_batch
from central.fleet.keys import StaticKeyDirectory
from central.fleet.registry import Registry
from central.ingest import Accept, DeadLetter, classify
from central.store import SQLiteStore
from sync.envelope import decode_ack, records_topic
from sync.envelope_signing import key_id, sign, verify
from sync.outbox import Outbox
from sync.wire_signing import SIGNATURE_BYTES, encode_signed, record_digest, sign_record
from tests import identity as keyring
from tests.pg import StoreFactory

KIOSK = "k-signed-01"
TOPIC = records_topic(KIOSK)
RATING = {"level": "hai_long"}


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    ob = Outbox(tmp_path / "kiosk.db", KIOSK, min_free_disk_bytes=0)
    yield ob  # type: ignore[misc]
    ob.close()


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def directory(*keys: Ed25519PrivateKey) -> StaticKeyDirectory:
    return StaticKeyDirectory({KIOSK: [k.public_key() for k in keys]})


def stored_payload(outbox: Outbox, body: dict[str, object] | None = None) -> bytes:
    outbox.add("rating", body or RATING)
    return outbox.pending()[-1].payload


def test_a_record_signed_by_its_kiosk_is_accepted_with_its_digest_and_key(
    outbox: Outbox, key: Ed25519PrivateKey
) -> None:
    payload = stored_payload(outbox)
    wire = sign_record(payload, key)
    assert sign_record(payload, key) == wire  # a resend is byte-identical
    item = classify(TOPIC, wire, directory(key))
    assert isinstance(item, Accept)
    assert item.envelope == wire
    assert item.digest == record_digest(json.loads(payload))  # the digest ignores the sig
    assert item.key_id == key_id(key.public_key())


@pytest.mark.parametrize("case", ["unsigned", "other-key", "tampered", "bad-sig"])
def test_signature_failures_are_dead_lettered_with_the_reason_never_rejected(
    outbox: Outbox, key: Ed25519PrivateKey, case: str
) -> None:
    payload = stored_payload(outbox)
    env = json.loads(sign_record(payload, key))
    if case == "unsigned":
        env.pop("sig")
        expected = "unsigned"
    elif case == "other-key":
        env = sign("aps-record-v1", env, Ed25519PrivateKey.generate())
        expected = "unknown-key"
    elif case == "tampered":
        env["body"] = {"level": "khong_hai_long"}
        expected = "mismatch"
    else:
        env["sig"]["value"] = "A" * 85
        expected = "bad-sig"
    item = classify(TOPIC, encode_signed(env), directory(key))
    assert isinstance(item, DeadLetter)
    assert item.reason.startswith(expected), item.reason
    assert not item.reject and item.record_id == env["id"]


def test_a_kiosk_not_in_the_registry_or_revoked_is_refused(
    outbox: Outbox, key: Ed25519PrivateKey
) -> None:
    wire = sign_record(stored_payload(outbox), key)
    unknown = classify(TOPIC, wire, StaticKeyDirectory())
    assert isinstance(unknown, DeadLetter) and unknown.reason.startswith("unknown-kiosk")
    keys = directory(key)
    keys.revoke(KIOSK)
    revoked = classify(TOPIC, wire, keys)
    assert isinstance(revoked, DeadLetter) and revoked.reason.startswith("revoked")
    assert not unknown.reject and not revoked.reject


def test_a_forger_with_a_real_record_id_cannot_make_central_reject_it(
    store_factory: StoreFactory, outbox: Outbox, key: Ed25519PrivateKey
) -> None:
    """A copy of the kiosk's record under its real id, with a body central refuses: signed by
    the kiosk it would be rejected (parked for good); signed by anyone else it is not."""
    env = json.loads(stored_payload(outbox))
    bad = {**env, "body": {"level": "so-so"}}
    store = store_factory()
    try:
        forged = encode_signed(sign("aps-record-v1", bad, Ed25519PrivateKey.generate()))
        result = process_batch(
            store, [(TOPIC, forged)], keys=directory(key), signing_key=keyring.CENTRAL_KEY
        )
        assert result.acks == [] and store.parked_record_ids() == set()
        [dead] = store.dead_letters()
        assert dead["reason"].startswith("unknown-key")
        # Malformed envelopes too: only a valid signature by the topic's kiosk may reject.
        broken = {**env, "seq": "one"}
        for signer, rejected in ((Ed25519PrivateKey.generate(), False), (key, True)):
            item = classify(
                TOPIC, encode_signed(sign("aps-record-v1", broken, signer)), directory(key)
            )
            assert isinstance(item, DeadLetter) and item.reason.startswith("bad-envelope")
            assert item.reject is rejected
        own = encode_signed(sign("aps-record-v1", bad, key))
        result = process_batch(
            store, [(TOPIC, own)], keys=directory(key), signing_key=keyring.CENTRAL_KEY
        )
        [(_, ack)] = result.acks
        assert [r.id for r in decode_ack(ack).rejected] == [env["id"]]
    finally:
        store.close()


def test_central_keeps_the_signed_envelope_as_evidence(
    tmp_path: Path, outbox: Outbox, key: Ed25519PrivateKey
) -> None:
    wire = sign_record(stored_payload(outbox), key)
    db = tmp_path / "central.db"
    store = SQLiteStore(db)
    try:
        process_batch(store, [(TOPIC, wire)], keys=directory(key), signing_key=keyring.CENTRAL_KEY)
    finally:
        store.close()
    conn = sqlite3.connect(db)
    try:
        envelope, digest, kid = conn.execute(
            "SELECT envelope, digest, key_id FROM records WHERE kiosk = ?", (KIOSK,)
        ).fetchone()
    finally:
        conn.close()
    assert envelope.encode("utf-8") == wire
    # Anyone holding the kiosk's public key can check the evidence again, later.
    assert verify("aps-record-v1", json.loads(envelope), {kid: key.public_key()}) == kid
    assert digest == record_digest(json.loads(envelope))


def test_kiosk_key_rotation_through_the_registry(
    tmp_path: Path, outbox: Outbox, key: Ed25519PrivateKey
) -> None:
    """Old and new key both accepted while both are held; the old refused once retired."""
    registry = Registry(tmp_path / "central.db")
    try:
        registry.add_kiosk(
            KIOSK,
            office="000.00.14.H56",
            slot=1,
            agency="000.00.14.H56",
            signing_key=key.public_key(),
        )
        new = Ed25519PrivateKey.generate()
        by_old = sign_record(stored_payload(outbox), key)
        by_new = sign_record(stored_payload(outbox, {"level": "rat_hai_long"}), new)
        assert isinstance(classify(TOPIC, by_old, registry), Accept)
        assert isinstance(classify(TOPIC, by_new, registry), DeadLetter)  # not yet enrolled
        new_kid = registry.add_signing_key(KIOSK, new.public_key())
        assert isinstance(classify(TOPIC, by_old, registry), Accept)  # the overlap
        assert isinstance(classify(TOPIC, by_new, registry), Accept)
        registry.retire_signing_key(KIOSK, key_id(key.public_key()))
        refused = classify(TOPIC, by_old, registry)
        assert isinstance(refused, DeadLetter) and refused.reason.startswith("unknown-key")
        accepted = classify(TOPIC, by_new, registry)
        assert isinstance(accepted, Accept) and accepted.key_id == new_kid
        registry.revoke(KIOSK, reason="stolen")
        gone = classify(TOPIC, by_new, registry)
        assert isinstance(gone, DeadLetter) and gone.reason.startswith("revoked")
    finally:
        registry.close()


def test_the_outbox_keeps_room_for_the_signature(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    """A record the outbox takes is still within central's limit once signed."""
    limit = 2048
    ob = Outbox(tmp_path / "k.db", KIOSK, min_free_disk_bytes=0, max_record_bytes=limit)
    try:
        n = 0
        while True:
            try:
                ob.add("support", {"message": "x" * (1500 + n)})
            except Exception:
                break
            n += 10
        biggest = ob.pending()[-1].payload
        wire = sign_record(biggest, key)
        assert len(biggest) + SIGNATURE_BYTES > limit - 10  # we did reach the limit
        assert len(wire) <= limit and len(wire) - len(biggest) <= SIGNATURE_BYTES
        assert isinstance(classify(TOPIC, wire, directory(key), max_bytes=limit), Accept)
    finally:
        ob.close()
