"""sqlite3's connection, spoken over PostgreSQL: how central's back office runs on both.

Theory of operation
-------------------
The back office, the fleet registry, the jobs, the alerts and the console were
written against ``sqlite3.Connection``: ``execute(sql, args)`` with ``?``
placeholders, rows read by index or by name (``sqlite3.Row``), ``BEGIN
IMMEDIATE`` ... ``COMMIT`` for a write, ``sqlite3.OperationalError`` for a table
that is not there. :class:`SqliteDialectConn` speaks exactly that over one
psycopg 3 connection, so one copy of every query serves both engines. What it
does, and why each is needed:

- **Placeholders**: ``?`` and ``?N`` become ``%s`` (:meth:`central.store_pg.PgConn.translate`);
  ``:name`` with a dict of values becomes ``%(name)s``.
- **Transactions**: the connection is in autocommit; ``BEGIN IMMEDIATE`` becomes
  ``BEGIN`` plus a transaction-scoped advisory lock (:data:`WRITE_LOCK`), so
  back-office writers take turns exactly as SQLite's one writer does (the code
  relies on it: a read-then-write inside a transaction sees no concurrent
  write). A write statement outside a transaction is one of its own, with the
  lock, as SQLite's autocommit write is. A plain ``BEGIN`` is a read
  transaction: ``REPEATABLE READ``, one snapshot for all its statements, as
  SQLite's; it takes no lock (the code writes in ``BEGIN IMMEDIATE`` only). The collectors' ingest
  never takes this lock: the back office cannot slow the records' path.
- **Rows**: every row is a :class:`Row`, a tuple that also answers ``row["name"]``
  and ``keys()`` (what the code uses of ``sqlite3.Row``).
- **Values**: ``bool`` parameters are sent as 0/1 (the tables keep flags in
  integer columns, as SQLite does); ``numeric`` results (``sum`` of integers,
  ``avg``) come back as ``int`` when whole and ``float`` otherwise, never as
  ``Decimal``.
- **Errors**: psycopg's exceptions are raised again as sqlite3's of the same
  DB-API class (``UndefinedTable`` as ``sqlite3.OperationalError``, a unique
  violation as ``sqlite3.IntegrityError``), chained to the original.
- **DDL**: :func:`translate_ddl` turns a module's SQLite ``CREATE`` script into
  PostgreSQL's (types, identity keys, an explicit ``rowid``, byte-order text).
  It runs only inside a versioned migration (``central.backoffice_db``), never
  at each connect.

SQL that must differ between the engines is not written through this class: it
keeps to what both accept (``ON CONFLICT`` rather than ``INSERT OR IGNORE``,
``RETURNING`` rather than ``lastrowid``, no SQLite-only functions).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from psycopg.rows import RowMaker

from central.store_pg import PgConn, records_top

#: The back office's write lock (``pg_advisory_xact_lock`` key; "APSBOFF" in ASCII).
WRITE_LOCK = 0x415053424F4646

_PRAGMA = re.compile(r"^\s*PRAGMA\s+(\w+)\s*(?:\(([^)]*)\)|=\s*\S+)?\s*;?\s*$", re.I)
_NO_OP_PRAGMAS = frozenset({"busy_timeout", "synchronous", "foreign_keys", "journal_mode"})
_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.I)
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_BEGIN = re.compile(
    r"^\s*BEGIN(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?(\s+TRANSACTION)?\s*;?\s*$", re.I
)


class Row(tuple[Any, ...]):
    """A result row: a tuple, and ``row["column"]`` / ``keys()`` as ``sqlite3.Row``."""

    _names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._names.index(key))
            except ValueError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    """One Row class per column list (making a class costs more than the query's parsing)."""
    return type("Row", (Row,), {"_names": names, "__slots__": ()})


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    cls = _row_class(tuple(c.name for c in cursor.description or ()))

    def make(values: Sequence[Any]) -> Row:
        row: Row = cls(values)
        return row

    return make


class _NumericLoader(Loader):
    """``numeric`` as ``int`` when whole, else ``float`` (what sqlite3 returns)."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        if "." in text or "e" in text.lower() or text in ("NaN", "Infinity", "-Infinity"):
            return float(text)
        return int(text)


def _sqlite_error(exc: psycopg.Error) -> sqlite3.Error:
    """The sqlite3 exception of ``exc``'s DB-API class, with PostgreSQL's message."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, psycopg.IntegrityError):
        return sqlite3.IntegrityError(text)
    if isinstance(exc, psycopg.DataError):
        return sqlite3.DataError(text)
    if isinstance(exc, psycopg.ProgrammingError) and not isinstance(
        exc, (pg_errors.UndefinedTable, pg_errors.UndefinedColumn)
    ):
        return sqlite3.ProgrammingError(text)
    if isinstance(exc, (psycopg.OperationalError, psycopg.ProgrammingError)):
        return sqlite3.OperationalError(text)
    return sqlite3.DatabaseError(text)


def _plain(args: Sequence[Any]) -> list[Any]:
    return [int(a) if isinstance(a, bool) else a for a in args]


def _named(sql: str, args: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """sqlite3's ``:name`` parameters (a dict of values) as psycopg's ``%(name)s``."""
    query = _NAMED.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%"))
    return query, {k: int(v) if isinstance(v, bool) else v for k, v in args.items()}


class SqliteDialectConn(PgConn):
    """A psycopg connection that answers as a ``sqlite3.Connection`` (see the module)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn)
        conn.autocommit = True
        conn.row_factory = _row_factory
        conn.adapters.register_loader("numeric", _NumericLoader)
        #: Accepted and ignored: every row is already a :class:`Row`.
        self.row_factory: Any = None

    @classmethod
    def connect(cls, dsn: str, *, connect_timeout_s: int = 10) -> SqliteDialectConn:
        try:
            raw = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_s)
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from exc
        return cls(raw)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Transaction]:
        """A write transaction (``portable_sql.write_transaction``): with the write lock."""
        with self.raw.transaction() as tx:
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield tx

    def execute(
        self, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()
    ) -> psycopg.Cursor[Any]:
        begin = _BEGIN.match(sql)
        pragma = _PRAGMA.match(sql)
        try:
            if pragma is not None:
                return self._pragma(pragma.group(1).lower(), pragma.group(2))
            if begin is not None:
                if (begin.group(2) or "").upper() in ("IMMEDIATE", "EXCLUSIVE"):
                    cur = self.raw.execute(b"BEGIN")
                    self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    return cur
                # A read transaction: one snapshot for all its statements, as in SQLite.
                return self.raw.execute(b"BEGIN ISOLATION LEVEL REPEATABLE READ")
            query: str
            params: Sequence[Any] | Mapping[str, Any]
            if isinstance(args, Mapping):
                query, params = _named(sql, args)
            else:
                query, plain = self.translate(sql, args)
                params = _plain(plain)
            if _WRITE.match(sql) and not self.in_transaction:
                # SQLite: a write outside a transaction takes the write lock for itself.
                with self.raw.transaction():
                    self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                    return self.raw.execute(query.encode(), params)
            return self.raw.execute(query.encode(), params)
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from exc

    def _pragma(self, name: str, arg: str | None) -> psycopg.Cursor[Any]:
        """``PRAGMA table_info(t)`` from the catalogue; SQLite's tuning pragmas do nothing."""
        if name == "table_info" and arg:
            return self.raw.execute(
                # sqlite3's column names, so row["name"] reads as on SQLite.
                "SELECT ordinal_position - 1 AS cid, column_name AS name, data_type AS type,"
                " (is_nullable = 'NO')::int AS \"notnull\", column_default AS dflt_value, 0 AS pk"
                " FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s"
                " ORDER BY ordinal_position",
                (arg.strip().strip("'\""),),
            )
        if name in _NO_OP_PRAGMAS:
            return self.raw.execute(b"SELECT 1 WHERE false")
        raise sqlite3.OperationalError(f"PRAGMA {name}: no PostgreSQL equivalent here")

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            super().executemany(sql, [_plain(r) for r in rows])
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from exc

    def executescript(self, script: str) -> None:
        """A module's ``ensure_schema`` script: checked, not run (migrations own the schema).

        Every ``CREATE TABLE IF NOT EXISTS`` it names must exist already (made by
        ``central.backoffice_db.pg_migrations``); a table missing there raises
        ``sqlite3.OperationalError`` naming it. A script of anything else is run as is
        (no parameters).
        """
        tables = _CREATE_TABLE.findall(script)
        if not tables:
            try:
                self.raw.execute(script.encode())
            except psycopg.Error as exc:
                raise _sqlite_error(exc) from exc
            return
        for _, table in tables:
            row = self.raw.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            if row is None or row[0] is None:
                raise sqlite3.OperationalError(
                    f"no such table: {table} (on PostgreSQL the back office's tables come "
                    "from central.backoffice_db.pg_migrations: add it there)"
                )

    def records_top(self) -> int:
        """The records' rowid below which no row can still appear (store_pg.records_top)."""
        try:
            return records_top(self.raw)
        except psycopg.Error as exc:
            raise _sqlite_error(exc) from exc

    def commit(self) -> None:
        if self.in_transaction:
            self.raw.execute(b"COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.raw.execute(b"ROLLBACK")

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> SqliteDialectConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- DDL ------------------------------------------------------------------------------------

_TYPES = (
    # SQLite's alias of the rowid: PostgreSQL's identity column, numbered by the server.
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (
        re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b", re.I),
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    # SQLite compares text byte-wise (BINARY); so does PostgreSQL's "C" collation.
    (re.compile(r"\bTEXT\b", re.I), 'TEXT COLLATE "C"'),
)
_CREATE_TABLE = re.compile(r"(CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\()", re.I)
_INTEGER_KEY = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\b", re.I)


def _statements(script: str) -> Iterator[str]:
    for part in script.split(";"):
        if part.strip():
            yield part.strip()


def translate_ddl(script: str, *, rowid_tables: Collection[str] = ()) -> str:
    """A SQLite ``CREATE TABLE`` / ``CREATE INDEX`` script in PostgreSQL's words.

    The tables in ``rowid_tables`` (those whose queries name SQLite's implicit
    ``rowid``, e.g. ``ORDER BY at, rowid``) get an explicit ``rowid`` identity
    column last, so insertion order means on PostgreSQL what it means on SQLite.
    Anything this function does not know (a trigger, a SQLite function in a
    ``DEFAULT``) raises ``ValueError``: such a migration is written by hand.
    """
    out: list[str] = []
    for stmt in _statements(script):
        head = stmt.split(None, 3)
        kind = " ".join(head[:3]).upper()
        if not (kind.startswith("CREATE TABLE") or "INDEX" in kind):
            raise ValueError(f"translate_ddl: cannot translate {stmt[:60]!r}; write it by hand")
        for bad in ("strftime(", "julianday(", "datetime(", "unixepoch(", "typeof("):
            if bad in stmt.lower():
                raise ValueError(f"translate_ddl: {bad} has no PostgreSQL twin in {stmt[:60]!r}")
        has_key = bool(_INTEGER_KEY.search(stmt))
        stmt = re.sub(r"\s*WITHOUT\s+ROWID\s*$", "", stmt, flags=re.I)
        for pattern, repl in _TYPES:
            stmt = pattern.sub(repl, stmt)
        created = _CREATE_TABLE.search(stmt)
        if created is not None and created.group(2) in rowid_tables:
            if has_key:
                raise ValueError(f"translate_ddl: {created.group(2)} has its own rowid alias")
            body, close = stmt.rsplit(")", 1)
            stmt = f"{body.rstrip()},\n    rowid BIGINT GENERATED ALWAYS AS IDENTITY\n){close}"
        out.append(stmt + ";")
    return "\n".join(out) + "\n"
