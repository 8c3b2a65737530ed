"""The event-driven sync loop: it sleeps until a deadline or an event, and misses nothing.

Each test gives the loop no periodic tick to lean on (``tick_s`` of an hour),
so only the mechanism under test can move the record: a commit in this process
(``Outbox.on_commit`` -> ``SyncClient.wake``), the retransmit deadline, or the
look for records another process committed (``PRAGMA data_version``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from central.collector import Collector, CollectorSettings
from central.ingest import Accept, DeadLetter, FleetUpdate
from central.mosquitto import MosquittoProcess
from central.store import IngestOutcome, SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.mqtt_link import MqttSettings
from sync.outbox import Outbox
from tests import identity as keyring
from tests.waiting import wait_until

KIOSK = "k-wake-01"
HOUR = 3600.0


def _body(i: int) -> dict[str, object]:
    return {"topic": "máy in", "message": f"kẹt giấy {i}", "contact": "", "channel": "kiosk"}


def _client(db: Path, mqtt_settings: MqttSettings, **settings: float) -> SyncClient:
    opts: dict[str, Any] = {
        "tick_s": HOUR,
        "heartbeat_interval_s": HOUR,
        "purge_interval_s": HOUR,
        "ack_timeout_s": HOUR,
        **settings,
    }
    return SyncClient(
        database=db,
        kiosk=KIOSK,
        mqtt_settings=mqtt_settings,
        settings=SyncSettings(reconnect_min_s=0.1, reconnect_max_s=1, **opts),
        outbox_options={"min_free_disk_bytes": 0},
        identity=keyring.kiosk_identity(),
    )


def _collector(central_db: Path, mqtt_settings: MqttSettings) -> Collector:
    return Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=mqtt_settings,
        settings=CollectorSettings(reconnect_min_s=0.1, reconnect_max_s=1),
        **keyring.CENTRAL,
    )


@contextmanager
def _running(*parts: SyncClient | Collector) -> Iterator[None]:
    for part in parts:
        part.start()
    try:
        yield
    finally:
        for part in reversed(parts):
            part.stop()


def _synced_once(client: SyncClient) -> None:
    # Connected, and the first look at the outbox (at connect) is done.
    wait_until(lambda: client.counters.connects >= 1, 30, "sync client connected")


def test_a_commit_in_this_process_wakes_the_sync(broker: MosquittoProcess, tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    Outbox(db, KIOSK, min_free_disk_bytes=0).close()
    client = _client(db, broker.kiosk(KIOSK))
    with _running(_collector(tmp_path / "central.db", broker.collector()), client):
        _synced_once(client)
        desk = Outbox(db, KIOSK, min_free_disk_bytes=0)
        desk.on_commit.append(client.wake)
        rec = desk.add("support", _body(1))
        wait_until(lambda: desk.state_of(rec.id) == "acked", 30, "record woke the sync")
        desk.close()


def test_a_record_filed_by_another_process_is_found_without_reading_the_outbox(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "kiosk.db"
    Outbox(db, KIOSK, min_free_disk_bytes=0).close()
    client = _client(db, broker.kiosk(KIOSK), tick_s=0.05)
    with _running(_collector(tmp_path / "central.db", broker.collector()), client):
        _synced_once(client)
        other = Outbox(db, KIOSK, min_free_disk_bytes=0)  # no hook: like another process
        rec = other.add("support", _body(2))
        wait_until(lambda: other.state_of(rec.id) == "acked", 30, "the data_version look found it")
        other.close()


class _FailsFirstRecords(SQLiteStore):
    """A store whose first commit with records fails as a store that is down would
    (nothing stored, nothing acked): the kiosk must send again at the deadline."""

    failed = False

    def ingest(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> IngestOutcome:
        if not _FailsFirstRecords.failed and any(isinstance(i, Accept) for i in items):
            _FailsFirstRecords.failed = True
            raise OSError("central's disk went away (test)")
        return super().ingest(items)


def test_an_unacknowledged_record_is_sent_again_at_its_deadline(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "kiosk.db"
    ob = Outbox(db, KIOSK, min_free_disk_bytes=0)
    rec = ob.add("support", _body(3))
    central_db = tmp_path / "central.db"
    collector = Collector(
        store_factory=lambda: _FailsFirstRecords(central_db),
        mqtt_settings=broker.collector(),
        settings=CollectorSettings(reconnect_min_s=0.1, reconnect_max_s=1),
        **keyring.CENTRAL,
    )
    client = _client(db, broker.kiosk(KIOSK), ack_timeout_s=1.0)
    with _running(collector):
        # Central is online before the kiosk connects, so its presence reaches the
        # kiosk as a retained message (no resend): only the deadline can resend.
        wait_until(collector.online.is_set, 30, "collector online")
        with _running(client):
            wait_until(lambda: _FailsFirstRecords.failed, 30, "first copy lost at central")
            wait_until(lambda: ob.state_of(rec.id) == "acked", 30, "retransmitted at the deadline")
    assert client.counters.retransmitted >= 1
    assert client.counters.central_restarts == 0
    ob.close()


def test_the_idle_loop_sleeps_until_its_nearest_deadline(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    client = _client(
        db, MqttSettings(port=1), tick_s=2.0, heartbeat_interval_s=60, ack_timeout_s=30
    )
    try:
        now = 1000.0
        client._next_poll, client._next_heartbeat = now + 2, now + 60
        client._next_purge = now + HOUR
        assert client._next_wake(now) == 2.0  # nothing in flight: the next look
        client._next_poll = now + HOUR
        assert client._next_wake(now) == 60.0  # then the heartbeat
        client.outbox.add("support", _body(4))
        client.machine.connected(now)
        client.machine.records(client.outbox.pending(), now - 5)  # published 5 s ago
        assert client._next_wake(now) == 25.0  # its retransmit deadline comes first
        assert client._next_wake(now + 40) == 0.0  # overdue: no sleep at all
    finally:
        client.outbox.close()
