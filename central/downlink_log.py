"""The downlink log: everything central has to tell kiosks, in one ordered table.

Theory of operation
-------------------
Retained MQTT messages are best effort (node-local in RabbitMQ, lost across a
NATS cluster), so central never relies on them for state. Every change a
kiosk must learn (a catalogue version, a dossier's status, an answer to a
question, a support reply, FAQ and news) is one row here, appended in the
same transaction as the change that caused it, with a **cursor** (an integer
that only grows) and an **audience**:

- ``*``: every kiosk (catalogue, FAQ, news),
- ``office:<agency>``: every kiosk of one one-stop office (statuses, answers),
- ``kiosk:<id>``: one kiosk (a support reply to the kiosk that asked).

A kiosk keeps the cursor of the last item it applied and asks for what came
after it every time it connects (and whenever central nudges it).
:func:`items_since` answers from this table alone. An item with the same
``(audience, kind, key)`` as a newer one is *superseded* and never sent
again: a kiosk offline for days gets the newest catalogue once, not every
version in between, and the newest status of each dossier.

In SQLite, writers are serialised, so cursors are assigned in commit order
and a reader that has seen cursor N has seen every item below N. (A store
with concurrent writers, PostgreSQL, must keep that property: see issue 11.)

The kiosk-to-office map (``kiosk_offices``) says which office audience a
kiosk belongs to. Until enrolment (issue 9) records it, a kiosk's first
claim is trusted and later different claims are refused (trust on first use);
``assign_office`` (the CLI) overrides.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS downlink (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    audience TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    at REAL NOT NULL,
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS downlink_audience ON downlink (audience, cursor)
    WHERE superseded = 0;
CREATE UNIQUE INDEX IF NOT EXISTS downlink_current ON downlink (audience, kind, key)
    WHERE superseded = 0;
CREATE TABLE IF NOT EXISTS kiosk_offices (
    kiosk TEXT PRIMARY KEY,
    office TEXT NOT NULL,
    since REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS kiosk_offices_office ON kiosk_offices (office);
"""

FLEET = "*"
MAX_ITEMS = 100  # items per state reply, at most
MAX_REPLY_BYTES = 192 * 1024  # encoded items per state reply, at most (MQTT record limit 256 KiB)


class OfficeConflict(ValueError):
    """A kiosk claimed an office other than the one central has for it."""


def office_audience(office: str) -> str:
    return f"office:{office}"


def kiosk_audience(kiosk: str) -> str:
    return f"kiosk:{kiosk}"


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


@dataclass(frozen=True, kw_only=True)
class Item:
    cursor: int
    audience: str
    kind: str
    key: str
    body: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        """The item as a state reply carries it (docs/protocol.md, "Downlink")."""
        return {"cursor": self.cursor, "kind": self.kind, "key": self.key, "body": self.body}


def append(
    conn: sqlite3.Connection,
    audience: str,
    kind: str,
    key: str,
    body: dict[str, Any],
    *,
    now: float | None = None,
) -> int:
    """Add one item inside the caller's write transaction; returns its cursor.

    The previous current item with the same ``(audience, kind, key)`` is
    superseded. The caller validates ``body`` against its downlink kind first.

    The transaction must be a write transaction (``backoffice_db.transaction``):
    a kiosk stores the newest cursor it was told of, so cursors must become
    visible in the order they are numbered. SQLite's one writer gives that; on
    PostgreSQL the cursor is numbered at INSERT and seen at COMMIT, and only the
    back office's write lock (``BEGIN IMMEDIATE``) keeps two appenders in turn.
    Called outside any transaction, it makes its own write transaction.
    """
    if not conn.in_transaction:
        from central.backoffice_db import transaction  # it imports this module

        with transaction(conn):
            return append(conn, audience, kind, key, body, now=now)
    conn.execute(
        "UPDATE downlink SET superseded = 1"
        " WHERE audience = ? AND kind = ? AND key = ? AND superseded = 0",
        (audience, kind, key),
    )
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    cur = conn.execute(
        "INSERT INTO downlink (audience, kind, key, body, at) VALUES (?, ?, ?, ?, ?)"
        " RETURNING cursor",
        (audience, kind, key, text, time.time() if now is None else now),
    )
    return int(cur.fetchone()[0])


def latest_cursor(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(cursor) FROM downlink").fetchone()
    return int(row[0] or 0)


def audiences_for(conn: sqlite3.Connection, kiosk: str) -> list[str]:
    """The audiences one kiosk reads: the fleet, its office (if known), itself."""
    office = office_of(conn, kiosk)
    out = [FLEET, kiosk_audience(kiosk)]
    if office is not None:
        out.append(office_audience(office))
    return out


def items_since(
    conn: sqlite3.Connection,
    audiences: Sequence[str],
    after: int,
    *,
    limit: int = MAX_ITEMS,
    max_bytes: int = MAX_REPLY_BYTES,
) -> tuple[list[Item], int, bool]:
    """Current items for ``audiences`` with a cursor above ``after``, oldest first.

    Returns ``(items, next_cursor, more)``. ``next_cursor`` is what the kiosk
    stores once it has applied ``items``: the last item's cursor when there is
    more, else the log's newest cursor (nothing for it lies below that). At
    least one item is returned when any is due, even one bigger than
    ``max_bytes`` (the caller's envelope limit decides).
    """
    marks = ",".join("?" for _ in audiences)
    # One read transaction: the items and the newest cursor from one snapshot.
    in_tx = conn.in_transaction
    if not in_tx:
        conn.execute("BEGIN")
    try:
        rows = conn.execute(
            f"SELECT cursor, audience, kind, key, body FROM downlink"
            f" WHERE superseded = 0 AND cursor > ? AND audience IN ({marks})"
            f" ORDER BY cursor LIMIT ?",
            (after, *audiences, limit + 1),
        ).fetchall()
        newest = latest_cursor(conn)
    finally:
        if not in_tx:
            conn.execute("COMMIT")
    items: list[Item] = []
    size = 0
    for cursor, audience, kind, key, body in rows[:limit]:
        size += len(body) + len(key) + 64
        if items and size > max_bytes:
            return items, items[-1].cursor, True
        items.append(
            Item(cursor=cursor, audience=audience, kind=kind, key=key, body=json.loads(body))
        )
    if len(rows) > limit:
        return items, items[-1].cursor, True
    return items, max(newest, after), False


def current(
    conn: sqlite3.Connection, audience: str, kind: str, key: str | None = None
) -> list[Item]:
    """The current (not superseded) items of one kind for one audience."""
    sql = (
        "SELECT cursor, audience, kind, key, body FROM downlink"
        " WHERE superseded = 0 AND audience = ? AND kind = ?"
    )
    args: list[Any] = [audience, kind]
    if key is not None:
        sql += " AND key = ?"
        args.append(key)
    rows = conn.execute(sql + " ORDER BY cursor", args).fetchall()
    return [Item(cursor=c, audience=a, kind=k, key=y, body=json.loads(b)) for c, a, k, y, b in rows]


def changed_audiences(conn: sqlite3.Connection, after: int) -> tuple[set[str], int]:
    """Audiences with items above ``after`` (for nudges), and the newest cursor."""
    rows = conn.execute(
        "SELECT DISTINCT audience FROM downlink WHERE cursor > ?", (after,)
    ).fetchall()
    return {r[0] for r in rows}, latest_cursor(conn)


def office_of(conn: sqlite3.Connection, kiosk: str) -> str | None:
    row = conn.execute("SELECT office FROM kiosk_offices WHERE kiosk = ?", (kiosk,)).fetchone()
    return None if row is None else str(row[0])


def kiosks_of(conn: sqlite3.Connection, audiences: Iterable[str]) -> set[str]:
    """Kiosk ids an audience set reaches (the fleet: every kiosk central knows)."""
    out: set[str] = set()
    for audience in audiences:
        if audience == FLEET:
            out.update(r[0] for r in conn.execute("SELECT kiosk FROM kiosk_offices"))
            out.update(r[0] for r in conn.execute("SELECT kiosk FROM kiosks"))
        elif audience.startswith("office:"):
            office = audience.removeprefix("office:")
            out.update(
                r[0]
                for r in conn.execute("SELECT kiosk FROM kiosk_offices WHERE office = ?", (office,))
            )
        elif audience.startswith("kiosk:"):
            out.add(audience.removeprefix("kiosk:"))
    return out


def assign_office(
    conn: sqlite3.Connection, kiosk: str, office: str, *, source: str = "admin"
) -> None:
    """Record (or change) a kiosk's office, as an admin or enrolment says."""
    conn.execute(
        "INSERT INTO kiosk_offices (kiosk, office, since, source) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (kiosk) DO UPDATE SET office = excluded.office, since = excluded.since,"
        " source = excluded.source",
        (kiosk, office, time.time(), source),
    )


def claim_office(conn: sqlite3.Connection, kiosk: str, office: str) -> str:
    """A kiosk says which office it serves: trusted the first time, then held to it."""
    known = office_of(conn, kiosk)
    if known is None:
        conn.execute(
            "INSERT INTO kiosk_offices (kiosk, office, since, source)"
            " VALUES (?, ?, ?, 'first-claim') ON CONFLICT DO NOTHING",
            (kiosk, office, time.time()),
        )
        return office_of(conn, kiosk) or office
    if known != office:
        raise OfficeConflict(
            f"kiosk {kiosk} claims office {office!r}, central has it at {known!r}; "
            f"if it moved, run: aps-central kiosk set-office {kiosk} {office}"
        )
    return known
