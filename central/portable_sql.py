"""The connection both stores hand to shared SQL code (attachments, quotas, heartbeats).

sqlite3's ``execute(sql, args)`` dialect with ``?`` placeholders: a
``sqlite3.Connection`` speaks it, and so does the PostgreSQL store's
:class:`central.store_pg.PgConn`. SQL written against :class:`SqlConn` keeps to
what both engines accept: ``INSERT ... ON CONFLICT`` (never ``INSERT OR ...``),
upsert columns qualified with their table, no SQLite-only functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class SqlConn(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...
