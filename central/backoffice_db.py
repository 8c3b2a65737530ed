"""One connection to central's database for the back office (API, CLI, downlink).

The back office's tables live in the same SQLite file as the records, so a
status change, its audit row and its downlink item commit together. WAL lets
this connection write while the collector ingests; ``busy_timeout`` makes
the two wait for each other instead of failing.

Each back-office module has ``ensure_schema(conn)``; :data:`SCHEMAS` lists them,
and :func:`connect` runs every one (idempotent ``CREATE ... IF NOT EXISTS``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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


def connect(path: Path | str, *, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """Open (creating if needed) central's database with every back-office table.

    Autocommit mode: use :func:`transaction` for changes.
    """
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
