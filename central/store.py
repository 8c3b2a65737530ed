"""Central's store: idempotent ingest in one transaction per batch.

The :class:`Store` protocol is what the collector needs; :class:`SQLiteStore`
is the default (one province on one machine). A PostgreSQL store implements
the same protocol for a national deployment.

Every batch is one transaction: records inserted idempotently (keyed by
``(kiosk, id)``), dead letters written, per-stream sequence state advanced.
The collector acks only what :meth:`Store.ingest` returned, after it
returned, so an ack always follows a commit (invariant 3).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from central.attachments import SCHEMA as ATTACHMENTS_SCHEMA
from central.attachments import assemble_if_complete
from central.ingest import Accept, DeadLetter, FleetUpdate
from sync.envelope import Rejection


@dataclass
class IngestOutcome:
    acked: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rejected: dict[str, list[Rejection]] = field(default_factory=lambda: defaultdict(list))
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    attachments: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, kw_only=True)
class StreamState:
    kiosk: str
    stream: str
    contiguous_seq: int
    max_seq: int
    missing: tuple[int, ...]
    gap_since: float | None = None


class Store(Protocol):
    def ingest(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> IngestOutcome: ...

    def streams(self, kiosk: str | None = None) -> list[StreamState]: ...

    def close(self) -> None: ...

    # Read side used by the contract tests (tests/stateful_sync.py); every store
    # answers them from its own tables.
    def stored_records(self, kiosk: str | None = None) -> list[StoredRecord]: ...

    def parked_record_ids(self, kiosk: str | None = None) -> set[str]: ...


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
    PRIMARY KEY (kiosk, stream)
);
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
    heartbeat TEXT
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


# Seqs central has accounted for in one stream: stored records and parked
# (rejected) ones. Parameters: kiosk, stream, kiosk, stream.
ACCOUNTED_SEQS = (
    "SELECT seq FROM records WHERE kiosk = ? AND stream = ?"
    " UNION ALL SELECT seq FROM rejected_records WHERE kiosk = ? AND stream = ? AND seq IS NOT NULL"
)


class SQLiteStore:
    """The default store: one SQLite file, WAL, synchronous=FULL."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(
            str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)
        self.conn.executescript(ATTACHMENTS_SCHEMA)

    def ingest(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> IngestOutcome:
        out = IngestOutcome()
        now = time.time()
        touched: set[tuple[str, str]] = set()
        atts: set[tuple[str, str]] = set()
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for item in items:
                if isinstance(item, FleetUpdate):
                    self._fleet(item, now)
                    continue
                if isinstance(item, DeadLetter):
                    self._dead(item, now)
                    out.dead_letters += 1
                    if item.reject and item.record_id and item.topic_kiosk:
                        out.rejected[item.topic_kiosk].append(
                            Rejection(id=item.record_id, reason=item.reason)
                        )
                        # A parked record's seq is accounted for: not a gap.
                        c.execute(
                            "INSERT OR IGNORE INTO rejected_records"
                            " (kiosk, id, stream, seq, reason, at) VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                item.topic_kiosk,
                                item.record_id,
                                item.stream,
                                item.seq,
                                item.reason,
                                now,
                            ),
                        )
                        if item.stream is not None and item.seq is not None:
                            touched.add((item.topic_kiosk, item.stream))
                    continue
                r = item.record
                cur = c.execute(
                    "INSERT OR IGNORE INTO records"
                    " (kiosk, id, stream, seq, kind, created, received_at, body)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.kiosk,
                        r.id,
                        r.stream,
                        r.seq,
                        r.kind,
                        r.created,
                        now,
                        json.dumps(r.body, ensure_ascii=False, separators=(",", ":")),
                    ),
                )
                if cur.rowcount == 1:
                    out.stored += 1
                    out.acked[r.kiosk].append(r.id)
                    touched.add((r.kiosk, r.stream))
                    if r.kind == "chunk":
                        atts.add((r.kiosk, str(r.body["att"])))
                    continue
                same = c.execute(
                    "SELECT 1 FROM records WHERE kiosk = ? AND id = ?", (r.kiosk, r.id)
                ).fetchone()
                if same:
                    out.duplicates += 1
                    out.acked[r.kiosk].append(r.id)
                else:
                    reason = f"seq-conflict: seq {r.seq} of stream {r.stream} is another record"
                    self._dead(
                        DeadLetter(
                            topic=f"aps/v1/{r.kiosk}/up/records",
                            topic_kiosk=r.kiosk,
                            reason=reason,
                            payload_len=0,
                            payload_head=b"",
                            record_id=r.id,
                            reject=True,
                        ),
                        now,
                    )
                    out.dead_letters += 1
                    out.rejected[r.kiosk].append(Rejection(id=r.id, reason=reason))
            for kiosk, stream in touched:
                self._advance(kiosk, stream, now)
            for kiosk, att in atts:
                status = assemble_if_complete(c, kiosk, att, now)
                if status is not None:
                    out.attachments[status] += 1
            if out.duplicates:
                c.execute(
                    "INSERT INTO counters (name, value) VALUES ('duplicates_received', ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    (out.duplicates,),
                )
            c.execute("COMMIT")
        except BaseException:
            # On SQLITE_FULL SQLite has already rolled back by itself; a second
            # ROLLBACK would raise and hide the real error.
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        return out

    def _fleet(self, u: FleetUpdate, now: float) -> None:
        c = self.conn
        c.execute("INSERT OR IGNORE INTO kiosks (kiosk) VALUES (?)", (u.kiosk,))
        if u.type == "status":
            c.execute(
                "UPDATE kiosks SET state = ?, state_at = ? WHERE kiosk = ?",
                (u.body["state"], now, u.kiosk),
            )
            return
        queued = u.body.get("queued")
        c.execute(
            "UPDATE kiosks SET last_heartbeat_at = ?, queued = ?, oldest_queued = ?,"
            " devices = ?, heartbeat = ?, state = 'online', state_at = coalesce(state_at, ?)"
            " WHERE kiosk = ?",
            (
                now,
                queued if isinstance(queued, int) and not isinstance(queued, bool) else None,
                str(u.body.get("oldest_queued") or "") or None,
                json.dumps(u.body.get("devices", {}), ensure_ascii=False),
                json.dumps(u.body, ensure_ascii=False),
                now,
                u.kiosk,
            ),
        )

    def fleet(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT kiosk, state, state_at, last_heartbeat_at, queued, oldest_queued, devices"
            " FROM kiosks ORDER BY kiosk"
        )
        cols = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row, strict=True))
            d["devices"] = json.loads(d["devices"]) if d["devices"] else {}
            out.append(d)
        return out

    def _dead(self, d: DeadLetter, now: float) -> None:
        self.conn.execute(
            "INSERT INTO dead_letters"
            " (at, topic, topic_kiosk, reason, record_id, payload_len, payload_head)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (now, d.topic, d.topic_kiosk, d.reason, d.record_id, d.payload_len, d.payload_head),
        )

    def _advance(self, kiosk: str, stream: str, now: float) -> None:
        c = self.conn
        c.execute(
            "INSERT OR IGNORE INTO streams (kiosk, stream, first_seen, updated)"
            " VALUES (?, ?, ?, ?)",
            (kiosk, stream, now, now),
        )
        contiguous = c.execute(
            "SELECT contiguous_seq FROM streams WHERE kiosk = ? AND stream = ?", (kiosk, stream)
        ).fetchone()[0]
        while True:
            rows = c.execute(
                f"SELECT seq FROM ({ACCOUNTED_SEQS}) WHERE seq > ? ORDER BY seq LIMIT 500",
                (kiosk, stream, kiosk, stream, contiguous),
            ).fetchall()
            moved = False
            for (seq,) in rows:
                if seq != contiguous + 1:
                    break
                contiguous = seq
                moved = True
            if not moved or len(rows) < 500:
                break
        max_seq = c.execute(
            f"SELECT max(seq) FROM ({ACCOUNTED_SEQS})", (kiosk, stream, kiosk, stream)
        ).fetchone()[0]
        c.execute(
            "UPDATE streams SET contiguous_seq = ?, max_seq = ?, updated = ?,"
            " gap_since = CASE WHEN ? < ? THEN coalesce(gap_since, ?) END"
            " WHERE kiosk = ? AND stream = ?",
            (contiguous, max_seq or 0, now, contiguous, max_seq or 0, now, kiosk, stream),
        )

    # -- reading ------------------------------------------------------------------
    def streams(self, kiosk: str | None = None) -> list[StreamState]:
        sql = "SELECT kiosk, stream, contiguous_seq, max_seq, gap_since FROM streams"
        args: tuple[Any, ...] = ()
        if kiosk is not None:
            sql += " WHERE kiosk = ?"
            args = (kiosk,)
        out = []
        for k, s, contiguous, max_seq, gap_since in self.conn.execute(sql, args).fetchall():
            present = {
                row[0]
                for row in self.conn.execute(
                    f"SELECT seq FROM ({ACCOUNTED_SEQS}) WHERE seq > ?", (k, s, k, s, contiguous)
                )
            }
            missing = tuple(q for q in range(contiguous + 1, max_seq + 1) if q not in present)
            out.append(
                StreamState(
                    kiosk=k,
                    stream=s,
                    contiguous_seq=contiguous,
                    max_seq=max_seq,
                    gap_since=gap_since,
                    missing=missing,
                )
            )
        return out

    def stale_gaps(self, older_than_s: float, now: float | None = None) -> list[StreamState]:
        """Streams with a gap open for longer than ``older_than_s``: an alert."""
        cutoff = (time.time() if now is None else now) - older_than_s
        return [g for g in self.streams() if g.gap_since is not None and g.gap_since < cutoff]

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
        row = self.conn.execute(
            "SELECT data FROM attachments WHERE kiosk = ? AND att = ? AND status = 'complete'",
            (kiosk, att),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def dead_letters(self) -> list[dict[str, Any]]:
        cur = self.conn.execute(
            "SELECT n, at, topic, topic_kiosk, reason, record_id, payload_len"
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


@dataclass(frozen=True, kw_only=True)
class StoredRecord:
    """One record as central holds it (the read side of :class:`Store`)."""

    kiosk: str
    id: str
    stream: str
    seq: int
    kind: str
