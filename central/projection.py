"""Catch-up projections of the records table into the back office's own tables.

Theory of operation
-------------------
The collector only appends to ``records`` (rows are never updated or
deleted), and SQLite serialises writers, so a row's ``rowid`` grows in commit
order: once a reader has seen rowid N committed, no row below N can appear
later. On PostgreSQL two collectors commit out of rowid order; :func:`records_top`
is then the store's fenced top (it waits for the batches in flight), which keeps
the same promise (tests/test_backoffice_pg.py holds one batch before its
COMMIT). A projection (dossiers, inquiries) therefore keeps one number, the
highest rowid it has consumed, in ``projection_positions``, and each catch-up
reads only the rows above it (``records`` is indexed by rowid: cheap even
with millions of rows). The catch-up runs in the caller's write transaction
together with the position update, so it is idempotent: two back-office
processes catching up at once do the work once, the second finds nothing new.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS projection_positions (
    name TEXT PRIMARY KEY,
    last_rowid INTEGER NOT NULL
);
"""

BATCH = 2000  # records read per query during a catch-up


@dataclass(frozen=True, kw_only=True)
class Row:
    rowid: int
    kiosk: str
    id: str
    kind: str
    created: str
    received_at: float
    body: str


def transaction(conn: sqlite3.Connection) -> AbstractContextManager[sqlite3.Connection]:
    """:func:`central.backoffice_db.transaction`, imported late.

    backoffice_db lists every back-office module's ``ensure_schema`` at import,
    so those modules cannot import it at theirs.
    """
    from central.backoffice_db import transaction as begin

    return begin(conn)


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def records_top(conn: sqlite3.Connection) -> int:
    """The highest records rowid a catch-up may read up to.

    SQLite: ``max(rowid)`` (one writer, rowids in commit order). PostgreSQL: the
    connection's fenced read (:func:`central.store_pg.records_top`), since two
    collectors commit out of rowid order there.
    """
    fenced = getattr(conn, "records_top", None)
    if fenced is not None:
        return int(fenced())
    return int(conn.execute("SELECT max(rowid) FROM records").fetchone()[0] or 0)


def position(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(
        "SELECT last_rowid FROM projection_positions WHERE name = ?", (name,)
    ).fetchone()
    return 0 if row is None else int(row[0])


def set_position(conn: sqlite3.Connection, name: str, rowid: int) -> None:
    conn.execute(
        "INSERT INTO projection_positions (name, last_rowid) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET last_rowid = excluded.last_rowid",
        (name, rowid),
    )


def new_records(conn: sqlite3.Connection, name: str, kinds: tuple[str, ...]) -> Iterator[Row]:
    """Records of ``kinds`` above the projection's position, oldest first.

    Advances the position to the last row read (call inside a transaction).
    The position moves past rows of other kinds too, so a catch-up is bounded
    by what arrived since the last one, whatever its kinds.
    """
    after = position(conn, name)
    marks = ",".join("?" for _ in kinds)
    while True:
        top = records_top(conn)
        if top <= after:
            break
        upto = min(top, after + BATCH * 4)
        rows: list[Any] = conn.execute(
            f"SELECT rowid, kiosk, id, kind, created, received_at, body FROM records"
            f" WHERE rowid > ? AND rowid <= ? AND kind IN ({marks}) ORDER BY rowid",
            (after, upto, *kinds),
        ).fetchall()
        for rowid, kiosk, rid, kind, created, received_at, body in rows:
            yield Row(
                rowid=rowid,
                kiosk=kiosk,
                id=rid,
                kind=kind,
                created=created,
                received_at=received_at,
                body=body,
            )
        after = upto
        set_position(conn, name, after)


def catch_up(conn: sqlite3.Connection, name: str, fold: Callable[[], int]) -> int:
    """Run ``fold`` (which consumes :func:`new_records` of ``name``) if anything is new.

    Cheap when nothing is: two indexed reads, no write lock. ``fold`` runs in its
    own write transaction unless the caller is already in one, which must then be a
    write transaction (``BEGIN IMMEDIATE``), never a read one (a plain ``BEGIN``):
    on PostgreSQL its one snapshot, taken before the fence, would not hold a record
    committed late below the top (SQLite refuses the write instead). Returns what
    ``fold`` returns (how many rows it folded), 0 when nothing was new.
    """
    top = records_top(conn)
    if top <= position(conn, name):
        return 0
    if conn.in_transaction:
        return fold()
    with transaction(conn):
        return fold()
