"""One kiosk floods central while another keeps filing (issue 6, item 5).

Each test runs a real collector with limits on a private loopback broker; the
flooding kiosk publishes a bounded number of messages as fast as paho will
send them, while a real kiosk (SyncClient) syncs its records. Bounds are
checked against the limits with the time actually elapsed (an upper bound,
never a speed assertion).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from central.attachments import AttachmentLimits
from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.quotas import Quotas, QuotaSettings, housekeep, report
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import records_topic
from sync.ids import new_stream_id
from sync.mqtt_link import make_paho_client
from tests import identity as keyring
from tests import stack
from tests.records import envelope
from tests.waiting import wait_until

GOOD, EVIL = "k-good-01", "k-flood-01"
GOOD_RECORDS = 60


@dataclass
class Run:
    collector: Collector
    quotas: Quotas
    store: SQLiteStore
    good_db: Path


def _publisher(broker: MosquittoProcess) -> mqtt.Client:
    """The flooding kiosk: its own enrolled identity, publishing on its own topics."""
    settings = broker.kiosk(EVIL)
    c = make_paho_client(EVIL, settings)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", settings.port)
    c.loop_start()
    return c


def _kiosk(db: Path, kiosk: str, broker: MosquittoProcess, ack_timeout_s: float = 2) -> SyncClient:
    return SyncClient(
        database=db,
        kiosk=kiosk,
        mqtt_settings=broker.kiosk(kiosk),
        settings=SyncSettings(
            ack_timeout_s=ack_timeout_s, tick_s=0.05, reconnect_min_s=0.1, reconnect_max_s=0.5
        ),
        identity=keyring.kiosk_identity(),
    )


@contextmanager
def central_with(
    broker: MosquittoProcess, tmp_path: Path, settings: QuotaSettings
) -> Iterator[Run]:
    central_db, good_db = tmp_path / "central.db", tmp_path / "good.db"
    quotas = Quotas(settings)
    collector = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector(),
        settings=CollectorSettings(),
        quotas=quotas,
        **keyring.CENTRAL,
    )
    collector.start()
    store = SQLiteStore(central_db)
    try:
        wait_until(collector.network.connected.is_set, 30, "collector connected")
        yield Run(collector=collector, quotas=quotas, store=store, good_db=good_db)
    finally:
        collector.stop()
        store.close()


@contextmanager
def good_kiosk_filing(run: Run, broker: MosquittoProcess) -> Iterator[list[str]]:
    """A well-behaved kiosk syncing GOOD_RECORDS dossiers during the flood."""
    ids = stack.fill_outbox(run.good_db, GOOD_RECORDS, kiosk=GOOD)
    client = _kiosk(run.good_db, GOOD, broker)
    client.start()
    try:
        yield ids
        wait_until(
            lambda: stack.kiosk_acked(run.good_db) == GOOD_RECORDS, 60, "good kiosk all acked"
        )
    finally:
        client.stop()


def _flood(broker: MosquittoProcess, payloads: list[bytes]) -> None:
    evil = _publisher(broker)
    try:
        last = None
        for p in payloads:
            last = evil.publish(records_topic(EVIL), keyring.signed(p), qos=1)
        if last is not None:
            last.wait_for_publish(60)
    finally:
        evil.loop_stop()
        evil.disconnect()


def _seen(run: Run, kiosk: str) -> int:
    """Messages of ``kiosk`` that reached the collector and were passed on or dropped."""
    return run.quotas.admitted.get(kiosk, 0) + run.quotas.count(kiosk, "rate")


def test_a_flood_of_valid_records_is_held_to_the_rate_and_others_flow(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    limits = QuotaSettings(messages_per_s=20, burst_messages=200, pace_messages=20)
    flood = [envelope(EVIL, i, new_stream_id()) for i in range(1, 3001)]
    with central_with(broker, tmp_path, limits) as run:
        t0 = time.monotonic()
        with good_kiosk_filing(run, broker) as good_ids:
            _flood(broker, flood)
            wait_until(lambda: _seen(run, EVIL) == len(flood), 60, "flood delivered")
        elapsed = time.monotonic() - t0
        wait_until(run.collector.idle.is_set, 30, "collector idle")
        bound = limits.burst_messages + limits.messages_per_s * elapsed + 1
        admitted = run.quotas.admitted[EVIL]
        assert admitted <= bound, (admitted, bound)
        assert run.quotas.count(EVIL, "rate") == len(flood) - admitted
        # The flood's admitted part is stored; the rest never reached the writer.
        assert len(run.store.record_ids(EVIL)) == admitted
        assert run.store.dead_letters() == []  # valid records over the rate: not dead-lettered
        assert sorted(run.store.record_ids(GOOD)) == sorted(good_ids)
        assert run.quotas.count(GOOD, "rate") == 0  # the good kiosk was never limited
        housekeep(run.store.conn, run.quotas, limits, AttachmentLimits())
        rep = report(run.store.conn, limits)
        [evil] = [k for k in rep["kiosks"] if k["kiosk"] == EVIL]
        assert evil["limited"]["rate"]["count"] == len(flood) - admitted


def test_a_garbage_flood_is_held_to_the_byte_rate_and_only_counted(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    limits = QuotaSettings(bytes_per_s=64 * 1024, burst_bytes=256 * 1024, pace_bytes=64 * 1024)
    size = 16 * 1024
    flood = [os.urandom(size) for _ in range(400)]  # 6.4 MB of junk
    with central_with(broker, tmp_path, limits) as run:
        t0 = time.monotonic()
        with good_kiosk_filing(run, broker) as good_ids:
            _flood(broker, flood)
            wait_until(lambda: _seen(run, EVIL) == len(flood), 60, "flood delivered")
        elapsed = time.monotonic() - t0
        wait_until(run.collector.idle.is_set, 30, "collector idle")
        bound = (limits.burst_bytes + limits.bytes_per_s * elapsed) / size + 1
        dead = [d for d in run.store.dead_letters() if d["topic_kiosk"] == EVIL]
        assert len(dead) == run.quotas.admitted[EVIL] <= bound, (len(dead), bound)
        assert all(d["reason"].startswith("bad-json") for d in dead)
        assert run.quotas.count(EVIL, "rate") == len(flood) - len(dead)
        assert sorted(run.store.record_ids(GOOD)) == sorted(good_ids)
        assert run.quotas.count(GOOD, "rate") == 0


def test_a_kiosk_over_its_records_quota_waits_on_the_kiosk_and_others_flow(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    limits = QuotaSettings(max_records_bytes=40_000)
    evil_db = tmp_path / "evil.db"
    evil_ids = stack.fill_outbox(evil_db, 400, kiosk=EVIL)  # ~ 4x its quota
    with central_with(broker, tmp_path, limits) as run:
        evil = _kiosk(evil_db, EVIL, broker)
        evil.start()
        try:
            with good_kiosk_filing(run, broker) as good_ids:
                wait_until(
                    lambda: run.quotas.count(EVIL, "records_quota") > 400, 60, "resends refused"
                )
        finally:
            evil.stop()
        wait_until(run.collector.idle.is_set, 30, "collector idle")
        assert sorted(run.store.record_ids(GOOD)) == sorted(good_ids)
        usage = run.store.quota_usage([EVIL])[EVIL]
        # At most one batch (500 records of this size) over the quota.
        assert (
            limits.max_records_bytes <= usage.records_bytes < limits.max_records_bytes + 500 * 400
        )
        held = set(run.store.record_ids(EVIL))
        assert 0 < len(held) < len(evil_ids)
        # Nothing lost: what central did not take is still queued on the kiosk, not rejected.
        states = stack.kiosk_states(evil_db)
        assert {i for i, s in states.items() if s == "acked"} == held
        assert all(s == "queued" for i, s in states.items() if i not in held)
        assert run.store.dead_letters() == []
        housekeep(run.store.conn, run.quotas, limits, AttachmentLimits())
        rep = report(run.store.conn, limits)
        assert any(a.startswith(f"kiosk {EVIL}: holds") for a in rep["alerts"]), rep["alerts"]


def test_a_kiosk_on_an_unknown_version_adds_one_row_per_record_not_per_resend(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    stream = new_stream_id()
    window = [envelope(EVIL, i, stream, v=2) for i in range(1, 21)]
    resends = 25
    with central_with(broker, tmp_path, QuotaSettings()) as run:
        with good_kiosk_filing(run, broker) as good_ids:
            _flood(broker, window * resends)
            wait_until(lambda: _seen(run, EVIL) == len(window) * resends, 60, "delivered")
        wait_until(run.collector.idle.is_set, 30, "collector idle")
        wait_until(
            lambda: sum(d["count"] for d in run.store.dead_letters()) == len(window) * resends,
            30,
            "all counted",
        )
        rows = run.store.dead_letters()
        assert len(rows) == len(window)
        assert {d["count"] for d in rows} == {resends}
        assert sorted(run.store.record_ids(GOOD)) == sorted(good_ids)


def test_a_garbage_flood_stops_at_the_dead_letter_cap_and_others_flow(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    limits = QuotaSettings(max_dead_letters=50)
    flood = [os.urandom(64) for _ in range(1500)]  # no two alike: no dedup to help
    with central_with(broker, tmp_path, limits) as run:
        with good_kiosk_filing(run, broker) as good_ids:
            _flood(broker, flood)
            wait_until(lambda: _seen(run, EVIL) == len(flood), 60, "flood delivered")
        wait_until(run.collector.idle.is_set, 30, "collector idle")
        held = run.store.quota_usage([EVIL])[EVIL].dead_letters
        # The cap is read at each batch's start: at most one batch (500) over it.
        assert limits.max_dead_letters <= held < limits.max_dead_letters + 500
        assert run.quotas.count(EVIL, "dead_letter_quota") == len(flood) - held
        assert sorted(run.store.record_ids(GOOD)) == sorted(good_ids)
        housekeep(run.store.conn, run.quotas, limits, AttachmentLimits())
        rep = report(run.store.conn, limits)
        assert any("dead letters held, at its cap" in a for a in rep["alerts"])


def test_a_kiosk_draining_a_backlog_is_paced_to_the_rate_not_stalled(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    """Its window (256) is over the burst: the rest waits in the pacing room, so no
    record has to wait out an ack timeout and be sent again."""
    limits = QuotaSettings(messages_per_s=200, burst_messages=50)
    n = 600
    with central_with(broker, tmp_path, limits) as run:
        ids = stack.fill_outbox(run.good_db, n, kiosk=GOOD)
        client = _kiosk(run.good_db, GOOD, broker, ack_timeout_s=30)
        client.start()
        try:
            wait_until(lambda: stack.kiosk_acked(run.good_db) == n, 60, "backlog acked")
        finally:
            client.stop()
        assert sorted(run.store.record_ids(GOOD)) == sorted(ids)
        assert run.quotas.count(GOOD, "paced") > 0  # it was over the rate
        assert run.quotas.count(GOOD, "rate") == 0  # and nothing of it was dropped
        assert client.counters.retransmitted == 0, client.counters
