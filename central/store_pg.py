"""Central's store on PostgreSQL: the :class:`central.store.Store` contract, for a nation.

Theory of operation
-------------------
The records semantics are SQLiteStore's, statement for statement: one
transaction per batch; known ids looked up in one query; new records inserted
with ``INSERT ... ON CONFLICT DO NOTHING`` (the primary key ``(kiosk, id)``
makes a replay a no-op even if two collectors race on one id); duplicates
(same body hash) and id conflicts (another body) counted and dead-lettered
as in SQLite; per-stream sequence state kept as gap ranges by the very same
:class:`central.sequences.StreamBook`, which runs here through :class:`PgConn`,
a thin adapter that speaks the sqlite3 ``execute(sql, args)`` dialect
(``?`` and ``?N`` placeholders) over a psycopg 3 connection.

Parallel collectors: each collector opens its own store (``store_factory``),
so a store is used by one thread and holds **one** connection (no pool). Two
collectors may get records of one kiosk at once; every batch therefore takes
a transaction-scoped advisory lock per kiosk it touches (in sorted order, so
two batches never deadlock) before it reads any stream row: the stream
arithmetic of a kiosk never interleaves, whatever the isolation level.

Round trips and what runs under the locks: the body's canonical text, its hash
and the envelope's text are computed before the transaction (nothing waits on
them). Under the locks a batch costs a fixed handful of statements whatever its
size: the kiosk locks in one (``unnest`` of the sorted kiosk array), the known
ids in one (``unnest`` of two arrays), the new records in one ``INSERT ...
SELECT FROM unnest(...)`` with one binary array per column (its text never
changes, so psycopg prepares it; the server plans it once, not once a row as
``executemany`` costs), the kiosks' clock rows likewise, then the stream rows
and COMMIT (docs/benchmarks.md, "Central ingest on PostgreSQL").

The schema is created by versioned migrations (:data:`MIGRATIONS`) recorded
in ``schema_migrations``; :func:`migrate` runs at open, under an advisory lock,
applies each missing version in its own transaction and is idempotent.

Attachments are screened and assembled by :mod:`central.attachments`, the
same functions as in SQLite, through :class:`PgConn`.

Storage quotas read the same ``kiosk_usage`` counts as in SQLite (migration 5:
the batch's tally, and PL/pgSQL triggers for deletes and dead letters).

Housekeeping (the limit-event counters, the expiry of dead letters and of
incomplete attachments) and the report queries of ``aps-central status`` are
the SQLite ones too (:mod:`central.store_reads`, :mod:`central.quotas`,
:func:`central.portable_sql.write_transaction`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

import psycopg

from central import attachments, quotas, store_reads
from central.attachments import AttachmentLimits
from central.fleet import heartbeats
from central.fleet.heartbeats import HealthSample, Heartbeat, HistorySettings
from central.ingest import PAYLOAD_HEAD_BYTES, Accept, DeadLetter, FleetUpdate
from central.sequences import DEFAULT_MAX_SEQ_JUMP, Claim, StreamBook
from central.store import (
    NO_DIGEST,
    REPORT_RANGES,
    IngestOutcome,
    StoredRecord,
    StoreMissing,
    StreamState,
    body_sha,
    body_text,
    refusal,
)
from sync.envelope import Record, Rejection, records_topic

#: (version, statements). Append only: a released version is never edited.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
CREATE TABLE records (
    kiosk TEXT NOT NULL,
    id TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    created TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    body TEXT NOT NULL,
    sha BYTEA,
    envelope TEXT,
    digest TEXT,
    key_id TEXT,
    PRIMARY KEY (kiosk, id),
    UNIQUE (kiosk, stream, seq)
);
CREATE INDEX records_kind ON records (kind, received_at);
CREATE TABLE streams (
    kiosk TEXT NOT NULL,
    stream TEXT NOT NULL,
    contiguous_seq BIGINT NOT NULL DEFAULT 0,
    max_seq BIGINT NOT NULL DEFAULT 0,
    gap_since DOUBLE PRECISION,
    first_seen DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    missing_count BIGINT NOT NULL DEFAULT 0,
    gap_count BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (kiosk, stream)
);
CREATE INDEX streams_gap_since ON streams (gap_since) WHERE gap_since IS NOT NULL;
CREATE TABLE stream_gaps (
    kiosk TEXT NOT NULL,
    stream TEXT NOT NULL,
    lo BIGINT NOT NULL,
    hi BIGINT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kiosk, stream, lo)
);
CREATE INDEX stream_gaps_since ON stream_gaps (kiosk, stream, since);
CREATE TABLE dead_letters (
    n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    topic TEXT NOT NULL,
    topic_kiosk TEXT,
    reason TEXT NOT NULL,
    record_id TEXT,
    payload_len BIGINT NOT NULL,
    payload_head BYTEA NOT NULL,
    count BIGINT NOT NULL DEFAULT 1,
    last_at DOUBLE PRECISION,
    dedup_key TEXT UNIQUE
);
CREATE TABLE rejected_records (
    kiosk TEXT NOT NULL,
    id TEXT NOT NULL,
    stream TEXT,
    seq BIGINT,
    reason TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kiosk, id)
);
CREATE INDEX rejected_stream_seq ON rejected_records (kiosk, stream, seq);
CREATE TABLE kiosks (
    kiosk TEXT PRIMARY KEY,
    clock_skew_s DOUBLE PRECISION,
    clock_skew_at DOUBLE PRECISION,
    heartbeat_ts DOUBLE PRECISION
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
""",
    ),
    (
        2,
        # [fleet] status rows: the columns of SQLite's kiosks table (heartbeats: not yet).
        """
ALTER TABLE kiosks
    ADD COLUMN state TEXT,
    ADD COLUMN state_at DOUBLE PRECISION,
    ADD COLUMN state_ts DOUBLE PRECISION,
    ADD COLUMN last_heartbeat_at DOUBLE PRECISION,
    ADD COLUMN queued BIGINT,
    ADD COLUMN oldest_queued TEXT,
    ADD COLUMN devices TEXT,
    ADD COLUMN heartbeat TEXT,
    ADD COLUMN history_at DOUBLE PRECISION;
""",
    ),
    (
        3,
        # [fleet] heartbeat history, bounded per kiosk (central/fleet/heartbeats.py).
        """
CREATE TABLE kiosk_health_history (
    kiosk TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    queued BIGINT,
    oldest_queued_s DOUBLE PRECISION,
    disk_free_bytes BIGINT,
    clock_skew_s DOUBLE PRECISION,
    agent_version TEXT,
    devices TEXT,
    last_error TEXT,
    PRIMARY KEY (kiosk, at)
);
""",
    ),
    (
        4,
        # [attachments] files arriving as chunk records, assembled at O(1) per chunk
        # (central/attachments.py: the same functions run on both stores).
        """
CREATE TABLE attachments (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('complete', 'corrupt', 'expired')),
    reason TEXT,
    data BYTEA,
    completed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kiosk, att)
);
CREATE TABLE attachment_progress (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    total BIGINT NOT NULL,
    file_size BIGINT NOT NULL,
    file_sha256 TEXT NOT NULL,
    received BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    first_at DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kiosk, att)
);
CREATE INDEX attachment_progress_last ON attachment_progress (last_at);
CREATE TABLE attachment_chunks (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    idx BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (kiosk, att, idx)
);
""",
    ),
    (
        5,
        # [quotas] what each kiosk holds (central/quotas.py): inserted records are counted
        # once per batch by UsageTally; these triggers take deleted records off and count
        # dead letters, as SQLite's do. Backfilled from what a database already holds.
        # 58 is quotas.ENVELOPE_BYTES when this was released (a migration is never edited).
        """
CREATE TABLE kiosk_usage (
    kiosk TEXT PRIMARY KEY,
    records BIGINT NOT NULL DEFAULT 0,
    records_bytes BIGINT NOT NULL DEFAULT 0,
    dead_letters BIGINT NOT NULL DEFAULT 0
);
CREATE FUNCTION kiosk_usage_record_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE kiosk_usage SET records = records - 1,
        records_bytes = records_bytes - (length(OLD.body) + length(OLD.kind)
            + length(OLD.created) + 58)
        WHERE kiosk = OLD.kiosk;
    RETURN NULL;
END $$;
CREATE TRIGGER kiosk_usage_record_out AFTER DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION kiosk_usage_record_out();
CREATE FUNCTION kiosk_usage_record_body() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE kiosk_usage SET records_bytes = records_bytes - length(OLD.body) + length(NEW.body)
        WHERE kiosk = NEW.kiosk;
    RETURN NULL;
END $$;
CREATE TRIGGER kiosk_usage_record_body AFTER UPDATE OF body ON records
    FOR EACH ROW EXECUTE FUNCTION kiosk_usage_record_body();
CREATE FUNCTION kiosk_usage_dead_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kiosk_usage (kiosk, dead_letters) VALUES (coalesce(NEW.topic_kiosk, ''), 1)
        ON CONFLICT (kiosk) DO UPDATE SET dead_letters = kiosk_usage.dead_letters + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER kiosk_usage_dead_in AFTER INSERT ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION kiosk_usage_dead_in();
CREATE FUNCTION kiosk_usage_dead_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE kiosk_usage SET dead_letters = dead_letters - 1
        WHERE kiosk = coalesce(OLD.topic_kiosk, '');
    RETURN NULL;
END $$;
CREATE TRIGGER kiosk_usage_dead_out AFTER DELETE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION kiosk_usage_dead_out();
INSERT INTO kiosk_usage (kiosk, records, records_bytes)
    SELECT kiosk, count(*), sum(length(body) + length(kind) + length(created)
        + 58) FROM records GROUP BY kiosk;
INSERT INTO kiosk_usage (kiosk, dead_letters)
    SELECT coalesce(topic_kiosk, ''), count(*) FROM dead_letters GROUP BY 1
    ON CONFLICT (kiosk) DO UPDATE SET dead_letters = excluded.dead_letters;
""",
    ),
    (
        6,
        # [quotas] the collectors' limit counters, flushed by housekeeping (quotas.flush).
        """
CREATE TABLE kiosk_limit_events (
    kiosk TEXT NOT NULL,
    event TEXT NOT NULL,
    count BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    first_at DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kiosk, event)
);
CREATE INDEX dead_letters_last ON dead_letters (last_at);
""",
    ),
    (
        7,
        # The back office's projections catch up by rowid, as on SQLite (central.projection):
        # an identity column numbers records in insertion order; RECORDS_FENCE makes that
        # order safe to read (records_top).
        """
ALTER TABLE records ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX records_rowid ON records (rowid);
""",
    ),
)

#: The records' commit-order fence (two-int advisory key, apart from the kiosks' bigint
#: keys): every ingest batch holds it shared; :func:`records_top` takes it exclusively.
RECORDS_FENCE = (0x41505352, 1)  # "APSR"

#: Advisory lock key of the migration step (any constant unique to this module).
_MIGRATION_LOCK = 0x41505331  # "APS1"

_NUMBERED = re.compile(r"\?(\d+)")

#: Byte-wise text order in ORDER BY, as SQLite's default (store_reads' ``text_order``).
TEXT_ORDER = ' COLLATE "C"'


class PgConn:
    """The sqlite3 ``execute``/``executemany`` dialect over a psycopg connection.

    ``?`` becomes ``%s``; ``?N`` (numbered, as in sqlite) becomes ``%s`` with the
    N-th argument repeated in place; a literal ``%`` is escaped. It lets
    :class:`central.sequences.StreamBook` run unchanged on PostgreSQL.
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def transaction(self) -> AbstractContextManager[psycopg.Transaction]:
        """A transaction (portable_sql.write_transaction's PostgreSQL side)."""
        return self.raw.transaction()

    @staticmethod
    def translate(sql: str, args: Sequence[Any]) -> tuple[str, list[Any]]:
        sql = sql.replace("%", "%%")
        if not _NUMBERED.search(sql):
            return sql.replace("?", "%s"), list(args)
        order = [int(m) - 1 for m in _NUMBERED.findall(sql)]
        return _NUMBERED.sub("%s", sql), [args[i] for i in order]

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        query, params = self.translate(sql, args)
        return self.raw.execute(query.encode(), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        query, _ = self.translate(sql, rows[0])
        if _NUMBERED.search(sql):
            rows = [self.translate(sql, r)[1] for r in rows]
        with self.raw.cursor() as cur:
            cur.executemany(query.encode(), rows)


def records_top(conn: psycopg.Connection[Any]) -> int:
    """The highest records ``rowid`` below which no row can still appear.

    Identity values are handed out at INSERT and made visible at COMMIT, so with
    two collectors rowid 9 may commit after rowid 10. Every ingest batch holds
    :data:`RECORDS_FENCE` shared until it commits; taking it exclusively waits for
    the batches in flight, so the ``max(rowid)`` read next sees every row numbered
    so far, and a later batch numbers above it. Held for one statement: ingest
    pauses for that long, and the back office's catch-ups are seconds apart.
    """
    conn.execute("SELECT pg_advisory_lock(%s, %s)", RECORDS_FENCE)
    try:
        row = conn.execute("SELECT max(rowid) FROM records").fetchone()
    except BaseException:
        # A failed transaction cannot run the unlock; ending the session releases the lock
        # (a held fence would stop every collector).
        conn.close()
        raise
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", RECORDS_FENCE)
    return int(row[0] or 0) if row is not None else 0


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (the arrays an ``unnest`` INSERT takes)."""
    return [[row[i] for row in rows] for i in range(width)]


def migrate(
    conn: psycopg.Connection[Any], migrations: Sequence[tuple[int, str]] = MIGRATIONS
) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    applied: list[int] = []
    with conn.transaction():
        # Two processes opening one new database: CREATE ... IF NOT EXISTS alone races
        # (both see no table, one fails on the catalogue); the lock makes them take turns.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
    for version, statements in migrations:
        with conn.transaction():
            # A second opener waits here, then finds the version done.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (version,)
            ).fetchone()
            if done is not None:
                continue
            conn.execute(statements.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)",
                (version, time.time()),
            )
            applied.append(version)
    return applied


def _encode(a: Accept) -> tuple[str, bytes, str]:
    """An accepted record's stored body text, its hash, and its envelope's text."""
    text = body_text(a.record.body)
    return text, body_sha(text), a.envelope.decode("utf-8")


class PostgresStore:
    """Central's store on PostgreSQL (psycopg 3, one connection per store)."""

    def __init__(
        self,
        dsn: str,
        *,
        max_seq_jump: int = DEFAULT_MAX_SEQ_JUMP,
        attachment_limits: AttachmentLimits | None = None,
        history: HistorySettings | None = None,
        connect_timeout_s: int = 10,
    ) -> None:
        self.dsn = dsn
        self.max_seq_jump = max_seq_jump
        #: [attachments] hook: limits for screen_chunks (central/attachments.py).
        self.attachment_limits = attachment_limits or AttachmentLimits()
        #: [fleet] hook: how much heartbeat history is kept (central/fleet/heartbeats.py).
        self.history = history or HistorySettings()
        self._next_history_prune = 0.0
        # Autocommit: a statement outside ``with raw.transaction()`` (a report's read)
        # ends at once instead of opening a transaction that the next ``transaction()``
        # block would only nest in as a savepoint, never committed (seen in a test).
        self.raw = psycopg.connect(dsn, connect_timeout=connect_timeout_s, autocommit=True)
        try:
            migrate(self.raw)
        except BaseException:
            self.raw.close()
            raise
        self.conn = PgConn(self.raw)

    @classmethod
    def open_readonly(cls, dsn: str, *, connect_timeout_s: int = 10) -> PostgresStore:
        """An existing store opened for reading only (``aps-central status`` and friends).

        Runs no migration and writes nothing (the session's transactions are read-only);
        raises :class:`central.store.StoreMissing` when the database has no APS schema.
        """
        raw = psycopg.connect(dsn, connect_timeout=connect_timeout_s, autocommit=True)
        try:
            raw.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            with raw.transaction():
                found = raw.execute("SELECT to_regclass('schema_migrations')").fetchone()
            if found is None or found[0] is None:
                raise StoreMissing(
                    "no central schema in this PostgreSQL database (start aps-central run once)"
                )
        except BaseException:
            raw.close()
            raise
        store = cls.__new__(cls)
        store.dsn, store.raw, store.conn = dsn, raw, PgConn(raw)
        store.max_seq_jump = DEFAULT_MAX_SEQ_JUMP
        store.attachment_limits = AttachmentLimits()
        store.history, store._next_history_prune = HistorySettings(), 0.0
        return store

    def close(self) -> None:
        self.raw.close()

    # -- writing --------------------------------------------------------------------
    def ingest(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> IngestOutcome:
        out = IngestOutcome()
        now = time.time()
        usage = quotas.UsageTally()  # [quotas] hook: what this batch stores, per kiosk
        # Pure Python work first, outside the kiosk locks (another collector may be
        # waiting for them): each body's canonical text and hash, each envelope's text.
        encoded = {id(item): _encode(item) for item in items if isinstance(item, Accept)}
        with self.raw.transaction():
            self._lock_kiosks(items)
            # [attachments] hook: chunks over the limits or at odds with their file -> rejected.
            items = attachments.screen_chunks(self.conn, items, self.attachment_limits)
            book = StreamBook(cast(Any, self.conn), now, self.max_seq_jump)
            records: list[Accept] = []
            statuses: list[tuple[str, dict[str, Any]]] = []
            beats: list[Heartbeat] = []
            for item in items:
                if isinstance(item, FleetUpdate):
                    if item.type == "status":
                        statuses.append((item.kiosk, item.body))
                    else:
                        beats.append(Heartbeat(kiosk=item.kiosk, body=item.body, text=item.text))
                    continue
                if isinstance(item, DeadLetter):
                    self._dead_letter(item, out, book, now)
                else:
                    records.append(item)
            chunks = self._store_records(records, out, book, usage, now, encoded) if records else []
            book.flush()
            # [fleet] hook: one status-row write per kiosk per batch, as in SQLite.
            fleet_conn = cast(Any, self.conn)
            heartbeats.write_statuses(fleet_conn, statuses, now)
            heartbeats.write_heartbeats(fleet_conn, beats, now, self.history)
            if beats and now >= self._next_history_prune:
                heartbeats.prune_history(fleet_conn, now, self.history)
                self._next_history_prune = now + heartbeats.AGE_PRUNE_EVERY_S
            for r in chunks:
                # [attachments] hook: O(1) work per stored chunk; assembles the last.
                if status := attachments.add_chunk(self.conn, r, now):
                    out.attachments[status] += 1
            usage.write(self.conn)  # [quotas] hook: one upsert per kiosk per batch
            counts = {
                "duplicates_received": out.duplicates,
                "id_conflicts": len(out.conflicts),
                "seq_jumps_parked": out.parked,
            }
            self.conn.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
                [(name, n) for name, n in counts.items() if n],
            )
        return out

    def _lock_kiosks(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> None:
        kiosks: set[str] = set()
        for item in items:
            if isinstance(item, Accept):
                kiosks.add(item.record.kiosk)
            elif isinstance(item, DeadLetter) and item.topic_kiosk:
                kiosks.add(item.topic_kiosk)
        if not kiosks:
            return
        # Before the kiosks' locks (never after: a top-reader queued for the fence would
        # otherwise wait on a batch that waits on a kiosk lock held behind it).
        self.raw.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", RECORDS_FENCE)
        # One round trip for all of them (a batch touches up to a few hundred kiosks):
        # unnest walks the sorted array in order, so every batch takes its locks in
        # the same global order and two batches never deadlock.
        self.raw.execute(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0)))"
            " FROM unnest(%b::text[]) AS u (k)",
            (sorted(kiosks),),
        )

    def _dead(self, d: DeadLetter, now: float) -> None:
        # [quotas] hook: deduplicated (same kiosk, reason, id, payload -> one row, counted).
        quotas.record_dead_letter(self.conn, d, now)

    def _dead_letter(
        self, item: DeadLetter, out: IngestOutcome, book: StreamBook, now: float
    ) -> None:
        self._dead(item, now)
        out.dead_letters += 1
        if not (item.reject and item.record_id and item.topic_kiosk):
            return
        out.rejected[item.topic_kiosk].append(Rejection(id=item.record_id, reason=item.reason))
        seq = item.seq
        if (
            item.stream is not None
            and seq is not None
            and book.claim(item.topic_kiosk, item.stream, seq) is Claim.JUMP
        ):
            seq = None
        self.conn.execute(
            "INSERT INTO rejected_records (kiosk, id, stream, seq, reason, at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kiosk, id) DO NOTHING",
            (item.topic_kiosk, item.record_id, item.stream, seq, item.reason, now),
        )

    def _known_ids(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[bytes, str | None]]:
        known: dict[tuple[str, str], tuple[bytes, str | None]] = {}
        if not keys:
            return known
        # Two array parameters, whatever the batch size: one short statement to parse.
        for kiosk, rid, sha, digest in self.raw.execute(
            "SELECT r.kiosk, r.id, r.sha, r.digest"
            " FROM unnest(%b::text[], %b::text[]) AS v (kiosk, id)"
            " JOIN records r ON r.kiosk = v.kiosk AND r.id = v.id",
            ([k for k, _ in keys], [i for _, i in keys]),
        ):
            known[(kiosk, rid)] = (bytes(sha), digest)
        return known

    def _store_records(
        self,
        accepts: list[Accept],
        out: IngestOutcome,
        book: StreamBook,
        usage: quotas.UsageTally,
        now: float,
        encoded: dict[int, tuple[str, bytes, str]],
    ) -> list[Record]:
        """Insert the batch's new records; returns the stored chunks (for their attachments)."""
        book.load({(a.record.kiosk, a.record.stream) for a in accepts})
        known = self._known_ids(sorted({(a.record.kiosk, a.record.id) for a in accepts}))
        rows: list[tuple[Any, ...]] = []
        chunks: list[Record] = []
        lag: dict[str, float] = {}
        for a in accepts:
            r: Record = a.record
            key = (r.kiosk, r.id)
            text, sha, envelope = encoded[id(a)]
            stored = known.get(key)
            if stored is not None:
                stored_sha, stored_digest = stored
                if stored_sha == sha:
                    out.duplicates += 1
                else:
                    self._conflict(r, text, now)
                    out.dead_letters += 1
                    out.conflicts.append(key)
                out.acked[r.kiosk].append(r.id)  # first wins; the kiosk stops resending
                out.digests[key] = stored_digest or NO_DIGEST
                continue
            claim = book.claim(r.kiosk, r.stream, r.seq)
            if claim is Claim.NEW:
                known[key] = (sha, a.digest)
                rows.append(
                    (
                        r.kiosk,
                        r.id,
                        r.stream,
                        r.seq,
                        r.kind,
                        r.created,
                        now,
                        text,
                        sha,
                        envelope,
                        a.digest,
                        a.key_id,
                    )
                )
                out.stored += 1
                out.acked[r.kiosk].append(r.id)
                out.digests[key] = a.digest
                usage.add(r, text)  # [quotas] hook
                if r.kind == "chunk":
                    chunks.append(r)
                created = r.created_unix()
                lag[r.kiosk] = min(lag.get(r.kiosk, now - created), now - created)
                continue
            if claim is Claim.JUMP:
                out.parked += 1
            self._dead_letter(refusal(r, claim, book, text), out, book, now)
        # The kiosk lock makes a known id impossible here; DO NOTHING keeps a replay a
        # no-op even so (the first body stays, as in SQLite).
        # One statement for the whole batch: the rows go as one array per column, so
        # the text is the same every time (prepared once by psycopg) and the server
        # parses, plans and executes it once, where executemany costs it once per row.
        if rows:
            self.raw.execute(
                "INSERT INTO records (kiosk, id, stream, seq, kind, created, received_at, body,"
                " sha, envelope, digest, key_id) SELECT * FROM unnest(%b::text[], %b::text[],"
                " %b::text[], %b::bigint[], %b::text[], %b::text[], %b::float8[], %b::text[],"
                " %b::bytea[], %b::text[], %b::text[], %b::text[])"
                " ON CONFLICT (kiosk, id) DO NOTHING",
                columns(rows, 12),
            )
        if lag:  # one row per kiosk (lag's keys): DO UPDATE never meets a key twice
            self.raw.execute(
                "INSERT INTO kiosks (kiosk, clock_skew_s, clock_skew_at)"
                " SELECT * FROM unnest(%b::text[], %b::float8[], %b::float8[])"
                " ON CONFLICT (kiosk) DO UPDATE SET clock_skew_s = excluded.clock_skew_s,"
                " clock_skew_at = excluded.clock_skew_at WHERE kiosks.heartbeat_ts IS NULL",
                columns([(kiosk, round(s, 3), now) for kiosk, s in lag.items()], 3),
            )
        return chunks

    def _conflict(self, r: Record, text: str, now: float) -> None:
        self._dead(
            DeadLetter(
                topic=records_topic(r.kiosk),
                topic_kiosk=r.kiosk,
                reason=f"id-conflict: record {r.id} was stored before with another body;"
                " the first one is kept",
                payload_len=len(text),
                payload_head=text.encode("utf-8")[:PAYLOAD_HEAD_BYTES],
                record_id=r.id,
            ),
            now,
        )

    # -- reading --------------------------------------------------------------------
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query outside any batch: its own short transaction, never left open."""
        with self.raw.transaction():
            return list(self.conn.execute(sql, args).fetchall())

    # -- reading (central/store_reads.py: the same queries as SQLite's) -------------
    def streams(
        self, kiosk: str | None = None, *, limit: int | None = None, max_ranges: int = REPORT_RANGES
    ) -> list[StreamState]:
        """Streams with open gaps first (oldest gap first), each with its first gap ranges."""
        with self.raw.transaction():
            return store_reads.streams(
                self.conn, kiosk, limit=limit, max_ranges=max_ranges, text_order=TEXT_ORDER
            )

    def stream_count(self, *, with_gaps: bool = False) -> int:
        with self.raw.transaction():
            return store_reads.stream_count(self.conn, with_gaps=with_gaps)

    def stale_gaps(
        self,
        older_than_s: float,
        now: float | None = None,
        *,
        limit: int | None = None,
        max_ranges: int = REPORT_RANGES,
    ) -> list[StreamState]:
        """Streams with a gap open for longer than ``older_than_s`` (an alert), oldest first."""
        cutoff = (time.time() if now is None else now) - older_than_s
        with self.raw.transaction():
            return store_reads.stale_gaps(self.conn, cutoff, limit=limit, max_ranges=max_ranges)

    def stale_gap_count(self, older_than_s: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - older_than_s
        with self.raw.transaction():
            return store_reads.stale_gap_count(self.conn, cutoff)

    def counter(self, name: str) -> int:
        with self.raw.transaction():
            return store_reads.counter(self.conn, name)

    def conflicts(self, limit: int = REPORT_RANGES) -> list[dict[str, Any]]:
        """The latest ``id-conflict`` dead letters, newest first."""
        with self.raw.transaction():
            return store_reads.conflicts(self.conn, limit)

    def clock_skews(self, limit: int = REPORT_RANGES) -> list[dict[str, Any]]:
        """Kiosks by the size of their last measured clock skew, largest first."""
        with self.raw.transaction():
            return store_reads.clock_skews(self.conn, limit)

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self._read("SELECT count(*) FROM records")[0][0])
        return int(self._read("SELECT count(*) FROM records WHERE kind = ?", (kind,))[0][0])

    def dead_letter_count(self) -> int:
        return int(self._read("SELECT count(*) FROM dead_letters")[0][0])

    def dead_letters(self) -> list[dict[str, Any]]:
        cols: tuple[str, ...] = (
            "n",
            "at",
            "topic",
            "topic_kiosk",
            "reason",
            "record_id",
            "payload_len",
            "count",
            "last_at",
        )
        rows = self._read(f"SELECT {', '.join(cols)} FROM dead_letters ORDER BY n")
        return [dict(zip(cols, row, strict=True)) for row in rows]

    def record_body(self, kiosk: str, rid: str) -> dict[str, Any] | None:
        rows = self._read("SELECT body FROM records WHERE kiosk = ? AND id = ?", (kiosk, rid))
        return None if not rows else cast(dict[str, Any], json.loads(rows[0][0]))

    def health_history(self, kiosk: str, since: float | None = None) -> list[HealthSample]:
        """[fleet] The kiosk's heartbeat samples, oldest first (as heartbeats.health_history)."""
        with self.raw.transaction():
            return heartbeats.health_history(cast(Any, self.conn), kiosk, since)

    def kiosk_status_rows(self, columns: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """[fleet] the kiosks' status rows (health.StatusSource): column names, rows."""
        with self.raw.transaction():
            cur = self.conn.execute(f"SELECT {columns} FROM kiosks")
            return [d[0] for d in cur.description or ()], list(cur.fetchall())

    def kiosk_states(self) -> dict[str, tuple[str | None, float | None]]:
        """[fleet] kiosk -> (state, state_at) as the status messages left it."""
        rows = self._read("SELECT kiosk, state, state_at FROM kiosks WHERE state IS NOT NULL")
        return {k: (state, at) for k, state, at in rows}

    def record_ids(self, kiosk: str | None = None) -> list[str]:
        """Ids of the records held (for one kiosk), as SQLiteStore.record_ids."""
        if kiosk is None:
            return [row[0] for row in self._read("SELECT id FROM records")]
        return [row[0] for row in self._read("SELECT id FROM records WHERE kiosk = ?", (kiosk,))]

    def stored_records(self, kiosk: str | None = None) -> list[StoredRecord]:
        """Every record held (for one kiosk), in (kiosk, stream, seq) order."""
        sql = "SELECT kiosk, id, stream, seq, kind FROM records"
        args: tuple[Any, ...] = ()
        if kiosk is not None:
            sql += " WHERE kiosk = ?"
            args = (kiosk,)
        rows = self._read(sql + ' ORDER BY kiosk COLLATE "C", stream COLLATE "C", seq', args)
        return [
            StoredRecord(kiosk=k, id=i, stream=s, seq=q, kind=kind) for k, i, s, q, kind in rows
        ]

    def parked_record_ids(self, kiosk: str | None = None) -> set[str]:
        """Ids of records central refused and parked (their kiosks were told: rejected)."""
        sql = "SELECT id FROM rejected_records"
        args: tuple[Any, ...] = ()
        if kiosk is not None:
            sql += " WHERE kiosk = ?"
            args = (kiosk,)
        return {row[0] for row in self._read(sql, args)}

    def quota_usage(self, kiosks: Collection[str]) -> dict[str, quotas.Usage]:
        """[quotas] hook: what each kiosk holds (records, bytes, dead letters)."""
        with self.raw.transaction():
            return quotas.read_usage(self.conn, kiosks)

    def held_ids(self, kiosk: str, ids: Collection[str]) -> set[str]:
        """[quotas] hook: which of these record ids central already holds."""
        with self.raw.transaction():
            return quotas.read_held_ids(self.conn, kiosk, ids)

    def attachments(self, kiosk: str | None = None) -> list[dict[str, Any]]:
        """Attachments assembled, corrupt or expired (as SQLiteStore.attachments)."""
        cols = ("kiosk", "att", "size", "sha256", "status", "reason")
        sql = f"SELECT {', '.join(cols)} FROM attachments"
        args: tuple[Any, ...] = ()
        if kiosk is not None:
            sql += " WHERE kiosk = ?"
            args = (kiosk,)
        return [dict(zip(cols, row, strict=True)) for row in self._read(sql, args)]

    def attachment_data(self, kiosk: str, att: str) -> bytes | None:
        """A complete file's bytes, read from its chunks in one transaction."""
        with self.raw.transaction():
            return attachments.read_file(self.conn, kiosk, att)

    def gap_summary(self) -> list[tuple[str, int, int, float]]:
        """[fleet] per kiosk with an open gap: streams, records missing, oldest since."""
        with self.raw.transaction():
            return store_reads.gap_summary(self.conn)

    def dead_letter_times(self, after: float) -> list[tuple[str, float]]:
        """[fleet] (kiosk, at) of the dead letters kiosks' topics sent since ``after``."""
        with self.raw.transaction():
            return store_reads.dead_letter_times(self.conn, after)

    def quota_report(self, settings: quotas.QuotaSettings) -> dict[str, Any]:
        """[quotas] the ``quotas`` part of ``aps-central status``, in one transaction."""
        with self.raw.transaction():
            return quotas.report(self.conn, settings)

    def housekeep(
        self,
        limiter: quotas.Quotas | None,
        settings: quotas.QuotaSettings,
        limits: AttachmentLimits,
        now: float | None = None,
    ) -> quotas.Housekeeping:
        """[quotas] counters flushed, dead letters and incomplete attachments expired."""
        return quotas.housekeep(self.conn, limiter, settings, limits, now=now)

    def schema_versions(self) -> list[int]:
        return [r[0] for r in self._read("SELECT version FROM schema_migrations ORDER BY version")]
