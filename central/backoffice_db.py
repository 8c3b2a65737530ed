"""One connection to central's database for the back office (API, CLI, downlink).

The back office's tables live in the same SQLite file as the records, so a
status change, its audit row and its downlink item commit together. WAL lets
this connection write while the collector ingests; ``busy_timeout`` makes
the two wait for each other instead of failing.

Each back-office module has ``ensure_schema(conn)``; :data:`SCHEMAS` lists them,
and :func:`connect` runs every one (idempotent ``CREATE ... IF NOT EXISTS``).

PostgreSQL (``[central] store = "postgresql"``): the same tables live in the
records' database, created by versioned migrations (:data:`PG_MIGRATIONS`, the
modules' SQLite scripts translated by :func:`central.pg_dialect.translate_ddl`,
after the store's own). :func:`connect` given a :class:`PgTarget` returns a
:class:`central.pg_dialect.SqliteDialectConn`: it answers as a
``sqlite3.Connection`` (typed as one), so every back-office module runs on it
unchanged; :func:`target_of` picks the target from the configuration.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

from central import (
    answers,
    audit,
    content,
    dossiers,
    downlink_log,
    projection,
    reports,
    staff_tables,
)
from central.fleet import alert_rules, alerts, desired_config, jobs
from central.store import SQLiteStore

if TYPE_CHECKING:
    from central.config import CentralSection

SCHEMAS: list[Callable[[sqlite3.Connection], None]] = [
    downlink_log.ensure_schema,
    audit.ensure_schema,
    staff_tables.ensure_schema,
    projection.ensure_schema,
    dossiers.ensure_schema,
    answers.ensure_schema,
    content.ensure_schema,
    reports.ensure_schema,
    jobs.ensure_schema,
    desired_config.ensure_schema,
    alerts.ensure_schema,  # the console lists them before the engine's first round
    alert_rules.ensure_schema,
]


@dataclass(frozen=True)
class PgTarget:
    """Central's database on PostgreSQL (a libpq DSN), as opposed to a SQLite path."""

    dsn: str

    def __str__(self) -> str:  # never the DSN itself: it may hold a password
        return "PostgreSQL ([central] postgresql_dsn)"


Target = Path | PgTarget


def target_of(central: CentralSection) -> Target:
    """Where ``[central]`` keeps the back office: its SQLite file, or its PostgreSQL."""
    if central.store == "postgresql":
        assert central.postgresql_dsn is not None  # the config refuses postgresql without
        return PgTarget(central.postgresql_dsn.get_secret_value())
    return Path(central.database)


#: Tables whose queries name SQLite's implicit ``rowid`` (an explicit column on PostgreSQL).
ROWID_TABLES = frozenset({"inquiries", "config_reports"})


@cache
def pg_migrations() -> tuple[tuple[int, str], ...]:
    """The back office's and the fleet's tables on PostgreSQL: (version, statements).

    Version 101 is every module's schema as it stood when central first ran the back
    office on PostgreSQL, translated. Append only, as the store's MIGRATIONS: a table
    changed later gets a new version here (and its SQLite ``ensure_schema`` step);
    tests/test_backoffice_pg.py pins version 101's text so an edited script is caught.
    """
    from central.fleet import duplicates, registry, rollout
    from central.pg_dialect import translate_ddl
    from central.web.console import users

    scripts = [
        downlink_log.SCHEMA,
        audit.SCHEMA,
        staff_tables.ROSTER,
        staff_tables.SUPPORT,
        staff_tables.API_TOKENS,
        staff_tables.PAYMENTS,
        projection.SCHEMA,
        dossiers.SCHEMA,
        answers.SCHEMA,
        content.SCHEMA,
        reports.SCHEMA,
        jobs.SCHEMA,
        desired_config.SCHEMA,
        alerts.SCHEMA,
        alert_rules.SCHEMA,
        registry.SCHEMA,
        users.SCHEMA,
        duplicates.SCHEMA,
        rollout.SCHEMA,
    ]
    return ((101, translate_ddl("\n".join(scripts), rowid_tables=ROWID_TABLES)),)


def connect(target: Target | str, *, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """Open (creating if needed) central's database with every back-office table.

    Autocommit mode: use :func:`transaction` for changes. A :class:`PgTarget`
    opens PostgreSQL (migrating it first); anything else is a SQLite path.
    """
    if isinstance(target, PgTarget):
        return connect_pg(target.dsn)
    path = target
    # The store makes the records' schema and WAL (it retries the WAL switch
    # another connection may be doing); then it is closed, its tables stay.
    SQLiteStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    for ensure in SCHEMAS:
        ensure(conn)
    return conn


def connect_pg(dsn: str) -> sqlite3.Connection:
    """The back office on PostgreSQL: the store's migrations, then :func:`pg_migrations`."""
    from central import store_pg
    from central.pg_dialect import SqliteDialectConn

    conn = SqliteDialectConn.connect(dsn)
    try:
        store_pg.migrate(conn.raw)
        store_pg.migrate(conn.raw, pg_migrations())
    except BaseException:
        conn.close()
        raise
    # Typed as what it answers as: the subset of sqlite3.Connection the modules use.
    return cast(sqlite3.Connection, conn)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
