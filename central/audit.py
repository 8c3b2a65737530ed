"""The audit trail: who changed what at central, and when.

Every change made through the back office (HTTP API or CLI) calls
:func:`record` in the same transaction as the change, so an audited change
and its audit row commit or roll back together.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, n);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def record(
    conn: sqlite3.Connection,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    *,
    now: float | None = None,
) -> int:
    """One audit row inside the caller's transaction; returns its number.

    ``actor``: the API token's name or ``cli:<unix user>``; ``action``: a dotted
    verb such as ``dossier.status``; ``target``: what it changed (a dossier code,
    a lookup code, ``roster:<staff>``).
    """
    cur = conn.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?) RETURNING n",
        (
            time.time() if now is None else now,
            actor,
            action,
            target,
            json.dumps(detail or {}, ensure_ascii=False, separators=(",", ":")),
        ),
    )
    return int(cur.fetchone()[0])


def entries(
    conn: sqlite3.Connection, *, target: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    sql = "SELECT n, at, actor, action, target, detail FROM audit"
    args: list[Any] = []
    if target is not None:
        sql += " WHERE target = ?"
        args.append(target)
    rows = conn.execute(sql + " ORDER BY n DESC LIMIT ?", (*args, limit)).fetchall()
    return [
        {"n": n, "at": at, "actor": a, "action": act, "target": t, "detail": json.loads(d)}
        for n, at, a, act, t, d in rows
    ]
