"""The Store contract, checked directly on both stores (SQLite and PostgreSQL, issue 11).

The same batches go to a SQLiteStore and a PostgresStore: each must answer with
the same IngestOutcome and the same stream state (gap ranges included), absorb a
replay, count an id conflict, park a seq jump. Plus PostgreSQL's own promises:
versioned, idempotent migrations; the config that selects it; and a collector
killed mid-batch loses nothing it acked and leaves no half batch behind.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from central import backoffice_db
from central.config import CentralConfig
from central.fleet import heartbeats
from central.fleet.heartbeats import HistorySettings
from central.ingest import FleetUpdate
from central.isolation import store_is_down
from central.service import CentralService
from central.store import IngestOutcome, SQLiteStore, Store, StreamState
from central.store_pg import MIGRATIONS, PostgresStore, migrate
from central.stores import open_store
from sync.config import ConfigError
from sync.ids import new_stream_id, new_ulid
from tests import identity as keyring
from tests import records
from tests.pg import ADMIN_DSN, PgDatabase, admin_connection
from tests.waiting import wait_until

KIOSK = "k-contract-01"
OTHER = "k-contract-02"
JUMP = 1000
VERSIONS = [version for version, _ in MIGRATIONS]


#: One rating of KIOSK's (another kiosk's with ``kiosk=``), and payloads on its topic.
rec = partial(records.rating, kiosk=KIOSK)
batch = partial(records.on_topic, kiosk=KIOSK)


@pytest.fixture
def stores(tmp_path: Path, pg: PgDatabase) -> Iterator[tuple[SQLiteStore, PostgresStore]]:
    lite = SQLiteStore(tmp_path / "central.db", max_seq_jump=JUMP)
    post = PostgresStore(pg.dsn, max_seq_jump=JUMP)
    yield lite, post
    lite.close()
    post.close()


def ingest(store: Store, items: list[tuple[str, bytes]]) -> IngestOutcome:
    return keyring.process_batch(store, items).outcome


def comparable(out: IngestOutcome) -> dict[str, Any]:
    return {
        "acked": {k: sorted(v) for k, v in out.acked.items() if v},
        "rejected": {k: sorted((r.id, r.reason) for r in v) for k, v in out.rejected.items() if v},
        "stored": out.stored,
        "duplicates": out.duplicates,
        "dead_letters": out.dead_letters,
        "parked": out.parked,
        "conflicts": sorted(out.conflicts),
        "digests": dict(out.digests),
    }


def shape(states: list[StreamState]) -> list[tuple[Any, ...]]:
    """A stream's state without the instant its gap opened (each store's own clock)."""
    return [
        (
            s.kiosk,
            s.stream,
            s.contiguous_seq,
            s.max_seq,
            s.gaps,
            s.gap_count,
            s.missing_count,
            s.gap_since is not None,
        )
        for s in states
    ]


def test_both_stores_answer_every_batch_alike(stores: tuple[SQLiteStore, PostgresStore]) -> None:
    """Out of order, a rejected body, a seq jump, a resend, two kiosks: same outcome, same gaps."""
    a, b = new_stream_id(), new_stream_id()
    first = {q: rec(q, a) for q in range(1, 13)}
    bad = rec(6, a, level="so-so")  # fails central's body check: parked, seq accounted
    other = {q: rec(q, b, kiosk=OTHER) for q in (1, 2, 5)}
    rounds = [
        batch(first[1], first[4], first[9], first[4]),
        batch(rec(9 + JUMP + 1, a), first[2], bad) + batch(other[5], other[1], kiosk=OTHER),
        batch(first[12], first[3], first[11]),
        batch(first[7], first[8], first[10], first[1]) + batch(other[2], kiosk=OTHER),
    ]
    for n, items in enumerate(rounds):
        outcomes = [comparable(ingest(s, items)) for s in stores]
        assert outcomes[0] == outcomes[1], f"round {n}: the stores disagree"
        views = [shape(s.streams(max_ranges=100)) for s in stores]
        assert views[0] == views[1], f"round {n}: stream state differs"
        for kiosk in (KIOSK, OTHER):
            per_kiosk = [shape(s.streams(kiosk, max_ranges=1)) for s in stores]
            assert per_kiosk[0] == per_kiosk[1]
        assert stores[0].parked_record_ids() == stores[1].parked_record_ids()
        held = [[(r.kiosk, r.id, r.stream, r.seq) for r in s.stored_records()] for s in stores]
        assert held[0] == held[1]
    [state] = stores[1].streams(KIOSK, max_ranges=100)
    assert (state.contiguous_seq, state.max_seq, state.gaps) == (4, 12, ((5, 5),))
    for name in ("duplicates_received", "seq_jumps_parked"):
        assert stores[0].counter(name) == stores[1].counter(name) > 0


@pytest.mark.parametrize("which", ["sqlite", "postgresql"])
def test_a_replayed_batch_is_absorbed(
    which: str, stores: tuple[SQLiteStore, PostgresStore]
) -> None:
    store: SQLiteStore | PostgresStore = stores[0] if which == "sqlite" else stores[1]
    stream = new_stream_id()
    items = batch(*(rec(q, stream) for q in (1, 2, 3, 5)))
    first = ingest(store, items)
    again = ingest(store, items)
    assert (first.stored, first.duplicates) == (4, 0)
    assert (again.stored, again.duplicates, again.dead_letters) == (0, 4, 0)
    assert sorted(again.acked[KIOSK]) == sorted(first.acked[KIOSK])
    assert again.digests == first.digests
    assert store.count() == 4
    [state] = store.streams(KIOSK)
    assert (state.contiguous_seq, state.max_seq, state.gaps) == (3, 5, ((4, 4),))


@pytest.mark.parametrize("which", ["sqlite", "postgresql"])
def test_another_body_under_a_known_id_is_a_counted_conflict(
    which: str, stores: tuple[SQLiteStore, PostgresStore]
) -> None:
    store: SQLiteStore | PostgresStore = stores[0] if which == "sqlite" else stores[1]
    stream, rid = new_stream_id(), new_ulid()
    ingest(store, batch(rec(1, stream, rid=rid)))
    out = ingest(store, batch(rec(1, stream, rid=rid, level="khong_hai_long")))
    assert out.conflicts == [(KIOSK, rid)]
    assert (out.stored, out.duplicates, out.dead_letters) == (0, 0, 1)
    assert out.acked[KIOSK] == [rid]  # first wins; the kiosk stops resending
    assert store.counter("id_conflicts") == 1
    assert [r.id for r in store.stored_records(KIOSK)] == [rid]
    assert [d["reason"][:12] for d in store.dead_letters()] == ["id-conflict:"]


def test_migrations_are_versioned_and_idempotent(pg: PgDatabase) -> None:
    # Two processes' worth of stores opening one new database at once, then again.
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            PostgresStore(pg.dsn).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = PostgresStore(pg.dsn)
    assert store.schema_versions() == VERSIONS
    store.close()
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(VERSIONS),)


def test_the_previous_schema_is_upgraded_with_its_data_kept(pg: PgDatabase) -> None:
    """A database left at version 1 (the first release's schema) gains the later ones at open."""
    stream = new_stream_id()
    with psycopg.connect(pg.dsn) as conn:
        assert migrate(conn, MIGRATIONS[:1]) == [1]
        # What the first release wrote for records 1 and 3 of a stream (2 missing), in
        # its own tables only: today's code must not be needed to read it.
        for seq in (1, 3):
            conn.execute(
                "INSERT INTO records (kiosk, id, stream, seq, kind, created, received_at, body)"
                " VALUES (%s, %s, %s, %s, 'rating', '2026-11-26T09:15:02.123+07:00', 1.0,"
                ' \'{"level":"hai_long"}\')',
                (KIOSK, new_ulid(), stream, seq),
            )
        conn.execute(
            "INSERT INTO streams (kiosk, stream, contiguous_seq, max_seq, gap_since, first_seen,"
            " updated, missing_count, gap_count) VALUES (%s, %s, 1, 3, 1.0, 1.0, 1.0, 1, 1)",
            (KIOSK, stream),
        )
        conn.execute(
            "INSERT INTO stream_gaps (kiosk, stream, lo, hi, since) VALUES (%s, %s, 2, 2, 1.0)",
            (KIOSK, stream),
        )
        conn.commit()
    store = PostgresStore(pg.dsn)
    try:
        assert store.schema_versions() == VERSIONS
        assert [r.seq for r in store.stored_records(KIOSK)] == [1, 3]
        [state] = store.streams(KIOSK)
        assert (state.contiguous_seq, state.max_seq, state.gaps) == (1, 3, ((2, 2),))
        store.ingest([FleetUpdate(kiosk=KIOSK, type="status", body={"state": "offline"})])
        assert store.kiosk_states()[KIOSK][0] == "offline"
        assert store.quota_usage([KIOSK])[KIOSK].records == 2  # migration 5's backfill
        out = ingest(store, batch(rec(2, stream)))
        assert out.stored == 1
        [state] = store.streams(KIOSK)
        assert (state.contiguous_seq, state.gaps) == (3, ())
        assert store.quota_usage([KIOSK])[KIOSK].records == 3
    finally:
        store.close()


def test_status_rows_are_written_alike(stores: tuple[SQLiteStore, PostgresStore]) -> None:
    updates = [
        FleetUpdate(kiosk=KIOSK, type="status", body={"state": "online"}),
        FleetUpdate(kiosk=OTHER, type="status", body={"state": "online"}),
        FleetUpdate(kiosk=KIOSK, type="status", body={"state": "offline"}),
    ]
    lite, post = stores
    for store in stores:
        store.ingest(updates)
    rows = lite.conn.execute("SELECT kiosk, state FROM kiosks ORDER BY kiosk").fetchall()
    assert {k: s for k, (s, _) in post.kiosk_states().items()} == dict(rows)
    assert dict(rows) == {KIOSK: "offline", OTHER: "online"}


def test_heartbeats_leave_the_same_status_and_bounded_history(
    tmp_path: Path, pg: PgDatabase
) -> None:
    history = HistorySettings(every_s=0.0, max_rows=3)
    lite = SQLiteStore(tmp_path / "central.db", history=history)
    post = PostgresStore(pg.dsn, history=history)
    try:
        for n in range(5):
            body = {
                "ts": "2026-11-26T09:15:02.123+07:00",
                "queued": n,
                "oldest_queued": "",
                "disk_free_bytes": 1000 - n,
                "agent_version": "1.2.0",
                "devices": {"printer": {"state": "ok" if n % 2 else "paper-out"}},
            }
            beat = FleetUpdate(kiosk=KIOSK, type="heartbeat", body=body)
            for store in (lite, post):
                store.ingest([beat, FleetUpdate(kiosk=OTHER, type="heartbeat", body=body)])
        lite_rows = heartbeats.health_history(lite.conn, KIOSK)
        post_rows = post.health_history(KIOSK)
        assert [(h.queued, h.disk_free_bytes, h.devices) for h in post_rows] == [
            (h.queued, h.disk_free_bytes, h.devices) for h in lite_rows
        ]
        assert [h.queued for h in post_rows] == [2, 3, 4]  # at most max_rows per kiosk
        row = "SELECT kiosk, state, queued, heartbeat_ts FROM kiosks ORDER BY kiosk"
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute(row).fetchall() == lite.conn.execute(row).fetchall()
    finally:
        lite.close()
        post.close()


def test_config_selects_the_store(tmp_path: Path, pg: PgDatabase) -> None:
    with pytest.raises((ValueError, ConfigError), match=r"central\.postgresql_dsn"):
        CentralConfig.model_validate({"central": {"store": "postgresql"}})
    lite = open_store(CentralConfig.model_validate({"central": {"database": tmp_path / "c.db"}}))
    assert isinstance(lite, SQLiteStore)
    lite.close()
    cfg = CentralConfig.model_validate(
        {"central": {"store": "postgresql", "postgresql_dsn": pg.dsn}}
    )
    post = open_store(cfg)
    assert isinstance(post, PostgresStore)
    assert post.schema_versions() == VERSIONS
    post.close()


CRASHING_COLLECTOR = textwrap.dedent(
    """
    import sys
    from central import sequences
    from central.store_pg import PostgresStore
    from sync.envelope import records_topic
    from tests import identity as keyring
    from tests.test_store_contract import rec

    dsn, stream = sys.argv[1], sys.argv[2]
    store = PostgresStore(dsn)
    keyring.process_batch(store, [(records_topic("{kiosk}"), rec(1, stream))])
    print("acked", flush=True)

    def stall(self):
        print("mid-batch", flush=True)
        sys.stdin.read()  # killed here, records written, transaction open

    sequences.StreamBook.flush = stall
    keyring.process_batch(
        store, [(records_topic("{kiosk}"), rec(q, stream)) for q in range(2, 50)]
    )
    """
).format(kiosk=KIOSK)


def others_connected(pg: PgDatabase) -> int:
    with psycopg.connect(pg.dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (pg.name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_collector_killed_mid_batch_loses_nothing_acked(pg: PgDatabase) -> None:
    stream = new_stream_id()
    PostgresStore(pg.dsn).close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_COLLECTOR, pg.dsn, stream],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "acked"
        assert proc.stdout.readline().strip() == "mid-batch"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wait_until(lambda: others_connected(pg) == 0, timeout=30, what="the killed backend gone")
    store = PostgresStore(pg.dsn)
    try:
        # The server noticed the dead connection and rolled its transaction back.
        assert [r.seq for r in store.stored_records(KIOSK)] == [1]
        assert store.count() == 1
        [state] = store.streams(KIOSK)
        assert (state.contiguous_seq, state.max_seq, state.gaps) == (1, 1, ())
        # Its kiosk lock went with it: the resend of that batch commits in full.
        out = ingest(store, batch(*(rec(q, stream) for q in range(2, 5))))
        assert out.stored == 3
        [state] = store.streams(KIOSK)
        assert (state.contiguous_seq, state.max_seq) == (4, 4)
    finally:
        store.close()


def test_a_lost_database_connection_is_the_store_down_not_poison(pg: PgDatabase) -> None:
    """One attempt, nothing split or dead-lettered, the error raised: the kiosks resend later."""
    store = PostgresStore(pg.dsn)
    store.raw.close()  # what a restarted or unreachable server leaves the collector with
    attempts: list[int] = []
    real_ingest = store.ingest

    def counted(items: Any) -> IngestOutcome:
        attempts.append(len(items))
        return real_ingest(items)

    store.ingest = counted  # type: ignore[method-assign]
    with pytest.raises(psycopg.OperationalError) as raised:
        ingest(store, batch(rec(1, new_stream_id()), rec(2, new_stream_id())))
    assert store_is_down(raised.value)
    assert attempts == [2], "the batch was split as if one message were poison"
    store = PostgresStore(pg.dsn)
    assert (store.count(), store.dead_letter_count()) == (0, 0)
    store.close()


def test_two_collectors_sharing_one_kiosk_keep_its_stream_exact(pg: PgDatabase) -> None:
    """Competing consumers: batches of one stream to two stores at once, out of order."""
    stream = new_stream_id()
    payloads = [rec(q, stream) for q in range(1, 241)]
    # Collector A takes the odd seqs, B the even ones, each also resending a few of the other's.
    parts = [
        [payloads[i] for i in range(0, 240, 2)] + payloads[1:40:8],
        [payloads[i] for i in range(1, 240, 2)] + payloads[0:40:8],
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def collect(part: list[bytes]) -> None:
        store = PostgresStore(pg.dsn)
        try:
            start.wait()
            for i in range(0, len(part), 3):
                ingest(store, batch(*part[i : i + 3]))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=collect, args=(p,)) for p in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = PostgresStore(pg.dsn)
    try:
        assert [r.seq for r in store.stored_records(KIOSK)] == list(range(1, 241))
        [state] = store.streams(KIOSK)
        assert (state.contiguous_seq, state.max_seq, state.gaps, state.gap_count) == (
            240,
            240,
            (),
            0,
        )
        assert (state.missing_count, state.gap_since) == (0, None)
        assert store.dead_letter_count() == 0
    finally:
        store.close()


def test_the_central_service_opens_postgresql_for_its_collector(
    tmp_path: Path, pg: PgDatabase
) -> None:
    keys = keyring.write_keys(tmp_path / "keys")
    cfg = CentralConfig.model_validate(
        {
            "central": {
                "database": str(tmp_path / "central.db"),
                "store": "postgresql",
                "postgresql_dsn": pg.dsn,
            },
            "security": {"signing_key": str(keys.central_key)},
        }
    )
    CentralService(cfg)  # creates the schema before the broker speaks, as `aps-central run`
    with psycopg.connect(pg.dsn) as conn:
        applied = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        # The store's migrations and the back office's (everything of central's is there).
        assert applied == (len(VERSIONS) + len(backoffice_db.pg_migrations()),)
    store = CentralService(cfg).collector._store_factory()
    try:
        assert isinstance(store, PostgresStore)
    finally:
        store.close()


def test_streams_are_listed_in_the_same_order_whatever_the_databases_collation(
    tmp_path: Path,
) -> None:
    """A production database created with a locale that ignores punctuation (as glibc's
    en_US does; here ICU's ``und-u-ka-shifted``) sorts ``k-b...`` after ``ka...``; the
    stores must still list streams alike (byte order, as SQLite)."""
    name = f"aps_test_icu_{secrets.token_hex(4)}"
    with admin_connection() as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu"
                " ICU_LOCALE 'und-u-ka-shifted' LOCALE 'C.UTF-8'"
            ).format(sql.Identifier(name))
        )
    try:
        dsn = make_conninfo(ADMIN_DSN, dbname=name)
        with psycopg.connect(dsn) as conn:  # the database really sorts the other way
            assert conn.execute("SELECT 'ka' < 'k-b'").fetchone() == (True,)
        lite = SQLiteStore(tmp_path / "c.db", max_seq_jump=JUMP)
        post = PostgresStore(dsn, max_seq_jump=JUMP)
        try:
            for store in (lite, post):
                for kiosk in ("k-b-01", "ka-01", "k-a-01"):
                    ingest(store, batch(rec(1, new_stream_id(), kiosk=kiosk), kiosk=kiosk))
            order = [[s.kiosk for s in store.streams()] for store in (lite, post)]
            assert order[0] == order[1] == ["k-a-01", "k-b-01", "ka-01"]
        finally:
            lite.close()
            post.close()
    finally:
        with admin_connection() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def advisory_locks(conn: psycopg.Connection[Any], pid: int, *, granted: bool) -> set[int]:
    """The 64-bit advisory lock keys backend ``pid`` holds (or waits for).

    Only the one-bigint form (``objsubid = 1``): the kiosks' keys, not the records'
    two-int fence (store_pg.RECORDS_FENCE) every batch also holds.
    """
    rows = conn.execute(
        "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
        " WHERE locktype = 'advisory' AND objsubid = 1 AND pid = %s AND granted = %s",
        (pid, granted),
    ).fetchall()
    return {int(r[0]) for r in rows}


def lock_key(conn: psycopg.Connection[Any], kiosk: str) -> int:
    row = conn.execute("SELECT hashtextextended(%s, 0)", (kiosk,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_batch_locks_each_of_its_kiosks_in_one_global_order(pg: PgDatabase) -> None:
    """Kiosks a < b < c in one batch, b held by a rival: a taken, b awaited, c not yet.

    Every kiosk of the batch is locked (it waits for b), and in sorted order whatever
    order the records came in (it holds a, not c): two collectors never deadlock.
    """
    a, b, c = "k-lock-a", "k-lock-b", "k-lock-c"
    stream = new_stream_id()
    items = batch(rec(1, stream, kiosk=c), kiosk=c) + batch(rec(1, stream, kiosk=a), kiosk=a)
    items += batch(rec(1, stream, kiosk=b), kiosk=b)
    store = PostgresStore(pg.dsn)
    pid = store.raw.info.backend_pid
    done: list[IngestOutcome] = []
    with psycopg.connect(pg.dsn, autocommit=True) as watch, psycopg.connect(pg.dsn) as rival:
        keys = {k: lock_key(watch, k) for k in (a, b, c)}
        rival.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (b,))
        worker = threading.Thread(target=lambda: done.append(ingest(store, items)))
        worker.start()
        try:
            wait_until(
                lambda: advisory_locks(watch, pid, granted=False) == {keys[b]},
                timeout=30,
                what="the batch waiting for kiosk b's lock",
            )
            assert advisory_locks(watch, pid, granted=True) == {keys[a]}
        finally:
            rival.commit()  # b released: the batch goes on
            worker.join(30)
    try:
        assert [out.stored for out in done] == [3]
        assert {r.kiosk for r in store.stored_records()} == {a, b, c}
    finally:
        store.close()
