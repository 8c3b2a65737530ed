"""Central's store: idempotent ingest in one transaction per batch.

The :class:`Store` protocol is what the collector needs; :class:`SQLiteStore`
is the default (one province on one machine). A PostgreSQL store implements
the same protocol for a national deployment.

Every batch is one transaction: records inserted idempotently (keyed by
``(kiosk, id)``), dead letters written, per-stream sequence state advanced.
The collector acks only what :meth:`Store.ingest` returned, after it
returned, so an ack always follows a commit (invariant 3).

A batch costs O(batch), whatever the history held: existing ids are looked up
in one query, new records go in with one ``executemany``, and sequence state
is kept per stream as ranges (:mod:`central.sequences`). A replay of an id
with another body is an ``id-conflict`` (dead-lettered, counted, still acked);
the hash compared is the SHA-256 of the stored body text, never a re-parse.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from central import CentralError, attachments, quotas, store_reads
from central.attachments import AttachmentLimits
from central.fleet import heartbeats
from central.fleet.heartbeats import Heartbeat, HistorySettings
from central.ingest import PAYLOAD_HEAD_BYTES, Accept, DeadLetter, FleetUpdate
from central.sequences import DEFAULT_MAX_SEQ_JUMP, Claim, StreamBook, migrate
from central.sequences import SCHEMA as SEQUENCES_SCHEMA
from central.store_reads import REPORT_RANGES as REPORT_RANGES  # part of the Store contract
from central.store_reads import StreamState as StreamState
from sync.envelope import Record, Rejection, records_topic
from sync.files import create_private_file, why_unopenable


@dataclass
class IngestOutcome:
    acked: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rejected: dict[str, list[Rejection]] = field(default_factory=lambda: defaultdict(list))
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    parked: int = 0
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    attachments: Counter[str] = field(default_factory=Counter)
    #: (kiosk, id) -> digest of the envelope central holds under that id (for the acks).
    digests: dict[tuple[str, str], str] = field(default_factory=dict)

    def absorb(self, other: IngestOutcome) -> None:
        """Add ``other`` (another committed part of the same batch) to this outcome."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "digests" or isinstance(mine, Counter):
                mine.update(theirs)
            elif isinstance(mine, dict):
                for key, values in theirs.items():
                    mine.setdefault(key, []).extend(values)
            elif isinstance(mine, list):
                mine.extend(theirs)
            else:
                setattr(self, f.name, mine + theirs)


class Store(Protocol):
    def ingest(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> IngestOutcome: ...

    def streams(
        self, kiosk: str | None = None, *, limit: int | None = None, max_ranges: int = ...
    ) -> list[StreamState]: ...

    def close(self) -> None: ...

    # Read side used by the contract tests (tests/stateful_sync.py); every store
    # answers them from its own tables.
    def stored_records(self, kiosk: str | None = None) -> list[StoredRecord]: ...

    def parked_record_ids(self, kiosk: str | None = None) -> set[str]: ...


#: Named in an ack for an id whose stored row predates kept envelopes and whose body
#: differs: no kiosk record has this digest, so the kiosk leaves that id unsynced.
NO_DIGEST = "A" * 43


SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kiosk TEXT NOT NULL,
    id TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created TEXT NOT NULL,
    received_at REAL NOT NULL,
    body TEXT NOT NULL,
    sha BLOB,
    envelope TEXT,
    digest TEXT,
    key_id TEXT,
    PRIMARY KEY (kiosk, id),
    UNIQUE (kiosk, stream, seq)
);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, received_at);
CREATE TABLE IF NOT EXISTS streams (
    kiosk TEXT NOT NULL,
    stream TEXT NOT NULL,
    contiguous_seq INTEGER NOT NULL DEFAULT 0,
    max_seq INTEGER NOT NULL DEFAULT 0,
    gap_since REAL,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL,
    missing_count INTEGER NOT NULL DEFAULT 0,
    gap_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kiosk, stream)
);
CREATE INDEX IF NOT EXISTS streams_gap_since ON streams (gap_since) WHERE gap_since IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    topic TEXT NOT NULL,
    topic_kiosk TEXT,
    reason TEXT NOT NULL,
    record_id TEXT,
    payload_len INTEGER NOT NULL,
    payload_head BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected_records (
    kiosk TEXT NOT NULL,
    id TEXT NOT NULL,
    stream TEXT,
    seq INTEGER,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (kiosk, id)
);
CREATE INDEX IF NOT EXISTS rejected_stream_seq ON rejected_records (kiosk, stream, seq);
CREATE TABLE IF NOT EXISTS kiosks (
    kiosk TEXT PRIMARY KEY,
    state TEXT,
    state_at REAL,
    last_heartbeat_at REAL,
    queued INTEGER,
    oldest_queued TEXT,
    devices TEXT,
    heartbeat TEXT,
    clock_skew_s REAL,
    clock_skew_at REAL,
    heartbeat_ts REAL,
    state_ts REAL,
    history_at REAL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# Columns added since the first schema; older databases get them by ALTER TABLE.
ADDED_COLUMNS = {
    "records": {"sha": "BLOB", "envelope": "TEXT", "digest": "TEXT", "key_id": "TEXT"},
    "kiosks": {"clock_skew_s": "REAL", "clock_skew_at": "REAL", **heartbeats.KIOSK_COLUMNS},
}


def body_text(body: dict[str, Any]) -> str:
    """The stored text of a body (compact JSON, keys in the order received)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def body_sha(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _enable_wal(conn: sqlite3.Connection, *, timeout_s: float) -> None:
    """Switch to WAL, waiting out another connection that is opening the same new file.

    Converting a fresh file to WAL needs a lock SQLite's busy timeout does not wait
    for (two connections opening one new store at once: "database is locked" at
    once); retry for up to ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def refusal(r: Record, claim: Claim, book: StreamBook, text: str) -> DeadLetter:
    """The dead letter of a record its stream refuses (a seq jump parked, or a seq another
    record holds), shared by every store so the reasons read the same."""
    if claim is Claim.JUMP:
        reason = (
            f"seq-jump: seq {r.seq} of stream {r.stream} is more than "
            f"{book.max_seq_jump} past its highest seq {book.highest(r.kiosk, r.stream)};"
            " parked (see [collector] max_seq_jump)"
        )
    else:
        reason = f"seq-conflict: seq {r.seq} of stream {r.stream} is another record"
    return DeadLetter(
        topic=records_topic(r.kiosk),
        topic_kiosk=r.kiosk,
        reason=reason,
        payload_len=len(text),
        payload_head=text.encode("utf-8")[:PAYLOAD_HEAD_BYTES],
        record_id=r.id,
        reject=True,
        stream=r.stream,
        seq=None,
    )


class SQLiteStore:
    """The default store: one SQLite file, WAL, synchronous=FULL."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_seq_jump: int = DEFAULT_MAX_SEQ_JUMP,
        attachment_limits: AttachmentLimits | None = None,
        history: HistorySettings | None = None,
    ) -> None:
        self.path = Path(path)
        #: [fleet] hook: how much heartbeat history is kept (central/fleet/heartbeats.py).
        self.history = history or HistorySettings()
        self._next_history_prune = 0.0
        create_private_file(self.path)  # 0600, and so its -wal/-shm: citizen data
        self.max_seq_jump = max_seq_jump
        self.conn = sqlite3.connect(
            str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        _enable_wal(self.conn, timeout_s=30.0)
        self.conn.execute("PRAGMA synchronous=FULL")
        had_gap_table = self._has_table("stream_gaps")
        # One transaction: a report opening the file meanwhile never sees half a schema.
        try:
            # [fleet] hook: the health history table (central/fleet/heartbeats.py)
            history_schema = heartbeats.HISTORY_SCHEMA
            self.conn.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\n{history_schema}\nCOMMIT;")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.executescript(SEQUENCES_SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            self._add_columns(table, columns)
        if not had_gap_table:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                migrate(self.conn, had_gap_table)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        # [attachments] hook: limits for screen_chunks; chunk tables (central/attachments.py).
        self.attachment_limits = attachment_limits or AttachmentLimits()
        attachments.migrate(self.conn)
        quotas.migrate(self.conn)  # [quotas] hook: usage triggers, dead-letter dedup columns

    def _has_table(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def _add_columns(self, table: str, columns: dict[str, str]) -> None:
        have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name not in have:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    def ingest(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> IngestOutcome:
        out = IngestOutcome()
        now = time.time()
        usage = quotas.UsageTally()  # [quotas] hook: what this batch stores, per kiosk
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            # [attachments] hook: chunks over the limits or at odds with their file -> rejected.
            items = attachments.screen_chunks(c, items, self.attachment_limits)
            book = StreamBook(c, now, self.max_seq_jump)
            records = []
            beats: list[Heartbeat] = []
            statuses: list[tuple[str, dict[str, Any]]] = []
            for item in items:
                if isinstance(item, FleetUpdate):
                    if item.type == "status":
                        statuses.append((item.kiosk, item.body))
                    else:
                        beats.append(Heartbeat(kiosk=item.kiosk, body=item.body, text=item.text))
                elif isinstance(item, DeadLetter):
                    self._dead_letter(item, out, book, now)
                else:
                    records.append(item)
            chunks = self._store_records(records, out, book, usage, now) if records else []
            book.flush()
            # [fleet] hook: one status-row write per kiosk per batch, bounded history.
            heartbeats.write_statuses(c, statuses, now)
            heartbeats.write_heartbeats(c, beats, now, self.history)
            if beats and now >= self._next_history_prune:
                heartbeats.prune_history(c, now, self.history)
                self._next_history_prune = now + heartbeats.AGE_PRUNE_EVERY_S
            for r in chunks:
                # [attachments] hook: O(1) work per stored chunk; assembles the last.
                if status := attachments.add_chunk(c, r, now):
                    out.attachments[status] += 1
            usage.write(c)  # [quotas] hook: one upsert per kiosk per batch
            counts = {
                "duplicates_received": out.duplicates,
                "id_conflicts": len(out.conflicts),
                "seq_jumps_parked": out.parked,
            }
            c.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                [(name, n) for name, n in counts.items() if n],
            )
            c.execute("COMMIT")
        except BaseException:
            # On SQLITE_FULL SQLite has already rolled back by itself; a second
            # ROLLBACK would raise and hide the real error.
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return out

    def _dead_letter(
        self, item: DeadLetter, out: IngestOutcome, book: StreamBook, now: float
    ) -> None:
        self._dead(item, now)
        out.dead_letters += 1
        if not (item.reject and item.record_id and item.topic_kiosk):
            return
        out.rejected[item.topic_kiosk].append(Rejection(id=item.record_id, reason=item.reason))
        # A parked record's seq is accounted for (not a gap), unless it is
        # implausibly far ahead: then it would open a gap of that size.
        seq = item.seq
        if (
            item.stream is not None
            and seq is not None
            and book.claim(item.topic_kiosk, item.stream, seq) is Claim.JUMP
        ):
            seq = None
        self.conn.execute(
            "INSERT OR IGNORE INTO rejected_records"
            " (kiosk, id, stream, seq, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
            (item.topic_kiosk, item.record_id, item.stream, seq, item.reason, now),
        )

    def _known_ids(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[bytes, str | None]]:
        """Body hashes and envelope digests of the ``(kiosk, id)`` already stored, in one
        query per 2,000."""
        known: dict[tuple[str, str], tuple[bytes, str | None]] = {}
        for start in range(0, len(keys), 2000):
            part = keys[start : start + 2000]
            values = ", ".join("(?, ?)" for _ in part)
            for kiosk, rid, sha, body, digest in self.conn.execute(
                "SELECT r.kiosk, r.id, r.sha, CASE WHEN r.sha IS NULL THEN r.body END, r.digest"
                f" FROM (VALUES {values}) AS v"
                " JOIN records r ON r.kiosk = v.column1 AND r.id = v.column2",
                [x for key in part for x in key],
            ):
                known[(kiosk, rid)] = (body_sha(body) if sha is None else bytes(sha), digest)
        return known

    def _store_records(
        self,
        accepted: list[Accept],
        out: IngestOutcome,
        book: StreamBook,
        usage: quotas.UsageTally,
        now: float,
    ) -> list[Record]:
        """Insert the batch's new records; returns the stored chunks (for their attachments).

        Each row keeps the signed envelope as received (evidence), its digest and the key
        that signed it. An ack names the digest of what is stored under the id: for a
        duplicate or an id conflict, the first record's (the kiosk compares it with its own).
        """
        book.load({(a.record.kiosk, a.record.stream) for a in accepted})
        known = self._known_ids(list({(a.record.kiosk, a.record.id) for a in accepted}))
        rows = []
        chunks: list[Record] = []
        lag: dict[str, float] = {}
        for a in accepted:
            r = a.record
            text = body_text(r.body)
            sha = body_sha(text)
            key = (r.kiosk, r.id)
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
                # A row stored before envelopes were kept: the body matched, name this one.
                if stored_digest is None and stored_sha == sha:
                    stored_digest = a.digest
                out.digests[key] = stored_digest or NO_DIGEST
                continue
            claim = book.claim(r.kiosk, r.stream, r.seq)
            if claim is Claim.NEW:
                known[key] = (sha, a.digest)
                envelope = a.envelope.decode("utf-8")
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
                # Every Record's created is a valid instant (sync.schemas); a wrong
                # clock is recorded as skew, never refused.
                created = r.created_unix()
                lag[r.kiosk] = min(lag.get(r.kiosk, now - created), now - created)
                continue
            if claim is Claim.JUMP:
                out.parked += 1
            self._dead_letter(refusal(r, claim, book, text), out, book, now)
        self.conn.executemany(
            "INSERT INTO records (kiosk, id, stream, seq, kind, created, received_at, body, sha,"
            " envelope, digest, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        # Clock skew: the smallest (receive time - created) of the kiosk's new
        # records in this batch: its clock error plus the delivery delay;
        # negative when the kiosk's clock is ahead of central's. [fleet] hook: a kiosk whose
        # heartbeats carry their ts is measured by them (no delivery delay of a backlog in
        # it), so records leave its offset alone.
        self.conn.executemany(
            "INSERT INTO kiosks (kiosk, clock_skew_s, clock_skew_at) VALUES (?, ?, ?)"
            " ON CONFLICT (kiosk) DO UPDATE SET clock_skew_s = excluded.clock_skew_s,"
            " clock_skew_at = excluded.clock_skew_at WHERE kiosks.heartbeat_ts IS NULL",
            [(kiosk, round(s, 3), now) for kiosk, s in lag.items()],
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

    def fleet(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT kiosk, state, state_at, last_heartbeat_at, queued, oldest_queued, devices,"
            " heartbeat FROM kiosks ORDER BY kiosk"
        )
        cols = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row, strict=True))
            if d["devices"]:  # written by an older release
                d["devices"] = json.loads(d["devices"])
            else:  # the devices are in the last heartbeat (central/fleet/heartbeats.py)
                beat = json.loads(d.pop("heartbeat")) if d.get("heartbeat") else {}
                devices = beat.get("devices") if isinstance(beat, dict) else None
                d["devices"] = devices if isinstance(devices, dict) else {}
            d.pop("heartbeat", None)
            out.append(d)
        return out

    def _dead(self, d: DeadLetter, now: float) -> None:
        # [quotas] hook: deduplicated (same kiosk, reason, id, payload -> one row, counted).
        quotas.record_dead_letter(self.conn, d, now)

    def quota_usage(self, kiosks: Collection[str]) -> dict[str, quotas.Usage]:
        """[quotas] hook: what each kiosk holds (records, bytes, dead letters)."""
        return quotas.read_usage(self.conn, kiosks)

    def held_ids(self, kiosk: str, ids: Collection[str]) -> set[str]:
        """[quotas] hook: which of these record ids central already holds."""
        return quotas.read_held_ids(self.conn, kiosk, ids)

    # -- reading (central/store_reads.py: the same queries on both stores) ---------
    def streams(
        self, kiosk: str | None = None, *, limit: int | None = None, max_ranges: int = REPORT_RANGES
    ) -> list[StreamState]:
        """Streams with open gaps first (oldest gap first), each with its first gap ranges."""
        return store_reads.streams(self.conn, kiosk, limit=limit, max_ranges=max_ranges)

    def stream_count(self, *, with_gaps: bool = False) -> int:
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
        return store_reads.stale_gaps(self.conn, cutoff, limit=limit, max_ranges=max_ranges)

    def stale_gap_count(self, older_than_s: float, now: float | None = None) -> int:
        return store_reads.stale_gap_count(
            self.conn, (time.time() if now is None else now) - older_than_s
        )

    def counter(self, name: str) -> int:
        return store_reads.counter(self.conn, name)

    def conflicts(self, limit: int = REPORT_RANGES) -> list[dict[str, Any]]:
        """The latest ``id-conflict`` dead letters, newest first."""
        return store_reads.conflicts(self.conn, limit)

    def clock_skews(self, limit: int = REPORT_RANGES) -> list[dict[str, Any]]:
        """Kiosks by the size of their last measured clock skew, largest first."""
        return store_reads.clock_skews(self.conn, limit)

    def gap_summary(self) -> list[tuple[str, int, int, float]]:
        """[fleet] per kiosk with an open gap: streams, records missing, oldest since."""
        return store_reads.gap_summary(self.conn)

    def dead_letter_times(self, after: float) -> list[tuple[str, float]]:
        """[fleet] (kiosk, at) of the dead letters kiosks' topics sent since ``after``."""
        return store_reads.dead_letter_times(self.conn, after)

    def quota_report(self, settings: quotas.QuotaSettings) -> dict[str, Any]:
        """[quotas] the ``quotas`` part of ``aps-central status``."""
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

    def dead_letter_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            return int(self.conn.execute("SELECT count(*) FROM records").fetchone()[0])
        return int(
            self.conn.execute("SELECT count(*) FROM records WHERE kind = ?", (kind,)).fetchone()[0]
        )

    def record_ids(self, kiosk: str | None = None) -> list[str]:
        sql, args = "SELECT id FROM records", ()
        if kiosk is not None:
            sql, args = "SELECT id FROM records WHERE kiosk = ?", (kiosk,)  # type: ignore[assignment]
        return [r[0] for r in self.conn.execute(sql, args)]

    def attachments(self, kiosk: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT kiosk, att, size, sha256, status, reason FROM attachments"
        args: tuple[Any, ...] = ()
        if kiosk is not None:
            sql += " WHERE kiosk = ?"
            args = (kiosk,)
        cur = self.conn.execute(sql, args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def attachment_data(self, kiosk: str, att: str) -> bytes | None:
        # [attachments] hook: a complete file is kept in its chunks.
        return attachments.read_file(self.conn, kiosk, att)

    def dead_letters(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT n, at, topic, topic_kiosk, reason, record_id, payload_len, count, last_at"
            " FROM dead_letters ORDER BY n"
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        self.conn.close()

    # -- the contract's read side (tests/stateful_sync.py) ----------------------------
    def stored_records(self, kiosk: str | None = None) -> list[StoredRecord]:
        """Every record held (for one kiosk), in (kiosk, stream, seq) order."""
        sql = "SELECT kiosk, id, stream, seq, kind FROM records"
        args: tuple[Any, ...] = ()
        if kiosk is not None:
            sql += " WHERE kiosk = ?"
            args = (kiosk,)
        rows = self.conn.execute(sql + " ORDER BY kiosk, stream, seq", args).fetchall()
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
        return {row[0] for row in self.conn.execute(sql, args)}

    @classmethod
    def open_readonly(cls, path: Path | str) -> SQLiteStore:
        """An existing store opened for reading only (``aps-central status`` and friends).

        Never creates a file, never writes (SQLite refuses any write through it).
        Raises :class:`StoreMissing` when there is no file and :class:`StoreError`
        when the path cannot be read or is not a central database.
        """
        p = Path(path)
        if not p.exists() and not p.is_symlink():
            reason = why_unopenable(p, write=False)
            raise StoreMissing(f"no central database at {p}" + (f" ({reason})" if reason else ""))
        reason = why_unopenable(p, write=False)
        if reason is not None:
            raise StoreError(f"cannot read central database {p}: {reason}")
        conn = sqlite3.connect(
            f"{p.resolve().as_uri()}?mode=ro",
            uri=True,
            timeout=30.0,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("SELECT count(*) FROM records").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{p} is not a readable central database ({exc})") from exc
        store = cls.__new__(cls)
        store.path, store.conn = p, conn
        store.max_seq_jump = DEFAULT_MAX_SEQ_JUMP
        store.attachment_limits = AttachmentLimits()
        return store


class StoreError(CentralError):
    """The store cannot be opened or read."""


class StoreMissing(StoreError):
    """No central database at the path; opening read-only never creates one."""


@dataclass(frozen=True, kw_only=True)
class StoredRecord:
    """One record as central holds it (the read side of :class:`Store`)."""

    kiosk: str
    id: str
    stream: str
    seq: int
    kind: str
