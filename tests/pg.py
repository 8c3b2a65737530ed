"""A fresh PostgreSQL database per test, on the machine's PostgreSQL (127.0.0.1:5432),
and ``store_factory``: the same store test on SQLite and on PostgreSQL.

The fixture ``pg`` creates ``aps_test_<random>`` (never tables in ``test``, the
database it connects to for the CREATE), hands out its DSN, and drops it
afterwards (``WITH (FORCE)``: a store a test forgot to close cannot keep it).
When PostgreSQL is not reachable the test FAILS and says how to start it: a
store test that is skipped would prove nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from central import backoffice_db
from central.store import SQLiteStore
from central.store_pg import PostgresStore

#: Where the test databases are made; APS_TEST_PG_DSN points elsewhere (another host, a user
#: with a password) when the machine's PostgreSQL does not trust local TCP for postgres.
ADMIN_DSN = os.environ.get(
    "APS_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"
)


@dataclass(frozen=True)
class PgDatabase:
    name: str
    dsn: str

    def schema_dsn(self, key: str) -> str:
        """The DSN of a schema of this database named after ``key`` (created if new).

        The stateful test's factory opens one store per example directory: each
        gets its own schema, and reopening the same directory reopens the same one.
        """
        schema = "s_" + hashlib.sha256(key.encode()).hexdigest()[:20]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        return make_conninfo(self.dsn, options=f"-csearch_path={schema}")


def admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc}); these tests need it: "
            "start it with `pg_ctlcluster 15 main start` (trust auth for user postgres, "
            "database `test`)",
            pytrace=False,
        )


@pytest.fixture
def pg() -> Iterator[PgDatabase]:
    name = f"aps_test_{secrets.token_hex(6)}"
    with admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PgDatabase(name=name, dsn=make_conninfo(ADMIN_DSN, dbname=name))
    finally:
        with admin_connection() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


AnyStore = SQLiteStore | PostgresStore
StoreFactory = Callable[..., AnyStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """The store tests that run on both stores: ``make(key="c", **store_args)``.

    SQLite: ``<tmp_path>/<key>.db``; PostgreSQL: a schema named after ``key`` in this
    test's fresh database. The same key opens the same store again (a restart); every
    store made is closed at the end (closing twice is harmless).
    """
    opened: list[AnyStore] = []

    def make(key: str = "c", **kwargs: Any) -> AnyStore:
        store: AnyStore
        if request.param == "sqlite":
            store = SQLiteStore(tmp_path / f"{key}.db", **kwargs)
        else:
            store = PostgresStore(request.getfixturevalue("pg").schema_dsn(key), **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def abandon(store: AnyStore) -> None:
    """Its connection dropped, not a clean shutdown of anything in flight."""
    (store.conn if isinstance(store, SQLiteStore) else store.raw).close()


@dataclass
class CentralDb:
    """Central's whole database (records and back office) on one engine, for a test.

    ``kind`` is ``sqlite`` or ``postgresql``; :meth:`store` opens the records' store,
    :meth:`connect` a back-office connection (``central.backoffice_db.connect``), and
    :meth:`central_toml` the ``[central]`` lines that make ``aps-central`` use it.
    """

    kind: str
    target: backoffice_db.Target
    opened: list[Any]

    @property
    def dsn(self) -> str:
        assert isinstance(self.target, backoffice_db.PgTarget)
        return self.target.dsn

    def store(self, **kwargs: Any) -> AnyStore:
        store: AnyStore
        if isinstance(self.target, backoffice_db.PgTarget):
            store = PostgresStore(self.target.dsn, **kwargs)
        else:
            store = SQLiteStore(self.target, **kwargs)
        self.opened.append(store)
        return store

    def connect(self) -> sqlite3.Connection:
        conn = backoffice_db.connect(self.target)
        self.opened.append(conn)
        return conn

    def central_toml(self, database: Path) -> str:
        """``[central]`` body lines: the SQLite path always, the store and DSN on PostgreSQL."""
        lines = [f'database = "{database}"']
        if isinstance(self.target, backoffice_db.PgTarget):
            lines += ['store = "postgresql"', f'postgresql_dsn = "{self.target.dsn}"']
        return "\n".join(lines) + "\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def central_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CentralDb]:
    """The back-office test on both engines: SQLite ``<tmp_path>/central.db``, or a fresh
    PostgreSQL database (the ``pg`` fixture). Everything it opened is closed at the end."""
    target: backoffice_db.Target
    if request.param == "sqlite":
        target = tmp_path / "central.db"
    else:
        target = backoffice_db.PgTarget(request.getfixturevalue("pg").dsn)
    db = CentralDb(kind=request.param, target=target, opened=[])
    yield db
    for thing in reversed(db.opened):
        thing.close()
