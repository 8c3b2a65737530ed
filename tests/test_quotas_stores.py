"""Storage quotas on both stores (SQLite and PostgreSQL, issue 11): the records quota
leaves a kiosk unacked without hurting another, resends of what central holds are still
acked, the dead-letter cap, dead letters counted once per payload, and the usage the
deletes take off (triggers), including a database that held records before migration 5."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from central.quotas import ENVELOPE_BYTES, Quotas, QuotaSettings
from central.store import SQLiteStore, body_text
from central.store_pg import MIGRATIONS, PostgresStore, migrate
from sync.envelope import records_topic
from sync.ids import new_stream_id
from tests import identity as keyring
from tests.pg import PgDatabase
from tests.records import envelope

GOOD, BAD = "k-quota-good", "k-quota-flood"
AnyStore = SQLiteStore | PostgresStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    s: AnyStore
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "c.db")
    else:
        s = PostgresStore(request.getfixturevalue("pg").dsn)
    yield s
    s.close()


def batcher() -> Callable[[str, int], list[tuple[str, bytes]]]:
    streams = {GOOD: new_stream_id(), BAD: new_stream_id()}
    seq = {GOOD: 0, BAD: 0}

    def batch(kiosk: str, n: int) -> list[tuple[str, bytes]]:
        out = []
        for _ in range(n):
            seq[kiosk] += 1
            out.append((records_topic(kiosk), envelope(kiosk, seq[kiosk], streams[kiosk])))
        return out

    return batch


def delete_records(store: AnyStore, kiosk: str, n: int) -> None:
    sql = (
        "DELETE FROM records WHERE (kiosk, id) IN"
        " (SELECT kiosk, id FROM records WHERE kiosk = ? ORDER BY seq LIMIT ?)"
    )
    if isinstance(store, SQLiteStore):
        store.conn.execute(sql, (kiosk, n))
    else:
        with store.raw.transaction():
            store.conn.execute(sql, (kiosk, n))


def test_a_kiosk_at_its_records_quota_is_left_unacked_and_the_other_is_not(
    store: AnyStore,
) -> None:
    q = Quotas(QuotaSettings(max_records_bytes=2000))
    batch = batcher()
    first = batch(BAD, 20)
    r = keyring.process_batch(store, first, quotas=q)
    assert r.outcome.stored == 20
    held = store.quota_usage([BAD])[BAD]
    assert held.records == 20 and held.records_bytes >= 2000
    more = batch(BAD, 5)
    r = keyring.process_batch(store, more + batch(GOOD, 5), quotas=q)
    assert r.outcome.acked.get(BAD) is None and not r.outcome.rejected.get(BAD)
    assert len(r.outcome.acked[GOOD]) == 5
    assert store.dead_letters() == []
    assert q.count(BAD, "records_quota") == 5
    assert store.quota_usage([BAD])[BAD] == held
    r = keyring.process_batch(store, first[:3], quotas=q)  # resends: acked again
    assert len(r.outcome.acked[BAD]) == 3 and r.outcome.duplicates == 3
    # Records deleted at central free their quota (the delete trigger).
    delete_records(store, BAD, 10)
    after = store.quota_usage([BAD])[BAD]
    assert after.records == 10 and after.records_bytes == held.records_bytes // 2
    r = keyring.process_batch(store, more, quotas=q)
    assert len(r.outcome.acked[BAD]) == 5


def test_the_usage_counts_what_is_stored(store: AnyStore) -> None:
    batch = batcher()
    payloads = batch(GOOD, 7)
    keyring.process_batch(store, payloads)
    expected = 0
    for _, p in payloads:
        env = json.loads(p)
        expected += len(body_text(env["body"])) + len(env["kind"]) + len(env["created"])
        expected += ENVELOPE_BYTES
    usage = store.quota_usage([GOOD, "k-never-seen"])
    assert usage[GOOD].records == 7 and usage[GOOD].records_bytes == expected
    assert usage["k-never-seen"].records == 0


def test_dead_letters_of_one_kiosk_are_capped(store: AnyStore) -> None:
    q = Quotas(QuotaSettings(max_dead_letters=10))
    garbage = [(records_topic(BAD), f"not json {i}".encode()) for i in range(30)]
    good = [(records_topic(GOOD), f"not json either {i}".encode()) for i in range(3)]
    for i in range(0, 30, 5):
        keyring.process_batch(store, garbage[i : i + 5], quotas=q)
    keyring.process_batch(store, good, quotas=q)
    usage = store.quota_usage([BAD, GOOD])
    assert 10 <= usage[BAD].dead_letters < 15
    assert usage[GOOD].dead_letters == 3
    assert q.count(BAD, "dead_letter_quota") == 30 - usage[BAD].dead_letters


def test_the_same_dead_letter_again_is_one_row_with_a_count(store: AnyStore) -> None:
    stream = new_stream_id()
    future = [envelope(BAD, i, stream, v=2) for i in range(1, 6)]
    for _ in range(20):
        r = keyring.process_batch(store, [(records_topic(BAD), p) for p in future])
        assert r.acks == []
    rows = store.dead_letters()
    assert len(rows) == 5 and all(row["count"] == 20 for row in rows)
    assert store.quota_usage([BAD])[BAD].dead_letters == 5


def test_a_postgresql_database_that_held_records_before_quotas_is_backfilled(
    pg: PgDatabase,
) -> None:
    before = [v for v, _ in MIGRATIONS if v != 5]
    store = PostgresStore(pg.dsn)
    batch = batcher()
    keyring.process_batch(store, [*batch(GOOD, 4), (records_topic(BAD), b"garbage")])
    want = store.quota_usage([GOOD, BAD])
    store.close()
    # Migration 5 undone (its objects dropped, its row deleted), then opened again.
    with psycopg.connect(pg.dsn) as conn:
        conn.execute(
            "DROP TABLE kiosk_usage; DROP FUNCTION kiosk_usage_record_out CASCADE;"
            " DROP FUNCTION kiosk_usage_record_body CASCADE;"
            " DROP FUNCTION kiosk_usage_dead_in CASCADE;"
            " DROP FUNCTION kiosk_usage_dead_out CASCADE;"
            " DELETE FROM schema_migrations WHERE version = 5"
        )
        conn.commit()
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in versions] == before
        assert migrate(conn) == [5]
    store = PostgresStore(pg.dsn)
    try:
        assert store.quota_usage([GOOD, BAD]) == want
        assert want[GOOD].records == 4 and want[BAD].dead_letters == 1
    finally:
        store.close()
