"""How every ``aps-central`` command opens central's database, SQLite or PostgreSQL.

One function for the CLIs (support, back office, jobs, downlink, alerts, console,
catalogue): it follows ``[central] store`` and turns a missing or unreachable
database into one clear error naming the setting to check.

- SQLite: ``must_exist`` refuses a path that is not there (a listing never
  creates a database by a typo); ``read_only`` opens the file ``mode=ro``.
- PostgreSQL: the DSN's database must exist (central never creates one);
  ``read_only`` opens a read-only session without running migrations, as
  ``aps-central status`` does; otherwise the migrations run first.
"""

from __future__ import annotations

import sqlite3
from typing import cast

import click

from central import backoffice_db
from central.config import CentralSection


def open_backoffice(
    central: CentralSection, config_path: str, *, must_exist: bool = True, read_only: bool = False
) -> sqlite3.Connection:
    """Central's database for a command; a click error, naming what to check, if it fails."""
    target = backoffice_db.target_of(central)
    if isinstance(target, backoffice_db.PgTarget):
        setting = f"central.postgresql_dsn in {config_path}"
        try:
            if read_only:
                from central.pg_dialect import SqliteDialectConn

                conn = SqliteDialectConn.connect(target.dsn)
                conn.execute("SET default_transaction_read_only = on")
                return cast(sqlite3.Connection, conn)
            return backoffice_db.connect(target)
        except sqlite3.Error as exc:
            raise click.ClickException(f"cannot open PostgreSQL: {exc}; check {setting}") from None
    setting = f"central.database in {config_path}"
    if (must_exist or read_only) and not target.exists():
        raise click.ClickException(
            f"no central database at {target} (the file does not exist); check {setting} "
            "(central creates it when it first runs)"
        )
    try:
        if read_only:
            return sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        return backoffice_db.connect(target)
    except (OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"cannot open {target}: {exc}; check {setting}") from None
