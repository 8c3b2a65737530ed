"""Housekeeping and ``aps-central status`` on both stores (issue 11): the collectors' limit
counters flushed, dead letters expired after their retention, incomplete attachments
expired, the quota report and gap alerts, read-only reports that never create a schema."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psycopg
from click.testing import CliRunner

from central import backoffice_db
from central.attachments import AttachmentLimits
from central.cli import main as central_cli
from central.ingest import FleetUpdate
from central.quotas import Quotas, QuotaSettings
from central.store_pg import PostgresStore
from sync.attachments import chunk_bodies
from sync.envelope import records_topic
from sync.ids import new_stream_id, new_ulid
from tests import identity as keyring
from tests import records, stack
from tests.pg import PgDatabase, StoreFactory

KIOSK, OTHER = "k-house-01", "k-house-02"


def rating(seq: int, stream: str, kiosk: str = KIOSK) -> tuple[str, bytes]:
    return records.posted(records.record(seq, stream, kiosk=kiosk))


def chunk(body: dict[str, object], seq: int, stream: str) -> tuple[str, bytes]:
    return records.posted(records.record(seq, stream, kiosk=KIOSK, kind="chunk", body=body))


def test_housekeeping_flushes_counters_and_expires_on_either_store(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    settings = QuotaSettings(messages_per_s=1.0, burst_messages=1, pace_messages=0)
    limiter = Quotas(settings)
    topic = records_topic(OTHER)
    admitted = [limiter.admit(topic, b"x") for _ in range(5)]
    assert admitted.count(False) == 4  # over the rate: counted, to be flushed
    # Garbage: dead letters, to expire after their retention.
    keyring.process_batch(
        store, [(records_topic(KIOSK), f"garbage {i}".encode()) for i in range(3)]
    )
    # An attachment of 3 chunks of which one arrived: incomplete, to expire.
    stream = new_stream_id()
    att = new_ulid()
    bodies = chunk_bodies(att, os.urandom(300), 100)
    keyring.process_batch(store, [chunk(bodies[0], 1, stream)])
    assert store.dead_letter_count() == 3

    now = 1e12  # far later than everything stored: every retention has run out
    done = store.housekeep(
        limiter, QuotaSettings(dead_letter_retention_s=3600), AttachmentLimits(), now=now
    )
    assert done.counters_flushed == 1
    assert done.dead_letters_expired == 3 and store.dead_letter_count() == 0
    assert done.attachments_expired == 1
    [expired] = store.attachments(KIOSK)
    assert expired["att"] == att and expired["status"] == "expired"
    assert "1 of 3 chunks" in expired["reason"]
    assert store.attachment_data(KIOSK, att) is None
    assert store.quota_usage([KIOSK])[KIOSK].dead_letters == 0  # the delete trigger

    report = store.quota_report(settings)
    [limited] = [k for k in report["kiosks"] if k["kiosk"] == OTHER]
    assert limited["limited"]["rate"]["count"] == 4
    assert report["attachments"] == {"incomplete": 0, "expired": 1}
    assert any(f"kiosk {OTHER}" in a and "rate limit" in a for a in report["alerts"])
    # Nothing new: a second round flushes and expires nothing.
    again = store.housekeep(limiter, settings, AttachmentLimits(), now=now)
    assert (again.counters_flushed, again.dead_letters_expired, again.attachments_expired) == (
        0,
        0,
        0,
    )


def _pg_config(tmp_path: Path, dsn: str) -> Path:
    cfg = stack.write_central_config(tmp_path / "central.toml", tmp_path / "central.db", 1883)
    text = cfg.read_text(encoding="utf-8").replace(
        "[central]\n", f'[central]\nstore = "postgresql"\npostgresql_dsn = "{dsn}"\n', 1
    )
    cfg.write_text(text, encoding="utf-8")
    return cfg


def test_status_reads_the_postgresql_store(tmp_path: Path, pg: PgDatabase) -> None:
    store = PostgresStore(pg.dsn)
    stream = new_stream_id()
    keyring.process_batch(
        store, [rating(1, stream), rating(4, stream), rating(1, new_stream_id(), OTHER)]
    )
    keyring.process_batch(store, [(records_topic(KIOSK), b"not json")])
    with psycopg.connect(pg.dsn) as conn:  # the gap has been open for an hour
        conn.execute("UPDATE streams SET gap_since = gap_since - 3600")
    store.close()
    cfg = _pg_config(tmp_path, pg.dsn)
    out = CliRunner().invoke(central_cli, ["status", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    status = json.loads(out.output)
    assert status["records"] == 3 and status["streams_total"] == 2
    assert status["streams_with_gaps"] == 1 and status["dead_letters"] == 1
    [gappy] = [s for s in status["streams"] if s["kiosk"] == KIOSK]
    assert gappy["gaps"] == [[2, 3]] and gappy["missing_count"] == 2
    assert any(f"kiosk {KIOSK}: 2 records" in a for a in status["alerts"])
    assert status["quotas"]["dead_letters"]["rows"] == 1
    out = CliRunner().invoke(central_cli, ["dead-letters", "--config", str(cfg)])
    assert out.exit_code == 0 and json.loads(out.output)["reason"].startswith("bad-json")


def test_status_never_creates_a_postgresql_schema(tmp_path: Path, pg: PgDatabase) -> None:
    cfg = _pg_config(tmp_path, pg.dsn)
    out = CliRunner().invoke(central_cli, ["status", "--config", str(cfg)])
    assert out.exit_code != 0 and "no central schema" in out.output
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
    wrong = _pg_config(tmp_path, "host=127.0.0.1 port=1 user=postgres dbname=x connect_timeout=2")
    out = CliRunner().invoke(central_cli, ["status", "--config", str(wrong)])
    assert out.exit_code != 0 and "cannot reach PostgreSQL" in out.output
    assert "central.postgresql_dsn" in out.output


def test_a_readonly_postgresql_store_refuses_to_write(pg: PgDatabase) -> None:
    PostgresStore(pg.dsn).close()
    ro = PostgresStore.open_readonly(pg.dsn)
    try:
        assert ro.count() == 0
        try:
            ro.ingest([keyring.classify(*rating(1, new_stream_id()))])
        except psycopg.errors.ReadOnlySqlTransaction:
            pass
        else:
            raise AssertionError("a read-only store wrote")
    finally:
        ro.close()


def test_every_housekeeping_round_is_committed(store_factory: StoreFactory) -> None:
    """Seen from another connection: a round's reads must not leave a transaction open
    that the next round's writes would then hide in (PostgreSQL: a savepoint)."""
    store = store_factory("house")
    settings = QuotaSettings(messages_per_s=1.0, burst_messages=1, pace_messages=0)
    limiter = Quotas(settings)
    topic = records_topic(OTHER)
    for round_no in range(1, 4):
        for _ in range(3):
            limiter.admit(topic, b"x")
        keyring.process_batch(store, [(records_topic(KIOSK), f"junk {round_no}".encode())])
        store.housekeep(
            limiter, QuotaSettings(dead_letter_retention_s=1.0), AttachmentLimits(), now=1e12
        )
        other = store_factory("house")  # a second connection, as a report opens
        try:
            [limited] = [k for k in other.quota_report(settings)["kiosks"] if k["kiosk"] == OTHER]
            assert limited["limited"]["rate"]["count"] == 3 * round_no - 1, round_no
            assert other.dead_letter_count() == 0, round_no  # each round's expiry committed
        finally:
            other.close()


def test_the_fleet_table_reads_status_and_history_from_postgresql(
    tmp_path: Path, pg: PgDatabase
) -> None:
    """The collectors write status rows and heartbeats to PostgreSQL; ``aps-central fleet``
    joins them with the registry, which is in PostgreSQL too."""
    cfg = _pg_config(tmp_path, pg.dsn)
    keyring.register(backoffice_db.PgTarget(pg.dsn), KIOSK, OTHER)
    store = PostgresStore(pg.dsn)
    now_ts = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime())
    body = {
        "ts": now_ts,
        "queued": 7,
        "oldest_queued": "",
        "disk_free_bytes": 5 * 1024**3,
        "agent_version": "1.2.0",
        "devices": {"printer": {"state": "paper_out"}},
    }
    store.ingest(
        [
            FleetUpdate(kiosk=KIOSK, type="status", body={"state": "online"}),
            FleetUpdate(kiosk=KIOSK, type="heartbeat", body=body),
        ]
    )
    store.close()
    out = CliRunner().invoke(central_cli, ["fleet", "--config", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["kiosk"]: r for r in map(json.loads, out.output.splitlines())}
    assert rows[KIOSK]["queued"] == 7 and rows[KIOSK]["state"] == "degraded"
    assert rows[OTHER]["state"] == "never-seen"  # enrolled, never heard
    out = CliRunner().invoke(central_cli, ["fleet", "show", KIOSK, "--config", str(cfg), "--json"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert [s["queued"] for s in shown["history"]] == [7]
