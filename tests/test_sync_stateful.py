"""The sync state machine (tests/stateful_sync.py) run against both of central's stores.

Each store runs the same machine with its own factory: a function that opens the
store kept for one example (a SQLite file in that example's directory; for
PostgreSQL a schema of the test's fresh database named after that directory);
reopening it is a central restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from central.store import SQLiteStore
from central.store_pg import PostgresStore
from tests.pg import PgDatabase
from tests.stateful_sync import SyncSystem

SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def sqlite_store(directory: Path) -> SQLiteStore:
    return SQLiteStore(directory / "central.db")


# About 30 s when it passes; when it finds a failure, shrinking a 50-step run
# can take minutes, and the shrunk example is the report we want.
@pytest.mark.timeout(900)
def test_sync_with_the_sqlite_store() -> None:
    run_state_machine_as_test(lambda: SyncSystem(sqlite_store), settings=SETTINGS)


# Fewer examples: each one opens its own schema on the machine's PostgreSQL.
PG_SETTINGS = settings(SETTINGS, max_examples=80)


@pytest.mark.timeout(900)
def test_sync_with_the_postgres_store(pg: PgDatabase) -> None:
    def postgres_store(directory: Path) -> PostgresStore:
        return PostgresStore(pg.schema_dsn(str(directory)))

    run_state_machine_as_test(lambda: SyncSystem(postgres_store), settings=PG_SETTINGS)
