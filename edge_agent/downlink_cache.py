"""Reading the kiosk's cache of what central sent down (the inbox writes it).

The inbox (``edge_agent/inbox.py``) keeps the newest item per ``(kind, key)``
in ``downlink_items`` and the age of the cache in ``downlink_state``
(``last_reply_at``: unix seconds of the last state reply), in the kiosk's
database (the contract in the issue's brief). The services only read them,
through these functions, under the outbox's lock. A kiosk whose inbox has not
created the tables yet reads as an empty cache.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def _has_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        " AND name IN ('downlink_items', 'downlink_state')"
    ).fetchone()
    return int(row[0]) == 2


def item(conn: sqlite3.Connection, kind: str, key: str) -> dict[str, Any] | None:
    """The cached body of ``(kind, key)``, or None."""
    if not _has_tables(conn):
        return None
    row = conn.execute(
        "SELECT body FROM downlink_items WHERE kind = ? AND key = ?", (kind, key)
    ).fetchone()
    if row is None:
        return None
    body = json.loads(row[0])
    return body if isinstance(body, dict) else None


def items(conn: sqlite3.Connection, kind: str, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Every cached body of ``kind`` (newest cursor first), at most ``limit``."""
    if not _has_tables(conn):
        return []
    rows = conn.execute(
        "SELECT body FROM downlink_items WHERE kind = ? ORDER BY cursor DESC LIMIT ?",
        (kind, limit),
    ).fetchall()
    out = []
    for (text,) in rows:
        body = json.loads(text)
        if isinstance(body, dict):
            out.append(body)
    return out


def last_reply_at(conn: sqlite3.Connection) -> float | None:
    """Unix seconds of the last state reply from central, or None (never)."""
    if not _has_tables(conn):
        return None
    row = conn.execute("SELECT value FROM downlink_state WHERE name = 'last_reply_at'").fetchone()
    try:
        return None if row is None else float(row[0])
    except ValueError:
        return None


#: The tables as the contract defines them (tests create them; the inbox owns them).
CONTRACT_DDL = """
CREATE TABLE IF NOT EXISTS downlink_items (kind TEXT, key TEXT, cursor INTEGER NOT NULL,
    body TEXT NOT NULL, applied_at REAL NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS downlink_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
