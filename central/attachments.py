"""Assembling attachments from chunk records at central.

Each chunk was verified against its own SHA-256 when it was classified. When
the last chunk of an attachment commits, the file is put together in chunk
order, checked against the whole file's SHA-256, and stored in
``attachments`` as ``complete`` (or ``corrupt``, with the reason, for an admin
to see). Runs inside the ingest transaction.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3

SCHEMA = """
CREATE INDEX IF NOT EXISTS records_chunk_att
    ON records (kiosk, json_extract(body, '$.att')) WHERE kind = 'chunk';
CREATE TABLE IF NOT EXISTS attachments (
    kiosk TEXT NOT NULL,
    att TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('complete', 'corrupt')),
    reason TEXT,
    data BLOB,
    completed_at REAL NOT NULL,
    PRIMARY KEY (kiosk, att)
);
"""


def assemble_if_complete(conn: sqlite3.Connection, kiosk: str, att: str, now: float) -> str | None:
    """Store the attachment if all its chunks are in; returns its status or None."""
    if conn.execute(
        "SELECT 1 FROM attachments WHERE kiosk = ? AND att = ?", (kiosk, att)
    ).fetchone():
        return None
    rows = conn.execute(
        "SELECT json_extract(body, '$.index'), json_extract(body, '$.total'),"
        " json_extract(body, '$.data'), json_extract(body, '$.file_sha256'),"
        " json_extract(body, '$.file_size')"
        " FROM records WHERE kind = 'chunk' AND kiosk = ? AND json_extract(body, '$.att') = ?"
        " ORDER BY json_extract(body, '$.index')",
        (kiosk, att),
    ).fetchall()
    if not rows:
        return None
    total = rows[0][1]
    if len({r[0] for r in rows}) < total:
        return None
    expected_sha, expected_size = rows[0][3], rows[0][4]
    data = b"".join(base64.b64decode(r[2]) for r in rows)
    actual = hashlib.sha256(data).hexdigest()
    status, reason = "complete", None
    if actual != expected_sha or len(data) != expected_size:
        status = "corrupt"
        reason = (
            f"file sha256 {actual} / {len(data)} bytes, expected {expected_sha} / {expected_size}"
        )
    conn.execute(
        "INSERT INTO attachments (kiosk, att, size, sha256, status, reason, data, completed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            kiosk,
            att,
            len(data),
            actual,
            status,
            reason,
            data if status == "complete" else None,
            now,
        ),
    )
    return status
