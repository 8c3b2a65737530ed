"""Garbage at central: every bad message dead-lettered with a reason; nothing else lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import records_topic
from sync.ids import new_stream_id, new_ulid
from sync.mqtt_link import MqttSettings, make_paho_client
from tests import identity as keyring
from tests import stack
from tests.waiting import wait_until


def _publisher(settings: MqttSettings, client_id: str) -> mqtt.Client:
    c = make_paho_client(client_id, settings)
    c.connect("127.0.0.1", settings.port)
    c.loop_start()
    return c


def test_garbage_is_dead_lettered_and_good_records_still_flow(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central_db, kiosk_db = tmp_path / "central.db", tmp_path / "kiosk.db"
    collector = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector("aps-c-garbage"),
        settings=CollectorSettings(client_id="aps-c-garbage"),
        **keyring.CENTRAL,
    )
    collector.start()
    wait_until(collector.network.connected.is_set, 30, "collector connected")
    evil = _publisher(broker.kiosk("k-evil"), "evil")  # a real kiosk credential, gone bad
    good_envelope = {
        "v": 1,
        "type": "record",
        "kind": "rating",
        "kiosk": "k-evil",
        "stream": new_stream_id(),
        "seq": 1,
        "id": new_ulid(),
        "created": "2026-11-26T09:00:00+07:00",
        "body": {"level": "hai_long"},
    }
    garbage = [
        (records_topic("k-evil"), os.urandom(512), "bad-json"),
        (records_topic("k-evil"), b'{"v": 1, "type": "record", "hello": 1}', "bad-envelope"),
        (records_topic("k-evil"), b"[1, 2, 3]", "not-an-object"),
        (
            records_topic("k-evil"),
            json.dumps({**good_envelope, "v": 99}).encode(),
            "unknown-version",
        ),
        # k-evil publishing a record that claims to be another kiosk's.
        (
            records_topic("k-evil"),
            json.dumps({**good_envelope, "kiosk": stack.KIOSK}).encode(),
            "kiosk-mismatch",
        ),
        (records_topic("k-evil"), b"x" * (50 * 1024 * 1024), "oversize"),
        (
            records_topic("k-evil"),
            keyring.signed(
                json.dumps({**good_envelope, "id": new_ulid(), "body": {"level": "so-so"}}).encode()
            ),
            "bad-body",
        ),
        # Well-formed records, unsigned or signed with a key that is not k-evil's.
        (records_topic("k-evil"), json.dumps(good_envelope).encode(), "unsigned"),
        (
            records_topic("k-evil"),
            keyring.signed(json.dumps(good_envelope).encode(), Ed25519PrivateKey.generate()),
            "unknown-key",
        ),
    ]
    for t, payload, _ in garbage:
        evil.publish(t, payload, qos=1).wait_for_publish(30)
    store = SQLiteStore(central_db)
    try:
        wait_until(lambda: len(store.dead_letters()) >= len(garbage), 60, "all dead-lettered")
        reasons = [d["reason"] for d in store.dead_letters()]
        for (_, _payload, expected), reason in zip(garbage, reasons, strict=True):
            assert reason.startswith(expected), (expected, reason)
        oversize = store.dead_letters()[5]
        assert oversize["payload_len"] == 50 * 1024 * 1024
        assert store.count() == 0  # none of it was stored as a record

        # The collector is still up, and a real kiosk's records still arrive, once.
        ids = stack.fill_outbox(kiosk_db, 50)
        client = SyncClient(
            database=kiosk_db,
            kiosk=stack.KIOSK,
            mqtt_settings=broker.kiosk(stack.KIOSK),
            settings=SyncSettings(ack_timeout_s=5, tick_s=0.05),
            identity=keyring.kiosk_identity(),
        )
        client.start()
        try:
            wait_until(lambda: stack.kiosk_acked(kiosk_db) == 50, 60, "good records acked")
        finally:
            client.stop()
        assert sorted(store.record_ids(stack.KIOSK)) == sorted(ids)
        assert store.record_ids("k-evil") == []
    finally:
        evil.loop_stop()
        collector.stop()
        store.close()
