"""The connection both stores hand to shared SQL code (attachments, quotas, heartbeats).

sqlite3's ``execute(sql, args)`` dialect with ``?`` placeholders: a
``sqlite3.Connection`` speaks it, and so does the PostgreSQL store's
:class:`central.store_pg.PgConn`. SQL written against :class:`SqlConn` keeps to
what both engines accept: ``INSERT ... ON CONFLICT`` (never ``INSERT OR ...``),
upsert columns qualified with their table, no SQLite-only functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol


class SqlConn(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


@contextmanager
def write_transaction(conn: SqlConn) -> Iterator[None]:
    """One write transaction on either store's connection.

    SQLite: ``BEGIN IMMEDIATE`` (the write lock at once, so a reader never has to be
    upgraded mid-way) and ``COMMIT``, or ``ROLLBACK`` if SQLite has not already rolled
    back by itself (a full disk). PostgreSQL: the store's ``PgConn.transaction()``.
    """
    begin = getattr(conn, "transaction", None)
    if begin is not None:
        with begin():
            yield
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if getattr(conn, "in_transaction", False):
            conn.execute("ROLLBACK")
        raise
