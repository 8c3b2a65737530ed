"""A PostgreSQL database of the previous release (store migrations 1-6) upgraded in place.

The release before this work kept only the records' side on PostgreSQL: its
records had no ``rowid``, and the back office lived in the SQLite file. Opening
that database with this release's back office must number the old records
(migration 7), create the back office's tables (migration 101), and fold the
records that were already there into the dossier index, the same as if they
had just arrived; a record that arrives after the upgrade numbers above them.
"""

from __future__ import annotations

import json
import time

import psycopg

from central import backoffice_db, dossiers, store_pg
from sync.ids import new_stream_id, new_ulid
from tests.backoffice_records import AGENCY, dossier_body
from tests.pg import PgDatabase


def _old_record(
    conn: psycopg.Connection[tuple[object, ...]], kiosk: str, seq: int, code: str
) -> None:
    """A dossier record as the previous release's store wrote it (its v1 columns)."""
    conn.execute(
        "INSERT INTO records (kiosk, id, stream, seq, kind, created, received_at, body)"
        " VALUES (%s, %s, %s, %s, 'dossier', %s, %s, %s)",
        (
            kiosk,
            new_ulid(),
            STREAM,
            seq,
            "2026-12-01T09:15:00.000+07:00",
            time.time(),
            json.dumps(dossier_body(code), ensure_ascii=False),
        ),
    )


STREAM = new_stream_id()


def test_the_previous_release_database_gets_rowids_and_its_records_reach_the_back_office(
    pg: PgDatabase,
) -> None:
    codes = [f"{AGENCY}-261201-{4000 + n}" for n in range(1, 4)]
    with psycopg.connect(pg.dsn, autocommit=True) as old:
        assert store_pg.migrate(old, store_pg.MIGRATIONS[:6]) == [1, 2, 3, 4, 5, 6]
        for seq, code in enumerate(codes, start=1):
            _old_record(old, "k-upgrade-01", seq, code)
        columns = {
            r[0]
            for r in old.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'records'"
            )
        }
        assert "rowid" not in columns  # the previous release's shape

    conn = backoffice_db.connect(backoffice_db.PgTarget(pg.dsn))
    try:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [1, 2, 3, 4, 5, 6, 7, 101]
        rowids = [r[0] for r in conn.execute("SELECT rowid FROM records ORDER BY seq")]
        assert len(set(rowids)) == 3 and all(isinstance(r, int) and r > 0 for r in rowids)

        assert dossiers.project(conn) == 3
        found = dossiers.search_dossiers(conn, office=AGENCY)
        assert sorted(d["code"] for d in found) == codes

        # A record after the upgrade numbers above every old one, and is folded once.
        with psycopg.connect(pg.dsn, autocommit=True) as later:
            _old_record(later, "k-upgrade-01", 4, f"{AGENCY}-261201-4004")
        top = conn.execute("SELECT max(rowid) FROM records").fetchone()[0]
        assert top > max(rowids)
        assert dossiers.project(conn) == 1
        assert dossiers.project(conn) == 0
    finally:
        conn.close()

    # Opening again applies nothing and changes no row.
    again = backoffice_db.connect(backoffice_db.PgTarget(pg.dsn))
    try:
        assert again.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == 8
        assert again.execute("SELECT count(*) FROM dossier_index").fetchone()[0] == 4
    finally:
        again.close()
