"""Central's heartbeat path: one status row per kiosk, a bounded history, the clock offset."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from central.fleet.health import OverallState, health_rows, overall_state, sample_health
from central.fleet.heartbeats import (
    Heartbeat,
    HistorySettings,
    health_history,
    prune_history,
    write_heartbeats,
    write_statuses,
)
from central.ingest import FleetUpdate, classify_fleet
from central.store import SQLiteStore
from sync.envelope import encode_heartbeat, encode_status, heartbeat_topic, status_topic

NOW = 1_800_000_000.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def beat(kiosk: str, ts: float, **fields: Any) -> FleetUpdate:
    item = classify_fleet(heartbeat_topic(kiosk), encode_heartbeat(kiosk, iso(ts), **fields))
    assert isinstance(item, FleetUpdate), item
    return item


def status(kiosk: str, state: str, ts: float) -> FleetUpdate:
    item = classify_fleet(status_topic(kiosk), encode_status(kiosk, state, iso(ts)))
    assert isinstance(item, FleetUpdate), item
    return item


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "central.db")
    yield s
    s.close()


def write(conn: sqlite3.Connection, now: float, s: HistorySettings, *beats: Heartbeat) -> int:
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        return write_heartbeats(conn, beats, now, s)


def hb(kiosk: str = "k1", **body: Any) -> Heartbeat:
    return Heartbeat(kiosk=kiosk, body=body)


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    ]
    return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def test_heartbeats_update_one_row_and_never_grow_the_records_tables(store: SQLiteStore) -> None:
    store.ingest([beat("k1", NOW, queued=1)])
    before = table_counts(store.conn)
    for i in range(50):
        store.ingest([beat("k1", NOW + i, queued=i), beat("k2", NOW + i, queued=i)])
    after = table_counts(store.conn)
    grown = {t for t in after if after[t] != before.get(t, 0)}
    assert grown <= {"kiosks", "kiosk_health_history"}, grown
    assert after["kiosks"] == 2
    assert after["kiosk_health_history"] <= 2 + 2  # the first sample of each, nothing more
    assert {h.kiosk: h.queued for h in health_rows(store.conn)} == {"k1": 49, "k2": 49}


def test_history_keeps_one_sample_per_interval(store: SQLiteStore) -> None:
    s = HistorySettings(every_s=60, max_rows=100, max_days=7)
    added = [write(store.conn, NOW + t, s, hb(queued=int(t))) for t in range(0, 300, 10)]
    assert sum(added) == 5  # t = 0, 60, 120, 180, 240
    samples = health_history(store.conn, "k1")
    assert [x.at - NOW for x in samples] == [0, 60, 120, 180, 240]
    assert [x.queued for x in samples] == [0, 60, 120, 180, 240]
    assert [x.at - NOW for x in health_history(store.conn, "k1", since=NOW + 100)] == [
        120,
        180,
        240,
    ]


def test_history_is_bounded_in_rows_and_in_days(store: SQLiteStore) -> None:
    s = HistorySettings(every_s=1, max_rows=10, max_days=1)
    for t in range(40):
        write(store.conn, NOW + t, s, hb("k1"), hb("k2"))
    for k in ("k1", "k2"):
        assert [x.at - NOW for x in health_history(store.conn, k)] == list(range(30, 40))
    with store.conn:
        assert prune_history(store.conn, NOW + 86400 + 35, s) == 10  # 30..34 of each kiosk
    assert [x.at - NOW for x in health_history(store.conn, "k1")] == list(range(35, 40))


def test_several_heartbeats_of_a_kiosk_in_one_batch_are_one_write(store: SQLiteStore) -> None:
    calls: list[str] = []
    store.conn.set_trace_callback(calls.append)
    store.ingest([beat("k1", NOW + i, queued=i) for i in range(20)])
    store.conn.set_trace_callback(None)
    kiosk_writes = [c for c in calls if c.startswith("INSERT INTO kiosks")]
    assert len(kiosk_writes) == 1  # executemany of one row: the last heartbeat
    (row,) = health_rows(store.conn)
    assert row.queued == 19 and row.heartbeat_ts == pytest.approx(NOW + 19)
    assert len(health_history(store.conn, "k1")) == 1


def test_the_clock_offset_is_the_heartbeat_ts_against_its_arrival(store: SQLiteStore) -> None:
    import time

    ahead = time.time() + 600  # the kiosk's clock ten minutes fast
    store.ingest([beat("k1", ahead, queued=0)])
    (row,) = health_rows(store.conn)
    assert row.clock_offset_s is not None and 590 < row.clock_offset_s <= 600
    state, reasons = overall_state(row, time.time())
    assert state is OverallState.DEGRADED and any(r.startswith("clock off by +6") for r in reasons)
    (sample,) = health_history(store.conn, "k1")
    assert sample.clock_offset_s == pytest.approx(row.clock_offset_s)


def test_a_heartbeat_stored_after_a_clean_stop_does_not_bring_the_kiosk_back(
    store: SQLiteStore,
) -> None:
    """The race: the kiosk sent a heartbeat, then its clean-stop "offline"; central stored
    them the other way round (another collector, a later batch)."""
    import time

    t = time.time()
    store.ingest([status("k1", "online", t - 100), beat("k1", t - 50)])
    store.ingest([status("k1", "offline", t - 2)])
    store.ingest([beat("k1", t - 3)])  # sent before the stop, stored after it
    (row,) = health_rows(store.conn)
    assert row.presence == "offline"
    assert overall_state(row, time.time())[0] is OverallState.OFFLINE
    store.ingest([beat("k1", t + 1)])  # a heartbeat sent after the stop: it is back
    (row,) = health_rows(store.conn)
    assert overall_state(row, time.time())[0] is OverallState.OPERATIONAL


def test_status_and_heartbeat_in_one_batch_in_either_order_leave_a_clean_stop_offline(
    store: SQLiteStore,
) -> None:
    import time

    t = time.time()
    for items in (
        [beat("k1", t - 1), status("k1", "offline", t)],
        [status("k2", "offline", t), beat("k2", t - 1)],
    ):
        store.ingest(items)
    assert {h.kiosk: overall_state(h, time.time())[0] for h in health_rows(store.conn)} == {
        "k1": OverallState.OFFLINE,
        "k2": OverallState.OFFLINE,
    }


def test_history_survives_a_reopen_and_an_old_database_has_none(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "central.db")
    store.ingest([beat("k1", NOW, queued=4, devices={"printer": {"state": "paper_out"}})])
    store.close()
    again = SQLiteStore.open_readonly(tmp_path / "central.db")
    (sample,) = health_history(again.conn, "k1")
    assert sample.queued == 4 and sample.devices == {"printer": "paper_out"}
    state, reasons = overall_state(sample_health(sample), sample.at)
    assert state is OverallState.DEGRADED and reasons[0] == "printer paper_out"
    again.close()
    bare = sqlite3.connect(tmp_path / "other.db")
    assert health_history(bare, "k1") == []
    bare.close()


def test_a_damaged_history_row_reads_as_no_devices(store: SQLiteStore) -> None:
    write(store.conn, NOW, HistorySettings(), hb(devices={"printer": {"state": "ok"}}))
    with store.conn:
        store.conn.execute("UPDATE kiosk_health_history SET devices = '{not json'")
    (sample,) = health_history(store.conn, "k1")
    assert sample.devices == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(
            [
                "ts",
                "queued",
                "devices",
                "agent_version",
                "last_error",
                "oldest_queued_s",
                "disk_free_bytes",
                "x",
            ]
        ),
        json_values,
    )
)
def test_any_body_that_reached_the_store_is_written_without_raising(
    store: SQLiteStore, body: dict[str, Any]
) -> None:
    """The schema check comes first; this is the floor under it: odd types never raise."""
    write(store.conn, NOW, HistorySettings(every_s=1), hb(**body))
    health_rows(store.conn)
    health_history(store.conn, "k1")


class HistoryMachine(RuleBasedStateMachine):
    """The store's history against a model: per kiosk, samples at least ``every_s`` apart,
    at most ``max_rows``, nothing older than ``max_days`` after a prune; the status row
    always holds the last heartbeat."""

    S = HistorySettings(every_s=30, max_rows=5, max_days=0.01)  # 864 s

    def __init__(self) -> None:
        super().__init__()
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        from central.fleet.heartbeats import HISTORY_SCHEMA, KIOSK_COLUMNS

        self.conn.execute(
            "CREATE TABLE kiosks (kiosk TEXT PRIMARY KEY, state TEXT, state_at REAL,"
            " last_heartbeat_at REAL, queued INTEGER, oldest_queued TEXT, devices TEXT,"
            " heartbeat TEXT, clock_skew_s REAL, clock_skew_at REAL, "
            + ", ".join(f"{k} {v}" for k, v in KIOSK_COLUMNS.items())
            + ")"
        )
        self.conn.executescript(HISTORY_SCHEMA)
        self.now = NOW
        self.model: dict[str, list[float]] = {}
        self.last: dict[str, int] = {}
        self.n = 0

    @rule(dt=st.floats(0, 400), kiosks=st.lists(st.sampled_from(["a", "b", "c"]), max_size=4))
    def heartbeats(self, dt: float, kiosks: list[str]) -> None:
        self.now += dt
        beats = []
        for k in kiosks:
            self.n += 1
            beats.append(hb(k, queued=self.n))
            self.last[k] = self.n
        write(self.conn, self.now, self.S, *beats)
        for k in dict.fromkeys(kiosks):
            rows = self.model.setdefault(k, [])
            if not rows or self.now - rows[-1] >= self.S.every_s:
                rows.append(self.now)
                del rows[: -self.S.max_rows]

    @rule(state=st.sampled_from(["online", "offline"]), kiosk=st.sampled_from(["a", "b"]))
    def a_status(self, state: str, kiosk: str) -> None:
        with self.conn:
            write_statuses(self.conn, [(kiosk, {"state": state})], self.now)

    @precondition(lambda self: bool(self.model))
    @rule()
    def prune(self) -> None:
        with self.conn:
            prune_history(self.conn, self.now, self.S)
        cutoff = self.now - self.S.max_days * 86400
        for rows in self.model.values():
            rows[:] = [t for t in rows if t >= cutoff]

    @invariant()
    def matches_the_model(self) -> None:
        for k, rows in self.model.items():
            assert [x.at for x in health_history(self.conn, k)] == rows
        got = {h.kiosk: h.queued for h in health_rows(self.conn) if h.heartbeat_at is not None}
        assert got == self.last

    def teardown(self) -> None:
        self.conn.close()


TestHistoryMachine = HistoryMachine.TestCase
TestHistoryMachine.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)


def test_the_sample_keeps_the_device_states_only(store: SQLiteStore) -> None:
    body = {"devices": {"printer": {"state": "cover_open", "last_error": "x" * 100}}}
    write(store.conn, NOW, HistorySettings(), hb(**body))
    raw = store.conn.execute("SELECT devices FROM kiosk_health_history").fetchone()[0]
    assert json.loads(raw) == {"printer": "cover_open"}


def test_a_backlog_drained_later_does_not_overwrite_the_heartbeats_clock_offset(
    tmp_path: Path,
) -> None:
    """Records filed offline arrive hours after their ``created``: that is delivery delay,
    not a wrong clock; the heartbeat's measure stands."""
    import time
    from datetime import timedelta

    from sync.envelope import Record, records_topic
    from sync.ids import new_stream_id, new_ulid
    from tests import identity as keyring

    kiosk = "k-clock-01"  # the kiosk tests.identity signs for
    store = SQLiteStore(tmp_path / "central.db")
    store.ingest([beat(kiosk, time.time())])
    filed = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="milliseconds")
    record = Record(
        kind="feedback",
        kiosk=kiosk,
        stream=new_stream_id(),
        seq=1,
        id=new_ulid(),
        created=filed,
        body={"category": "feedback", "message": "Nhanh gọn", "contact": ""},
    )
    result = keyring.process_batch(store, [(records_topic(kiosk), record.encode())])
    assert result.outcome.stored == 1
    (row,) = [h for h in health_rows(store.conn) if h.kiosk == kiosk]
    assert row.clock_offset_s is not None and abs(row.clock_offset_s) < 60
    store.close()
