"""One poison message never costs other kiosks their batch (issue 6, item 1, second depth).

A batch whose commit fails is retried in halves down to single messages: the
culprit is dead-lettered with its reason and sender, every other message is
committed and acked. A store that is down for everyone (disk full) dead-letters
nothing and acks nothing: the whole batch is taken again later.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from central.collector import Collector, CollectorSettings, classify_message
from central.ingest import Accept, DeadLetter, FleetUpdate
from central.isolation import Message, commit_isolating
from central.mosquitto import MosquittoProcess
from central.store import IngestOutcome, SQLiteStore
from sync.envelope import (
    Record,
    acks_topic,
    decode_ack,
    encode_heartbeat,
    heartbeat_topic,
    records_topic,
)
from sync.ids import new_stream_id
from sync.mqtt_link import MqttSettings, make_paho_client
from tests import identity as keyring
from tests.records import record
from tests.waiting import wait_until

CREATED = "2026-11-26T09:15:02.123+07:00"


def _records(kiosk: str, n: int) -> list[Record]:
    stream = new_stream_id()
    return [record(i + 1, stream, kiosk=kiosk) for i in range(n)]


def _poison_heartbeat(kiosk: str) -> bytes:
    return encode_heartbeat(kiosk, CREATED, queued=2**64, devices={})


def _acked(acks: list[tuple[str, bytes]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for topic, payload in acks:
        out.setdefault(topic, set()).update(decode_ack(payload).acked)
    return out


def _rejected(acks: list[tuple[str, bytes]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for topic, payload in acks:
        out.setdefault(topic, {}).update({r.id: r.reason for r in decode_ack(payload).rejected})
    return out


def _mixed_batch(
    good_b: list[Record], good_c: list[Record], poison: tuple[str, bytes]
) -> list[tuple[str, bytes]]:
    batch = [(records_topic(r.kiosk), r.encode()) for r in good_b[:20]]
    batch.append(poison)
    return batch + [(records_topic(r.kiosk), r.encode()) for r in good_c + good_b[20:]]


def test_a_heartbeat_over_sqlite_range_costs_no_one_else_their_batch(tmp_path: Path) -> None:
    """First depth: the field bound refuses it at classification, naming the field."""
    store = SQLiteStore(tmp_path / "central.db")
    good_b, good_c = _records("k-good-b", 40), _records("k-good-c", 40)
    poison = (heartbeat_topic("k-evil-a"), _poison_heartbeat("k-evil-a"))
    result = keyring.process_batch(store, _mixed_batch(good_b, good_c, poison))
    acked = _acked(result.acks)
    assert acked[acks_topic("k-good-b")] == {r.id for r in good_b}
    assert acked[acks_topic("k-good-c")] == {r.id for r in good_c}
    assert sorted(store.record_ids()) == sorted(r.id for r in good_b + good_c)
    [dead] = store.dead_letters()
    assert dead["topic_kiosk"] == "k-evil-a" and dead["topic"] == heartbeat_topic("k-evil-a")
    assert "queued" in dead["reason"]
    store.close()


def test_a_value_sqlite_cannot_hold_is_isolated_even_past_classification(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Second depth: were a bound ever missing, the store's own OverflowError costs only
    the culprit (dead-lettered naming its sender); everyone else commits."""
    store = SQLiteStore(tmp_path / "central.db")
    good_b, good_c = _records("k-good-b", 40), _records("k-good-c", 40)
    topic = heartbeat_topic("k-evil-a")
    payload = _poison_heartbeat("k-evil-a")
    body = {"v": 1, "type": "heartbeat", "kiosk": "k-evil-a", "ts": CREATED, "queued": 2**64}
    messages = [
        Message(topic=t, payload=p, item=classify_message(t, keyring.signed(p), keyring.FLEET))
        for t, p in _mixed_batch(good_b, good_c, (topic, payload))
    ]
    messages[20] = Message(
        topic=topic,
        payload=payload,
        item=FleetUpdate(kiosk="k-evil-a", type="heartbeat", body=body),
    )
    with caplog.at_level(logging.WARNING, logger="aps.collector"):
        outcome, poisoned = commit_isolating(store, messages)
    assert [d.topic_kiosk for d in poisoned] == ["k-evil-a"]
    assert set(outcome.acked["k-good-b"]) == {r.id for r in good_b}
    assert set(outcome.acked["k-good-c"]) == {r.id for r in good_c}
    assert sorted(store.record_ids()) == sorted(r.id for r in good_b + good_c)
    [dead] = store.dead_letters()
    assert dead["topic_kiosk"] == "k-evil-a" and dead["reason"].startswith("store-error")
    assert "k-evil-a" in caplog.text
    store.close()


class PoisonedStore(SQLiteStore):
    """Stands in for any bug one message can trigger: this id always fails."""

    def __init__(self, path: Path, poison_ids: set[str], error: Exception) -> None:
        super().__init__(path)
        self.poison_ids = poison_ids
        self.error = error
        self.calls = 0

    def ingest(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> IngestOutcome:
        self.calls += 1
        if any(isinstance(i, Accept) and i.record.id in self.poison_ids for i in items):
            raise self.error
        return super().ingest(items)


def test_the_culprit_record_is_parked_and_rejected_everyone_else_is_acked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, evil = _records("k-good-b", 100), _records("k-evil-d", 3)
    store = PoisonedStore(
        tmp_path / "central.db",
        {evil[1].id},
        sqlite3.IntegrityError("UNIQUE constraint failed: records.kiosk"),
    )
    batch = [(records_topic(r.kiosk), r.encode()) for r in good[:50] + evil + good[50:]]
    with caplog.at_level(logging.WARNING, logger="aps.collector"):
        result = keyring.process_batch(store, batch)
    assert _acked(result.acks)[acks_topic("k-good-b")] == {r.id for r in good}
    assert _acked(result.acks)[acks_topic("k-evil-d")] == {evil[0].id, evil[2].id}
    rejected = _rejected(result.acks)[acks_topic("k-evil-d")]
    assert list(rejected) == [evil[1].id] and "IntegrityError" in rejected[evil[1].id]
    [dead] = store.dead_letters()
    assert dead["record_id"] == evil[1].id and dead["topic_kiosk"] == "k-evil-d"
    assert "IntegrityError" in dead["reason"]
    assert "k-evil-d" in caplog.text and evil[1].id in caplog.text
    # Halving: a few dozen attempts for 103 messages, not one per message.
    assert store.calls < 30
    # The parked seq is accounted for: no gap in the evil kiosk's stream.
    [state] = store.streams("k-evil-d")
    assert state.contiguous_seq == 3 and state.gaps == ()
    store.close()


def test_a_full_disk_dead_letters_nothing_and_acks_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "central.db")
    store.ingest([])
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count={pages + 2}")  # stands in for a full disk
    records = _records("k-good-b", 300)
    batch = [(records_topic(r.kiosk), r.encode()) for r in records]
    batch.append((heartbeat_topic("k-evil-a"), _poison_heartbeat("k-evil-a")))
    with pytest.raises(sqlite3.OperationalError, match="full"):
        keyring.process_batch(store, batch)
    store.conn.execute("PRAGMA max_page_count=1000000")
    assert store.count() == 0 and store.dead_letters() == []
    # Space freed: the same batch goes through, the poison alone is dead-lettered.
    result = keyring.process_batch(store, batch)
    assert _acked(result.acks)[acks_topic("k-good-b")] == {r.id for r in records}
    assert [d["topic_kiosk"] for d in store.dead_letters()] == ["k-evil-a"]
    store.close()


def test_a_store_failing_for_every_kiosk_is_down_not_poisoned(tmp_path: Path) -> None:
    """A bug that fails every message of several kiosks: nothing dead-lettered or acked."""
    recs = _records("k-good-b", 10) + _records("k-good-c", 10)
    store = PoisonedStore(tmp_path / "central.db", {r.id for r in recs}, TypeError("a bug"))
    batch = [(records_topic(r.kiosk), r.encode()) for r in recs]
    with pytest.raises(TypeError):
        keyring.process_batch(store, batch)
    assert store.dead_letters() == [] and store.count() == 0
    store.close()


def _client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    c = make_paho_client(client_id, settings)
    c.connect("127.0.0.1", settings.port)
    c.loop_start()
    return c


def test_a_retained_poison_heartbeat_never_blocks_ingest_across_reconnects(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central_db = tmp_path / "central.db"
    evil, good = (
        _client(broker.kiosk("k-evil-a"), "k-evil-a"),
        _client(broker.kiosk("k-good-b"), "k-good-b"),
    )
    acked: set[str] = set()
    good.on_message = lambda c, u, m: acked.update(decode_ack(m.payload).acked)
    subscribed = threading.Event()
    good.on_subscribe = lambda *a: subscribed.set()
    good.subscribe(acks_topic("k-good-b"), qos=1)
    wait_until(subscribed.is_set, 30, "subscribed to acks")
    evil.publish(
        heartbeat_topic("k-evil-a"), _poison_heartbeat("k-evil-a"), qos=1, retain=True
    ).wait_for_publish(30)
    records = _records("k-good-b", 60)

    def collector() -> Collector:
        c = Collector(
            store_factory=lambda: SQLiteStore(central_db),
            mqtt_settings=broker.collector(),
            settings=CollectorSettings(),
            **keyring.CENTRAL,
        )
        c.start()
        wait_until(c.network.connected.is_set, 30, "collector connected")
        return c

    store = SQLiteStore(central_db)
    try:
        for half in (records[:30], records[30:]):  # a collector restart between the halves
            col = collector()
            try:
                for r in half:
                    good.publish(records_topic(r.kiosk), keyring.signed(r.encode()), qos=1)
                wait_until(lambda h=half: {r.id for r in h} <= acked, 60, "good records acked")
                wait_until(lambda c=col: c.counters.dead_letters >= 1, 30, "poison dead-lettered")
            finally:
                col.stop()
        assert sorted(store.record_ids("k-good-b")) == sorted(r.id for r in records)
        dead = store.dead_letters()
        assert dead and {d["topic_kiosk"] for d in dead} == {"k-evil-a"}
        assert col.counters.store_errors == 0
    finally:
        evil.publish(heartbeat_topic("k-evil-a"), b"", qos=1, retain=True).wait_for_publish(30)
        evil.loop_stop()
        good.loop_stop()
        store.close()
