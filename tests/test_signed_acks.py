"""Signed acks naming what central stored (issue 9).

The attack of the issue: a forged ack published with the collector's broker credential made
a kiosk mark 4 dossiers synced that central never had (and the purge would then have
deleted them). Now an ack counts only if central's key signed it, it names this kiosk, and
each acked id's digest is the kiosk's own record's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.collector import Collector, CollectorSettings, process_batch
from central.config import load_central_config
from central.fleet.lifecycle import KioskState
from central.mosquitto import MosquittoProcess
from central.service import CentralService
from central.store import SQLiteStore
from sync.client import SyncClient, SyncCounters, SyncSettings, accept_ack
from sync.envelope import Ack, Rejection, acks_topic, decode_ack, records_topic
from sync.outbox import Outbox
from sync.wire_signing import AckRefused, check_ack, record_digest, sign_ack, sign_record
from tests import identity as keyring
from tests import stack
from tests.mqtt_probe import probe
from tests.waiting import wait_until

KIOSK = "k-acks-01"


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    ob = Outbox(tmp_path / "kiosk.db", KIOSK, min_free_disk_bytes=0)
    yield ob  # type: ignore[misc]
    ob.close()


def _queued(ob: Outbox, n: int) -> list[dict[str, object]]:
    with ob.transaction() as tx:
        for i in range(n):
            tx.add("dossier", stack.dossier_body(i + 1))
    return [json.loads(p.payload) for p in ob.pending()]


def _check(ob: Outbox, payload: bytes) -> Ack:
    return check_ack(
        payload,
        kiosk=KIOSK,
        central_keys=keyring.kiosk_identity().central_keys.keys,
        local_digests=ob.record_digests,
    ).ack


def test_centrals_ack_names_the_digest_of_each_stored_envelope(
    tmp_path: Path, outbox: Outbox
) -> None:
    records = _queued(outbox, 3)
    wire = [
        (records_topic(KIOSK), sign_record(p.payload, keyring.KIOSK_KEY)) for p in outbox.pending()
    ]
    store = SQLiteStore(tmp_path / "central.db")
    try:
        [(ack_topic, first)] = process_batch(store, wire, **keyring.CENTRAL).acks
        [(_, again)] = process_batch(store, wire, **keyring.CENTRAL).acks  # duplicates
    finally:
        store.close()
    assert ack_topic == acks_topic(KIOSK)
    for payload in (first, again):
        ack = decode_ack(payload)
        assert ack.kiosk == KIOSK
        assert list(ack.acked) == [r["id"] for r in records]
        assert list(ack.digests) == [record_digest(r) for r in records]
        assert _check(outbox, payload).acked == ack.acked  # the kiosk accepts it


@pytest.mark.parametrize("case", ["unsigned", "forger", "other-kiosk", "no-digests", "rejects"])
def test_an_ack_not_from_central_for_this_kiosk_marks_nothing(outbox: Outbox, case: str) -> None:
    records = _queued(outbox, 2)
    ids = tuple(str(r["id"]) for r in records)
    digests = tuple(record_digest(r) for r in records)
    ack = Ack(kiosk=KIOSK, acked=ids, digests=digests)
    if case == "unsigned":
        payload, reason = ack.encode(), "unsigned"
    elif case == "forger":
        payload, reason = sign_ack(ack, Ed25519PrivateKey.generate()), "unknown-key"
    elif case == "other-kiosk":
        other = Ack(kiosk="k-acks-02", acked=ids, digests=digests)
        payload, reason = sign_ack(other, keyring.CENTRAL_KEY), "wrong-kiosk"
    elif case == "no-digests":
        payload, reason = sign_ack(Ack(kiosk=KIOSK, acked=ids), keyring.CENTRAL_KEY), "no-digests"
    else:  # a forged rejection would park the records for good
        forged = Ack(kiosk=KIOSK, rejected=tuple(Rejection(id=i, reason="x") for i in ids))
        payload, reason = sign_ack(forged, Ed25519PrivateKey.generate()), "unknown-key"
    with pytest.raises(AckRefused) as refused:
        _check(outbox, payload)
    assert refused.value.reason == reason
    counters = SyncCounters()
    got = accept_ack(
        payload, kiosk=KIOSK, identity=keyring.kiosk_identity(), outbox=outbox, counters=counters
    )
    assert got is None and counters.acks_refused == 1
    assert {r["state"] for r in outbox.records()} == {"queued"}


def test_an_acked_id_whose_digest_is_not_the_kiosks_record_stays_unsynced(outbox: Outbox) -> None:
    """Central's own signature, but the digest of another envelope under one id: that id is
    left out (counted), the others are marked."""
    a, b = _queued(outbox, 2)
    other = record_digest({**a, "body": {"code": "x"}})
    payload = sign_ack(
        Ack(kiosk=KIOSK, acked=(str(a["id"]), str(b["id"])), digests=(other, record_digest(b))),
        keyring.CENTRAL_KEY,
    )
    counters = SyncCounters()
    ack = accept_ack(
        payload, kiosk=KIOSK, identity=keyring.kiosk_identity(), outbox=outbox, counters=counters
    )
    assert ack is not None and ack.acked == (b["id"],) and counters.ack_mismatches == 1


def test_a_forged_ack_with_the_collectors_credential_marks_nothing_synced(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    """The issue's attack, on a real broker with the shipped ACLs: the forger holds a
    collector's credential (so it may publish acks and read records), copies the kiosk's
    records off the wire and acks each with its exact digest, in central's format, signed
    with its own key; and the old unsigned format too. Nothing is marked synced; then a
    real collector arrives and every record is stored and acked."""
    db = tmp_path / "kiosk.db"
    ids = stack.fill_outbox(db, 4, kiosk=KIOSK)
    forger = probe(broker.collector("aps-collector-evil"), "aps-collector-evil")
    assert forger.subscribe(f"aps/v1/{KIOSK}/up/records") == [1]
    kiosk = SyncClient(
        database=db,
        kiosk=KIOSK,
        mqtt_settings=broker.kiosk(KIOSK),
        settings=SyncSettings(tick_s=0.05, ack_timeout_s=1),
        identity=keyring.kiosk_identity(),
    )
    kiosk.start()
    central_db = tmp_path / "central.db"
    collector = None
    try:
        wait_until(lambda: len({m for _, m in forger.messages}) >= 4, 30, "records seen")
        seen = {}
        for _, m in forger.messages:
            env = json.loads(m)
            seen[env["id"]] = record_digest(env)
        assert sorted(seen) == sorted(ids)
        forged = Ack(kiosk=KIOSK, acked=tuple(seen), digests=tuple(seen.values()))
        evil_key = Ed25519PrivateKey.generate()
        for payload in (sign_ack(forged, evil_key), Ack(acked=tuple(seen)).encode()):
            forger.client.publish(acks_topic(KIOSK), payload, qos=1).wait_for_publish(10)
        wait_until(lambda: kiosk.counters.acks_refused >= 2, 30, "forged acks refused")
        assert kiosk.counters.acked == 0 and stack.kiosk_acked(db) == 0
        assert set(stack.kiosk_states(db).values()) == {"queued"}
        # The real central: its signed acks are taken.
        collector = Collector(
            store_factory=lambda: SQLiteStore(central_db),
            mqtt_settings=broker.collector(),
            settings=CollectorSettings(reconnect_min_s=0.1),
            **keyring.CENTRAL,
        )
        verified: list[str] = []
        collector.on_verified = verified.append
        collector.start()
        wait_until(lambda: stack.kiosk_acked(db) == 4, 60, "records acked by central")
        assert sorted(stack.central_ids(central_db, KIOSK)) == sorted(ids)
        assert verified == [KIOSK]  # once, after its first verified, committed record
    finally:
        kiosk.stop()
        if collector is not None:
            collector.stop()
        forger.client.loop_stop()
        forger.client.disconnect()


def test_the_service_marks_a_pending_kiosk_active_on_its_first_verified_record(
    tmp_path: Path,
) -> None:
    db = tmp_path / "central.db"
    cfg = load_central_config(stack.write_central_config(tmp_path / "c.toml", db, 1, kiosks=()))
    service = CentralService(cfg)
    service.registry.add_kiosk(
        KIOSK,
        office="H56",
        slot=1,
        agency="000.00.14.H56",
        signing_key=keyring.KIOSK_KEY.public_key(),
    )
    assert service.collector.on_verified is not None
    service.collector.on_verified(KIOSK)
    entry = service.registry.get(KIOSK)
    assert entry is not None and entry.state is KioskState.ACTIVE and entry.connected_at
