"""Attachments at central: limits, chunk checks, assembly at O(1) work per chunk.

Theory of operation
-------------------
A file travels as ``chunk`` records (docs/protocol.md, "Attachments"). Each
chunk's own SHA-256 was checked when it was classified. Inside the ingest
transaction, this module does three things:

1. :func:`screen_chunks`, before anything is stored, refuses a chunk that is
   over the limits (``total`` above ``max_chunks``, ``file_size`` above
   ``max_bytes``, more chunks than the file has bytes) or that disagrees with
   the first chunk central saw of the same attachment (``total``,
   ``file_size``, ``file_sha256``). A refused chunk becomes a rejected dead
   letter: the kiosk parks it and shows it to an operator.
2. :func:`add_chunk`, for each chunk record actually stored, keeps the
   decoded bytes in ``attachment_chunks`` keyed ``(kiosk, att, idx)`` and
   counts it in the attachment's ``attachment_progress`` row: two primary-key
   lookups, one insert and one update, whatever the number of chunks already
   held. A chunk index already held (a resend under a new record id) is
   ignored.
3. When the count reaches ``total``, SHA-256 runs once over the chunks read
   in index order, one at a time; the file is marked ``complete`` (its bytes
   stay in its chunks: :func:`read_file`, :func:`iter_file`) or ``corrupt``
   (its chunks are freed).

Why a chunk table rather than a running hash: a ``hashlib`` object cannot be
saved, so a running hash is lost at every restart and must be rebuilt from
stored chunks anyway, and chunks that arrive out of order (retransmissions,
several collectors) would need a buffer of their own. Storing raw chunk bytes
keyed by index makes every step idempotent and restart-safe, never re-parses
JSON or base64, and costs one read-only pass at completion. Keeping the file
in its chunks rather than copying it into one blob avoids writing it twice
and deleting the chunks afterwards: an earlier version of this module that
assembled into a blob spent 64 s (34 s CPU) completing a 950 MiB file here,
against a hash pass alone of a few seconds; at the 10 MiB default either is
tens of milliseconds.

:func:`expire_incomplete` marks attachments that received nothing for a
configurable time as ``expired`` and frees their chunk copies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from central.ingest import Accept, DeadLetter, FleetUpdate
from central.portable_sql import SqlConn, write_transaction
from sync.attachments import MAX_ATTACHMENT_BYTES, MAX_ATTACHMENT_CHUNKS
from sync.envelope import EnvelopeError, Record, records_topic
from sync.ids import ULID_RE

SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")
EVIDENCE_BYTES = 4096

SCHEMA = """
DROP INDEX IF EXISTS records_chunk_att;
CREATE TABLE IF NOT EXISTS attachments (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('complete', 'corrupt', 'expired')),
    reason TEXT,
    data BLOB,
    completed_at REAL NOT NULL,
    PRIMARY KEY (kiosk, att)
);
CREATE TABLE IF NOT EXISTS attachment_progress (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    total INTEGER NOT NULL,
    file_size INTEGER NOT NULL,
    file_sha256 TEXT NOT NULL,
    received INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (kiosk, att)
);
CREATE INDEX IF NOT EXISTS attachment_progress_last ON attachment_progress (last_at);
CREATE TABLE IF NOT EXISTS attachment_chunks (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kiosk, att, idx)
);
"""


@dataclass(frozen=True, kw_only=True)
class AttachmentLimits:
    """What central accepts of one attachment (defaults: the kiosk's own limits)."""

    max_bytes: int = MAX_ATTACHMENT_BYTES
    max_chunks: int = MAX_ATTACHMENT_CHUNKS
    expire_after_s: float = 30 * 86400.0


def _current(conn: sqlite3.Connection) -> bool:
    tables = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN"
            " ('attachments', 'attachment_progress', 'attachment_chunks')"
        ).fetchall()
    )
    return len(tables) == 3 and "'expired'" in tables["attachments"]


def migrate(conn: sqlite3.Connection) -> None:
    """Create the tables; upgrade a database written by the earlier layout."""
    if _current(conn):
        return  # nothing to write (a read-only connection gets this far too)
    conn.execute("BEGIN IMMEDIATE")
    try:
        old = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'attachments'"
        ).fetchone()
        had_progress = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'attachment_progress'"
        ).fetchone()
        if old is not None and "'expired'" not in old[0]:
            conn.execute("ALTER TABLE attachments RENAME TO attachments_v1")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if old is not None and "'expired'" not in old[0]:
            conn.execute("INSERT INTO attachments SELECT * FROM attachments_v1")
            conn.execute("DROP TABLE attachments_v1")
        if not had_progress:
            _adopt_stored_chunks(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _adopt_stored_chunks(conn: sqlite3.Connection) -> None:
    """Once, on upgrade: chunks stored before this layout join their attachments."""
    has_records = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
    ).fetchone()
    if not has_records:
        return
    rows = conn.execute(
        "SELECT r.kiosk, r.id, r.stream, r.seq, r.created, r.body FROM records r"
        " WHERE r.kind = 'chunk' AND NOT EXISTS (SELECT 1 FROM attachments a"
        " WHERE a.kiosk = r.kiosk AND a.att = json_extract(r.body, '$.att'))"
        " ORDER BY r.received_at"
    )
    now = time.time()
    for kiosk, rid, stream, seq, created, body in rows:
        try:
            record = Record(
                kind="chunk",
                kiosk=kiosk,
                stream=stream,
                seq=seq,
                id=rid,
                created=created,
                body=json.loads(body),
            )
        except (EnvelopeError, ValueError):
            continue  # not a chunk this layout can use; it stays a record
        if _refusal(conn, record, AttachmentLimits(max_bytes=2**62, max_chunks=2**62), {}):
            continue
        add_chunk(conn, record, now)


def screen_chunks(
    conn: SqlConn,
    items: Sequence[Accept | DeadLetter | FleetUpdate],
    limits: AttachmentLimits,
) -> list[Accept | DeadLetter | FleetUpdate]:
    """Replace every chunk over the limits or at odds with its attachment by a rejection.

    Runs inside the ingest transaction, before anything of the batch is stored.
    """
    out: list[Accept | DeadLetter | FleetUpdate] = []
    first_in_batch: dict[tuple[str, str], tuple[int, int, str]] = {}
    for item in items:
        if isinstance(item, Accept) and item.record.kind == "chunk":
            reason = _refusal(conn, item.record, limits, first_in_batch)
            if reason is not None:
                out.append(_rejection(item.record, reason))
                continue
        out.append(item)
    return out


def _refusal(
    conn: SqlConn,
    record: Record,
    limits: AttachmentLimits,
    first_in_batch: dict[tuple[str, str], tuple[int, int, str]],
) -> str | None:
    body = record.body
    att, total = body.get("att"), body.get("total")
    file_size, file_sha = body.get("file_size"), body.get("file_sha256")
    if not isinstance(att, str) or not ULID_RE.match(att):
        return "bad-body: body.att: expected a 26-character ULID"
    if not isinstance(total, int) or isinstance(total, bool):
        return "bad-body: body.total: expected int"
    if total > limits.max_chunks:
        return (
            f"attachment-limit: body.total: {total} chunks is over the limit of "
            f"{limits.max_chunks} chunks per attachment ([attachments] max_chunks at "
            "central); send fewer, larger chunks or raise the limit"
        )
    if not isinstance(file_size, int) or isinstance(file_size, bool) or file_size < 0:
        return "bad-body: body.file_size: expected a non-negative int"
    if file_size > limits.max_bytes:
        return (
            f"attachment-limit: body.file_size: {file_size} bytes is over the limit of "
            f"{limits.max_bytes} bytes per attachment ([attachments] max_attachment_bytes "
            "at central); photograph fewer or smaller pages or raise the limit"
        )
    if total > max(1, file_size):
        return (
            f"attachment-limit: body.total: {total} chunks for a file of {file_size} bytes; "
            "every chunk but an empty file's only one carries at least one byte"
        )
    if not isinstance(file_sha, str) or not SHA256_RE.match(file_sha):
        return "bad-body: body.file_sha256: expected 64 lower-case hex digits"
    key = (record.kiosk, att)
    first = first_in_batch.get(key)
    if first is None:
        row = conn.execute(
            "SELECT total, file_size, file_sha256 FROM attachment_progress"
            " WHERE kiosk = ? AND att = ?",
            key,
        ).fetchone()
        if row is None:
            first_in_batch[key] = (total, file_size, file_sha)
            return None
        first = (int(row[0]), int(row[1]), str(row[2]))
        first_in_batch[key] = first
    for name, mine, theirs in zip(
        ("total", "file_size", "file_sha256"), (total, file_size, file_sha), first, strict=True
    ):
        if mine != theirs:
            return (
                f"attachment-mismatch: body.{name}: {mine!r}, but the first chunk of "
                f"attachment {att} said {theirs!r}"
            )
    return None


def _rejection(record: Record, reason: str) -> DeadLetter:
    evidence = {k: v for k, v in record.body.items() if k != "data"}
    head = json.dumps(
        {"id": record.id, "seq": record.seq, "body": evidence}, ensure_ascii=False
    ).encode("utf-8")[:EVIDENCE_BYTES]
    return DeadLetter(
        topic=records_topic(record.kiosk),
        topic_kiosk=record.kiosk,
        reason=reason,
        payload_len=len(head),
        payload_head=head,
        record_id=record.id,
        reject=True,
        stream=record.stream,
        seq=record.seq,
    )


def add_chunk(conn: SqlConn, record: Record, now: float) -> str | None:
    """Hold one stored chunk; assemble when it is the last. Returns the status then."""
    body = record.body
    kiosk, att, idx = record.kiosk, str(body["att"]), int(body["index"])
    row = conn.execute(
        "SELECT total, received FROM attachment_progress WHERE kiosk = ? AND att = ?",
        (kiosk, att),
    ).fetchone()
    if row is None:
        if conn.execute(
            "SELECT 1 FROM attachments WHERE kiosk = ? AND att = ?", (kiosk, att)
        ).fetchone():
            return None  # already assembled, corrupt or expired
        total, received = int(body["total"]), 0
        conn.execute(
            "INSERT INTO attachment_progress"
            " (kiosk, att, total, file_size, file_sha256, first_at, last_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kiosk, att, total, body["file_size"], body["file_sha256"], now, now),
        )
    else:
        total, received = int(row[0]), int(row[1])
    data = base64.b64decode(body["data"])
    cur = conn.execute(
        "INSERT INTO attachment_chunks (kiosk, att, idx, data) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (kiosk, att, idx) DO NOTHING",
        (kiosk, att, idx, data),
    )
    if cur.rowcount != 1:
        return None  # this index is already held
    conn.execute(
        "UPDATE attachment_progress SET received = received + 1, bytes = bytes + ?,"
        " last_at = ? WHERE kiosk = ? AND att = ?",
        (len(data), now, kiosk, att),
    )
    if received + 1 < total:
        return None
    return _complete(conn, kiosk, att, now)


def _complete(conn: SqlConn, kiosk: str, att: str, now: float) -> str:
    """All chunks are in: hash them once, in index order, and record the verdict."""
    size, expected_size, expected_sha = conn.execute(
        "SELECT bytes, file_size, file_sha256 FROM attachment_progress WHERE kiosk = ? AND att = ?",
        (kiosk, att),
    ).fetchone()
    digest = hashlib.sha256()
    for (piece,) in conn.execute(
        "SELECT data FROM attachment_chunks WHERE kiosk = ? AND att = ? ORDER BY idx",
        (kiosk, att),
    ):
        digest.update(piece)
    actual = digest.hexdigest()
    status, reason = "complete", None
    if actual != expected_sha or size != expected_size:
        status = "corrupt"
        reason = f"file sha256 {actual} / {size} bytes, expected {expected_sha} / {expected_size}"
    # A complete file stays in its chunks (no second copy); a corrupt one is freed.
    conn.execute(
        "INSERT INTO attachments (kiosk, att, size, sha256, status, reason, data, completed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
        (kiosk, att, size, actual, status, reason, now),
    )
    conn.execute("DELETE FROM attachment_progress WHERE kiosk = ? AND att = ?", (kiosk, att))
    if status != "complete":
        _free(conn, kiosk, att)
    return status


def read_file(conn: SqlConn, kiosk: str, att: str) -> bytes | None:
    """A complete attachment's bytes (None unless complete)."""
    row = conn.execute(
        "SELECT data FROM attachments WHERE kiosk = ? AND att = ? AND status = 'complete'",
        (kiosk, att),
    ).fetchone()
    if row is None:
        return None
    if row[0] is not None:  # assembled by the earlier layout
        return bytes(row[0])
    return b"".join(iter_file(conn, kiosk, att))


def iter_file(conn: SqlConn, kiosk: str, att: str) -> Iterator[bytes]:
    """A complete attachment's bytes, one chunk at a time (for large files)."""
    for (piece,) in conn.execute(
        "SELECT data FROM attachment_chunks WHERE kiosk = ? AND att = ? ORDER BY idx",
        (kiosk, att),
    ):
        yield bytes(piece)


def _free(conn: SqlConn, kiosk: str, att: str) -> None:
    conn.execute("DELETE FROM attachment_chunks WHERE kiosk = ? AND att = ?", (kiosk, att))
    conn.execute("DELETE FROM attachment_progress WHERE kiosk = ? AND att = ?", (kiosk, att))


def expire_incomplete(
    conn: SqlConn, *, older_than_s: float, now: float | None = None, limit: int = 1000
) -> int:
    """Mark attachments with no chunk for ``older_than_s`` as expired; free their chunks.

    One transaction of at most ``limit`` attachments; returns how many expired.
    """
    now = time.time() if now is None else now
    with write_transaction(conn):
        rows = conn.execute(
            "SELECT kiosk, att, total, received, bytes FROM attachment_progress"
            " WHERE last_at < ? ORDER BY last_at LIMIT ?",
            (now - older_than_s, limit),
        ).fetchall()
        for kiosk, att, total, received, held in rows:
            _free(conn, kiosk, att)
            conn.execute(
                "INSERT INTO attachments"
                " (kiosk, att, size, sha256, status, reason, data, completed_at)"
                " VALUES (?, ?, ?, '', 'expired', ?, NULL, ?) ON CONFLICT (kiosk, att) DO UPDATE"
                " SET size = excluded.size, sha256 = excluded.sha256, status = excluded.status,"
                " reason = excluded.reason, data = NULL, completed_at = excluded.completed_at",
                (
                    kiosk,
                    att,
                    held,
                    f"expired: {received} of {total} chunks ({held} bytes) received, none for "
                    f"{older_than_s:.0f} s ([attachments] expire_incomplete_after_h)",
                    now,
                ),
            )
    return len(rows)
