"""What the alert engine observes, kind by kind, from a real central database."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from central import backoffice_db
from central.backoffice_db import Target
from central.fleet import alerts
from central.fleet.alert_rules import RuleBook
from central.fleet.alert_sources import observe
from central.fleet.alert_watch import AlertSettings, AlertWatch
from central.fleet.duplicates import DuplicateAlert, last_seen, record_alert
from central.fleet.registry import Registry
from central.ingest import FleetUpdate
from central.store_pg import PostgresStore
from sync.envelope import records_topic
from sync.ids import new_stream_id
from tests import identity as keyring
from tests.pg import CentralDb, PgDatabase
from tests.records import posted, record

NOW = 2_000_000_000.0
MIB = 1024 * 1024


def _seed(target: Target) -> sqlite3.Connection:
    Registry(target).close()  # the registry's tables (SQLite: made at its first open)
    c = backoffice_db.connect(target)
    for slot, (kiosk, office, state) in enumerate(
        (("k1", "HN01", "active"), ("k2", "HN02", "active"), ("k3", "HN01", "revoked"))
    ):
        c.execute(
            "INSERT INTO fleet_kiosks (kiosk, office, slot, agency, state, enrolled_at)"
            " VALUES (?, ?, ?, 'a', ?, '2026-01-01T00:00:00Z')",
            (kiosk, office, slot, state),
        )
    return c


@pytest.fixture
def conn(central_db: CentralDb) -> Iterator[sqlite3.Connection]:
    """Central's database on each engine, three kiosks in its registry."""
    c = _seed(central_db.target)
    yield c
    c.close()


@pytest.fixture
def file_conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """The fleet's SQLite file when the records are elsewhere (split by the tests below)."""
    c = _seed(tmp_path / "central.db")
    yield c
    c.close()


def beat(conn: sqlite3.Connection, kiosk: str, at: float, **fields: Any) -> None:
    skew = fields.pop("clock_skew_s", None)
    conn.execute(
        "INSERT INTO kiosks (kiosk, state, state_at, last_heartbeat_at, queued,"
        " heartbeat, clock_skew_s) VALUES (?, 'online', ?, ?, ?, ?, ?) ON CONFLICT (kiosk)"
        " DO UPDATE SET state = excluded.state, state_at = excluded.state_at,"
        " last_heartbeat_at = excluded.last_heartbeat_at, queued = excluded.queued,"
        " heartbeat = excluded.heartbeat, clock_skew_s = excluded.clock_skew_s",
        (kiosk, at, at, fields.get("queued"), json.dumps(fields), skew),
    )


def kinds(conn: sqlite3.Connection, book: RuleBook | None = None, **kw: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for o in observe(conn, book or RuleBook(), NOW, **kw):
        out.setdefault(o.kiosk, set()).add(o.kind)
    return out


def test_a_healthy_kiosk_raises_nothing(conn: sqlite3.Connection) -> None:
    beat(conn, "k1", NOW - 30, devices={"printer": {"state": "ok"}}, disk_free_bytes=10_000 * MIB)
    beat(conn, "k2", NOW - 30)
    assert kinds(conn) == {}


def test_health_kinds(conn: sqlite3.Connection) -> None:
    beat(
        conn,
        "k1",
        NOW - 30,
        devices={
            "printer": {"state": "paper_out"},
            "scanner": {"state": "unplugged", "last_error": "ENODEV"},
        },
        queued=500,
        disk_free_bytes=100 * MIB,
        clock_skew_s=-400.0,
    )
    beat(conn, "k2", NOW - 3600, devices={"printer": {"state": "paper_near_end"}})
    beat(conn, "k3", NOW - 3600, devices={"printer": {"state": "paper_out"}})  # revoked
    seen = kinds(conn)
    assert seen == {
        "k1": {"paper-out", "device-fault", "backlog", "disk-low", "clock-off"},
        "k2": {"offline", "paper-low"},
    }
    fault = next(o for o in observe(conn, RuleBook(), NOW) if o.kind == "device-fault")
    assert fault.detail == "scanner unplugged (ENODEV)" and fault.office == "HN01"


def test_thresholds_follow_the_office(conn: sqlite3.Connection) -> None:
    beat(conn, "k1", NOW - 400)
    beat(conn, "k2", NOW - 400)
    assert kinds(conn) == {"k1": {"offline"}, "k2": {"offline"}}  # default 5 minutes
    book = RuleBook(
        {"offline": {"minutes": 10.0}},
        [{"office": "HN02", "kind": "offline", "params": {"minutes": 6.0}, "enabled": None}],
    )
    assert kinds(conn, book) == {"k2": {"offline"}}


def test_fleet_sources(conn: sqlite3.Connection) -> None:
    beat(conn, "k1", NOW - 10, agent_version="1.2.0", catalogue={"version": "3"})
    beat(conn, "k2", NOW - 10, agent_version="1.3.0", catalogue={"version": "4"})
    from central import downlink_log

    downlink_log.append(conn, downlink_log.FLEET, "catalogue", "catalogue", {"version": "4"})
    record_alert(conn, DuplicateAlert(kiosk="k2", instances=("a", "b"), at=NOW - 60))
    conn.execute(
        "INSERT INTO streams (kiosk, stream, contiguous_seq, max_seq, gap_since, first_seen,"
        " updated, missing_count, gap_count) VALUES ('k1', 's', 3, 9, ?, 0, 0, 5, 1)",
        (NOW - 7200,),
    )
    conn.execute(
        "INSERT INTO dead_letters (at, topic, topic_kiosk, reason, payload_len, payload_head)"
        " VALUES (?, 't', 'k2', 'bad', 1, ?)",
        (NOW - 60, b"\x00"),
    )
    conn.execute(
        "INSERT INTO support_requests (kiosk, record_id, source_rowid, office, type, message,"
        " created, received_at, status) VALUES ('k1', 'r', 1, 'HN01', 'help', 'm', 'c', ?,"
        " 'assigned')",
        (NOW - 3600,),
    )
    seen = kinds(conn, desired_versions=lambda c: {"k1": "1.3.0", "k2": "1.3.0"})
    assert seen == {
        "k1": {"software-behind", "catalogue-behind", "sequence-gap", "support-unanswered"},
        "k2": {"duplicate-identity", "dead-letters"},
    }
    assert "software-behind" not in kinds(conn)["k1"]  # no desired versions: inactive


def test_duplicate_identity_lasts_while_the_boxes_go_on_taking_turns(
    conn: sqlite3.Connection,
) -> None:
    """The rule's ``hours`` (24) count from the pair's last sighting, not its first."""
    beat(conn, "k2", NOW - 10)
    first = DuplicateAlert(kiosk="k2", instances=("a", "b"), at=NOW - 30 * 3600)
    assert record_alert(conn, first) is True
    assert "duplicate-identity" not in kinds(conn).get("k2", set())  # 30 h ago: over
    again = DuplicateAlert(kiosk="k2", instances=("a", "b"), at=NOW - 3600)
    assert record_alert(conn, again) is False  # the same pair: its row's last_at moves
    assert "duplicate-identity" in kinds(conn)["k2"]
    row = conn.execute("SELECT first_at, last_at FROM identity_alerts").fetchone()
    assert tuple(row) == (NOW - 30 * 3600, NOW - 3600)
    # A sighting delivered late never moves last_at back.
    assert record_alert(conn, first) is False
    assert "duplicate-identity" in kinds(conn)["k2"]


def test_an_identity_alerts_table_from_before_last_at_is_read_and_upgraded(
    file_conn: sqlite3.Connection,
) -> None:
    """A SQLite file from before ``last_at`` (PostgreSQL's table was made with it)."""
    conn = file_conn
    beat(conn, "k2", NOW - 10)
    conn.execute(
        "CREATE TABLE identity_alerts (kiosk TEXT NOT NULL, instance_a TEXT NOT NULL,"
        " instance_b TEXT NOT NULL, first_at REAL NOT NULL,"
        " PRIMARY KEY (kiosk, instance_a, instance_b))"
    )
    conn.execute("INSERT INTO identity_alerts VALUES ('k2', 'a', 'b', ?)", (NOW - 30 * 3600,))
    assert last_seen(conn) == [("k2", NOW - 30 * 3600, 1)]  # first_at stands in
    assert "duplicate-identity" not in kinds(conn).get("k2", set())
    record_alert(conn, DuplicateAlert(kiosk="k2", instances=("a", "c"), at=NOW - 60))
    rows = conn.execute("SELECT instance_b, first_at, last_at FROM identity_alerts ORDER BY 1")
    assert [tuple(r) for r in rows] == [
        ("b", NOW - 30 * 3600, NOW - 30 * 3600),
        ("c", NOW - 60, NOW - 60),
    ]
    assert last_seen(conn) == [("k2", NOW - 60, 2)]
    assert "duplicate-identity" in kinds(conn)["k2"]


def test_garbage_in_a_heartbeat_row_does_not_stop_the_round(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO kiosks (kiosk, state, state_at, last_heartbeat_at, heartbeat)"
        " VALUES ('k1', 'online', ?, ?, ?)",
        (NOW - 5, NOW - 5, json.dumps({"devices": {"printer": "paper_out", "x": [1]}})),
    )
    conn.execute(
        "INSERT INTO kiosks (kiosk, state, state_at, last_heartbeat_at, heartbeat)"
        " VALUES ('k2', 'online', ?, ?, 'not json')",
        (NOW - 5, NOW - 5),
    )
    beat(conn, "k3", NOW - 5)
    assert kinds(conn) == {}


def test_gaps_and_dead_letters_are_read_where_the_records_are(
    file_conn: sqlite3.Connection, pg: PgDatabase
) -> None:
    """[central] store = "postgresql": the fleet's file holds no records; the gap and the
    dead letters in PostgreSQL still raise their alerts (the records' store is asked)."""
    conn = file_conn
    store = PostgresStore(pg.dsn)
    try:
        stream = new_stream_id()
        keyring.process_batch(
            store, [posted(record(1, stream, kiosk="k1")), posted(record(5, stream, kiosk="k1"))]
        )
        keyring.process_batch(store, [(records_topic("k2"), b"not json")])
        at = time.time() + 2 * 3600  # two hours on: the gap is old, the dead letter is not
        with psycopg.connect(pg.dsn) as pgc:
            pgc.execute("UPDATE dead_letters SET at = %s", (at - 60,))
        assert kinds_at(conn, at) == {}  # the SQLite file alone sees nothing
        ro = PostgresStore.open_readonly(pg.dsn)
        try:
            assert kinds_at(conn, at, records=ro) == {
                "k1": {"sequence-gap"},
                "k2": {"dead-letters"},
            }
        finally:
            ro.close()
    finally:
        store.close()


def kinds_at(conn: sqlite3.Connection, at: float, **kw: Any) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for o in observe(conn, RuleBook(), at, **kw):
        if o.kind in ("sequence-gap", "dead-letters"):
            out.setdefault(o.kiosk, set()).add(o.kind)
    return out


def test_the_alert_engine_opens_the_records_store_and_reopens_it_after_a_loss(
    file_conn: sqlite3.Connection, tmp_path: Path, pg: PgDatabase
) -> None:
    conn = file_conn
    store = PostgresStore(pg.dsn)
    stream = new_stream_id()
    keyring.process_batch(
        store, [posted(record(1, stream, kiosk="k1")), posted(record(5, stream, kiosk="k1"))]
    )
    store.close()
    opened: list[PostgresStore] = []

    def records() -> PostgresStore:
        opened.append(PostgresStore.open_readonly(pg.dsn))
        return opened[-1]

    watch = AlertWatch(tmp_path / "central.db", AlertSettings(), None, records_store=records)
    at = time.time() + 2 * 3600
    first = watch.round(conn, now=at)
    assert first is not None and first.opened == 2 and len(opened) == 1
    # the gap; and the clock, measured by the lag of records created days ago
    assert {(a.kiosk, a.kind) for a in alerts.open_alerts(conn)} == {
        ("k1", "sequence-gap"),
        ("k1", "clock-off"),
    }
    opened[0].raw.close()  # PostgreSQL restarted under it
    lost = watch.round(conn, now=at + 10)
    assert lost is not None and lost.opened == 0 and len(opened) == 1  # logged, let go
    watch.round(conn, now=at + 20)
    assert len(opened) == 2 and not opened[1].raw.closed  # open again
    assert "sequence-gap" in {a.kind for a in alerts.open_alerts(conn)}  # not cleared
    watch.stop()
    assert opened[1].raw.closed


def test_health_causes_are_read_from_the_status_rows_where_the_collectors_wrote_them(
    file_conn: sqlite3.Connection, pg: PgDatabase
) -> None:
    conn = file_conn
    store = PostgresStore(pg.dsn)
    try:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime())
        body = {"ts": ts, "queued": 0, "devices": {"printer": {"state": "paper_out"}}}
        store.ingest(
            [
                FleetUpdate(kiosk="k1", type="status", body={"state": "online"}),
                FleetUpdate(kiosk="k1", type="heartbeat", body=body),
            ]
        )
        at = time.time() + 5
        assert not [o for o in observe(conn, RuleBook(), at) if o.kiosk == "k1"]  # file: none
        seen = {o.kind for o in observe(conn, RuleBook(), at, status=store) if o.kiosk == "k1"}
        assert "paper-out" in seen and "offline" not in seen
    finally:
        store.close()
