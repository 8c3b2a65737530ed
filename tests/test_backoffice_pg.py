"""The back office on PostgreSQL: the seam itself (central.pg_dialect, backoffice_db's
migration 101) and the dossier projection with two collectors committing out of order.

The module tests of the back office run on both engines through the ``central_db``
fixture; this file holds what only PostgreSQL can get wrong: a ``rowid`` handed out at
INSERT but visible at COMMIT, the advisory locks that stand in for SQLite's one writer,
psycopg's types and exceptions answering as sqlite3's.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from central import backoffice_db, dossiers, downlink_log, projection, support
from central.backoffice_db import PgTarget
from central.pg_dialect import WRITE_LOCK, SqliteDialectConn, translate_ddl
from central.store_pg import RECORDS_FENCE
from tests.backoffice_records import AGENCY, Kiosk, dossier_body
from tests.pg import PgDatabase
from tests.support_helpers import support_body

#: sha256 of version 101's statements as released with the back office on PostgreSQL.
MIGRATION_101_SHA256 = "e11b4da0f6f2e4e480c2fe4726c7113449cd3fcb967196e5c3e70af068e23c72"

#: The test's own advisory key: a trigger on ``records`` waits on it (one bigint key).
HOLD = 0x484F4C44  # "HOLD"

SLOW, SLOW2, FAST = "k-slow-01", "k-slow-02", "k-fast-01"
HELP_SLOW, HELP_FAST = "HO-261201-7001", "HO-261201-7002"


@pytest.fixture
def dialect(pg: PgDatabase) -> Iterator[Callable[[], SqliteDialectConn]]:
    """``open()`` a dialect connection to the test's database (all closed after)."""
    opened: list[SqliteDialectConn] = []

    def open_() -> SqliteDialectConn:
        conn = SqliteDialectConn.connect(pg.dsn)
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        conn.close()


def _waiting(dsn: str, classid: int, objid: int, objsubid: int) -> int:
    """How many sessions wait (not granted) for this advisory lock."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid = %s AND objid = %s AND objsubid = %s",
            (classid, objid, objsubid),
        ).fetchone()
    return int(row[0]) if row else 0


def _bigint_key(key: int) -> tuple[int, int, int]:
    """pg_locks' (classid, objid, objsubid) of a one-bigint advisory key."""
    return key >> 32, key & 0xFFFFFFFF, 1


def _until(what: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if what():
            return True
        time.sleep(0.02)
    return what()


# -- migration 101 is released: pinned --------------------------------------------------


def test_migration_101_is_pinned() -> None:
    migrations = backoffice_db.pg_migrations()
    assert [v for v, _ in migrations][:1] == [101]
    assert [v for v, _ in migrations] == sorted({v for v, _ in migrations})
    text = dict(migrations)[101]
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest == MIGRATION_101_SHA256, (
        "backoffice_db.pg_migrations() version 101 changed (a module's SCHEMA was edited): "
        "databases that ran 101 will never see the change; add a migration (version 102, "
        "the ALTER/CREATE it needs) and leave 101's text as it was"
    )


# -- the dossier projection with two collectors ------------------------------------------


def test_the_projections_miss_nothing_when_records_commit_out_of_rowid_order(
    pg: PgDatabase,
) -> None:
    """A record numbered first but committed last is folded by the next catch-up, once:
    the dossier index (central.projection's position) and the support requests (their own).

    The slow collector's INSERT takes rowid N and then waits (a test-only trigger waits
    on an advisory lock the test holds) before its COMMIT; the fast one stores N+1 and
    commits. A catch-up now must not move the position past N: it waits for the slow
    batch (store_pg's records fence) or reads below it. When the slow one commits, the
    catch-up that follows folds it; nothing is folded twice.
    """
    target = PgTarget(pg.dsn)
    conn = backoffice_db.connect(target)  # migrates: records, then the back office
    holder = psycopg.connect(pg.dsn, autocommit=True)
    try:
        holder.execute(
            f"""
            CREATE FUNCTION test_hold_slow_kiosk() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.kiosk IN ('{SLOW}', '{SLOW2}') THEN
                    PERFORM pg_advisory_xact_lock({HOLD});
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER test_hold_slow_kiosk AFTER INSERT ON records
                FOR EACH ROW EXECUTE FUNCTION test_hold_slow_kiosk();
            """
        )
        slow_code, fast_code = f"{AGENCY}-261201-7001", f"{AGENCY}-261201-7002"
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD,))
        errors: list[BaseException] = []

        def run(fn: Callable[[], Any], out: list[Any]) -> threading.Thread:
            def body() -> None:
                try:
                    out.append(fn())
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=body, daemon=True)
            thread.start()
            return thread

        slow_out: list[Any] = []
        slow = run(lambda: Kiosk(target, SLOW).send("dossier", dossier_body(slow_code)), slow_out)
        support_slow = run(
            lambda: Kiosk(target, SLOW2).send("support", support_body(lookup_code=HELP_SLOW)),
            slow_out,
        )
        assert _until(lambda: _waiting(pg.dsn, *_bigint_key(HOLD)) == 2), (
            "the slow collectors never reached the trigger",
            errors,
        )
        fast = Kiosk(target, FAST)
        fast.send("dossier", dossier_body(fast_code, id_number="001099012345"))
        fast.send("support", support_body(lookup_code=HELP_FAST))

        # The catch-up, while the slow batch is numbered but not committed.
        folded: list[int] = []
        other = backoffice_db.connect(target)
        try:
            catch_up = run(lambda: dossiers.project(other) + support.project(other), folded)
            fence_wait = RECORDS_FENCE[0], RECORDS_FENCE[1], 2
            assert _until(lambda: not catch_up.is_alive() or _waiting(pg.dsn, *fence_wait) > 0)
            holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD,))
            slow.join(timeout=30)
            support_slow.join(timeout=30)
            catch_up.join(timeout=30)
            assert not slow.is_alive() and not support_slow.is_alive() and errors == []
            assert not catch_up.is_alive()
        finally:
            other.close()
        rowids = conn.execute("SELECT kiosk, kind, rowid FROM records").fetchall()
        first_fast = min(r for k, _, r in rowids if k == FAST)
        assert all(r < first_fast for k, _, r in rowids if k != FAST), (
            f"the scenario needs the slow records numbered first: {rowids}"
        )

        # When the slow ones have committed, the next catch-up folds what is left.
        for _ in range(2):
            folded.append(dossiers.project(conn) + support.project(conn))
        indexed = conn.execute("SELECT code, kiosk FROM dossier_index ORDER BY code").fetchall()
        requests = conn.execute(
            "SELECT lookup_code, kiosk FROM support_requests ORDER BY lookup_code"
        ).fetchall()
        assert {
            "dossiers": [tuple(r) for r in indexed],
            "support": [tuple(r) for r in requests],
        } == {
            "dossiers": [(slow_code, SLOW), (fast_code, FAST)],
            "support": [(HELP_SLOW, SLOW2), (HELP_FAST, FAST)],
        }
        assert sum(folded) == 4, f"folded per catch-up: {folded}"  # nothing twice
        top = max(r for _, _, r in rowids)
        assert projection.position(conn, dossiers.PROJECTION) == top
    finally:
        holder.close()
        conn.close()


# -- the downlink log with two back-office writers ---------------------------------------


def test_a_kiosk_reading_the_downlink_never_skips_a_cursor_committed_late(pg: PgDatabase) -> None:
    """An item numbered first, committed last, still reaches a kiosk that read in between.

    A kiosk stores the newest cursor a state reply names, so cursors must become visible
    in number order. Writer A appends (cursor N, not committed); writer B appends in its
    own transaction. B must wait for A (the back office's write lock): were B's N+1
    visible first, a reader would be told N+1 and never ask for N.
    """
    target = PgTarget(pg.dsn)
    a, b, reader = (backoffice_db.connect(target) for _ in range(3))
    try:
        errors: list[BaseException] = []

        def write_b() -> None:
            try:
                downlink_log.append(b, downlink_log.FLEET, "news", "n-b", {"id": "n-b"})
            except BaseException as exc:
                errors.append(exc)

        a.execute("BEGIN IMMEDIATE")
        downlink_log.append(a, downlink_log.FLEET, "news", "n-a", {"id": "n-a"})
        writer_b = threading.Thread(target=write_b, daemon=True)
        writer_b.start()
        assert _until(
            lambda: not writer_b.is_alive() or _waiting(pg.dsn, *_bigint_key(WRITE_LOCK)) == 1
        )
        held: dict[str, int] = {}
        after = 0
        items, after, _ = downlink_log.items_since(reader, [downlink_log.FLEET], after)
        held.update({i.key: i.cursor for i in items})
        a.execute("COMMIT")
        writer_b.join(timeout=10)
        assert not writer_b.is_alive() and errors == []
        items, after, _ = downlink_log.items_since(reader, [downlink_log.FLEET], after)
        held.update({i.key: i.cursor for i in items})
        assert set(held) == {"n-a", "n-b"}, f"the kiosk holds {held}, told cursor {after}"
        assert after == downlink_log.latest_cursor(reader) and held["n-a"] < held["n-b"]
    finally:
        for conn in (a, b, reader):
            conn.close()


# -- pg_dialect: sqlite3's connection over psycopg ---------------------------------------


def test_rows_answer_by_index_and_by_name(dialect: Callable[[], SqliteDialectConn]) -> None:
    conn = dialect()
    row = conn.execute("SELECT 1 AS a, 'Hường' AS b, NULL AS c").fetchone()
    assert row == (1, "Hường", None) and tuple(row) == (1, "Hường", None)
    assert row["a"] == 1 and row["b"] == "Hường" and row[1] == "Hường" and row["c"] is None
    assert row.keys() == ["a", "b", "c"]
    assert dict(zip(row.keys(), row, strict=True)) == {"a": 1, "b": "Hường", "c": None}
    with pytest.raises(IndexError, match="'d'"):
        row["d"]
    # Each query's rows carry their own names.
    again = conn.execute("SELECT 2 AS x").fetchall()
    assert again[0]["x"] == 2 and again[0].keys() == ["x"]


def test_bools_go_as_integers_and_numerics_come_back_as_int_or_float(
    dialect: Callable[[], SqliteDialectConn],
) -> None:
    conn = dialect()
    conn.execute(translate_ddl("CREATE TABLE flags (k TEXT PRIMARY KEY, flag INTEGER NOT NULL)"))
    conn.execute("INSERT INTO flags (k, flag) VALUES (?, ?)", ("a", True))
    conn.executemany("INSERT INTO flags (k, flag) VALUES (?, ?)", [("b", False), ("c", True)])
    assert conn.execute("SELECT k, flag FROM flags ORDER BY k").fetchall() == [
        ("a", 1),
        ("b", 0),
        ("c", 1),
    ]
    assert conn.execute("SELECT count(*) FROM flags WHERE flag = ?", (True,)).fetchone()[0] == 2
    total, mean, whole = conn.execute(
        "SELECT sum(flag), avg(flag), avg(flag * 0 + 2) FROM flags"
    ).fetchone()
    assert type(total) is int and total == 2  # sum(bigint) is numeric in PostgreSQL
    assert type(mean) is float and mean == pytest.approx(2 / 3)
    assert type(whole) is float and whole == 2.0  # avg is a float in sqlite3, whole or not
    assert conn.execute("SELECT sum(flag) FROM flags WHERE k = 'z'").fetchone()[0] is None
    big = conn.execute("SELECT 12345678901234567890::numeric, 1.5::numeric").fetchone()
    assert big == (12345678901234567890, 1.5) and type(big[0]) is int


def test_errors_are_sqlite3_s_of_the_same_class(dialect: Callable[[], SqliteDialectConn]) -> None:
    conn = dialect()
    conn.execute(translate_ddl("CREATE TABLE u (k TEXT PRIMARY KEY, v INTEGER NOT NULL)"))
    conn.execute("INSERT INTO u (k, v) VALUES (?, ?)", ("a", 1))
    cases: list[tuple[str, tuple[Any, ...], type[sqlite3.Error], type[psycopg.Error]]] = [
        ("SELECT * FROM absent", (), sqlite3.OperationalError, psycopg.errors.UndefinedTable),
        ("SELECT nope FROM u", (), sqlite3.OperationalError, psycopg.errors.UndefinedColumn),
        (
            "INSERT INTO u (k, v) VALUES (?, ?)",
            ("a", 2),
            sqlite3.IntegrityError,
            psycopg.errors.UniqueViolation,
        ),
        (
            "INSERT INTO u (k, v) VALUES (?, ?)",
            ("b", None),
            sqlite3.IntegrityError,
            psycopg.errors.NotNullViolation,
        ),
    ]
    for sql, args, sqlite_class, pg_class in cases:
        with pytest.raises(sqlite_class) as caught:
            conn.execute(sql, args)
        assert isinstance(caught.value.__cause__, pg_class), sql
    # The catch-all the modules write still catches them, as on SQLite.
    with pytest.raises(sqlite3.Error):
        conn.executemany("INSERT INTO u (k, v) VALUES (?, ?)", [("c", 1), ("a", 1)])
    assert (
        conn.execute("SELECT count(*) FROM u").fetchone()[0] == 1
    )  # the failed batch left nothing
    # A script naming a table the migrations never made says where to add it.
    with pytest.raises(sqlite3.OperationalError, match=r"no such table: ghosts.*pg_migrations"):
        conn.executescript("CREATE TABLE IF NOT EXISTS ghosts (k TEXT PRIMARY KEY);")
    conn.executescript("CREATE TABLE IF NOT EXISTS u (k TEXT PRIMARY KEY);")  # there: checked


def test_begin_immediate_makes_two_writers_take_turns(
    pg: PgDatabase, dialect: Callable[[], SqliteDialectConn]
) -> None:
    a, b = dialect(), dialect()
    a.execute(translate_ddl("CREATE TABLE counter (k TEXT PRIMARY KEY, n INTEGER NOT NULL)"))
    a.execute("INSERT INTO counter (k, n) VALUES ('c', 0)")
    seen: list[int] = []
    errors: list[BaseException] = []

    def increment(conn: SqliteDialectConn) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            n = conn.execute("SELECT n FROM counter WHERE k = 'c'").fetchone()[0]
            seen.append(n)
            conn.execute("UPDATE counter SET n = ? WHERE k = 'c'", (n + 1,))
            conn.execute("COMMIT")
        except BaseException as exc:
            errors.append(exc)

    a.execute("BEGIN IMMEDIATE")
    assert a.in_transaction and not b.in_transaction
    n = a.execute("SELECT n FROM counter WHERE k = 'c'").fetchone()[0]
    # A plain BEGIN takes no write lock (as in SQLite): a reader is never held up.
    b.execute("BEGIN")
    assert b.execute("SELECT n FROM counter").fetchone()[0] == 0
    b.execute("COMMIT")
    other = threading.Thread(target=increment, args=(b,), daemon=True)
    other.start()
    assert _until(lambda: _waiting(pg.dsn, *_bigint_key(WRITE_LOCK)) == 1), (
        "the second BEGIN IMMEDIATE did not wait for the first writer",
        errors,
    )
    a.execute("UPDATE counter SET n = ? WHERE k = 'c'", (n + 1,))
    a.execute("COMMIT")
    assert not a.in_transaction
    other.join(timeout=10)
    assert not other.is_alive() and errors == []
    # The second writer read after the first committed: no update lost.
    assert seen == [1] and a.execute("SELECT n FROM counter").fetchone()[0] == 2
    # ROLLBACK releases the lock too; COMMIT/ROLLBACK outside a transaction do nothing.
    a.execute("BEGIN IMMEDIATE")
    a.execute("ROLLBACK")
    b.execute("BEGIN IMMEDIATE")
    b.commit()
    a.commit()
    a.rollback()


def test_a_lone_write_waits_its_turn_and_a_read_transaction_is_one_snapshot(
    pg: PgDatabase, dialect: Callable[[], SqliteDialectConn]
) -> None:
    a, b, reader = dialect(), dialect(), dialect()
    a.execute(translate_ddl("CREATE TABLE notes (k TEXT PRIMARY KEY)"))
    errors: list[BaseException] = []

    def lone_write() -> None:
        try:
            b.execute("INSERT INTO notes (k) VALUES ('b')")  # no BEGIN: as SQLite's autocommit
        except BaseException as exc:
            errors.append(exc)

    a.execute("BEGIN IMMEDIATE")
    a.execute("INSERT INTO notes (k) VALUES ('a')")
    other = threading.Thread(target=lone_write, daemon=True)
    other.start()
    assert _until(lambda: _waiting(pg.dsn, *_bigint_key(WRITE_LOCK)) == 1), (
        "a write outside a transaction did not wait for the writer holding the lock",
        errors,
    )
    reader.execute("BEGIN")  # a read transaction: one snapshot, no lock
    assert reader.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    a.execute("COMMIT")
    other.join(timeout=10)
    assert not other.is_alive() and errors == [] and not b.in_transaction
    assert a.execute("SELECT count(*) FROM notes").fetchone()[0] == 2
    assert reader.execute("SELECT count(*) FROM notes").fetchone()[0] == 0  # same snapshot
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM notes").fetchone()[0] == 2


def test_pragma_table_info_reads_the_catalogue(dialect: Callable[[], SqliteDialectConn]) -> None:
    conn = dialect()
    conn.execute(
        translate_ddl(
            "CREATE TABLE staff (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL,"
            " photo BLOB, active INTEGER NOT NULL DEFAULT 1)"
        )
    )
    info = conn.execute("PRAGMA table_info(staff)").fetchall()
    assert [(r[0], r[1], r[3]) for r in info] == [
        (0, "id", 1),
        (1, "name", 1),
        (2, "score", 0),
        (3, "photo", 0),
        (4, "active", 1),
    ]
    assert [r[2] for r in info] == ["bigint", "text", "double precision", "bytea", "bigint"]
    assert info[1]["name"] == "name" and info[4][4] == "1"
    assert conn.execute("PRAGMA table_info('staff')").fetchall() == info
    assert conn.execute("PRAGMA table_info(absent)").fetchall() == []
    # The tuning pragmas mean nothing here; anything else is refused by name.
    for pragma in ("PRAGMA busy_timeout = 10000", "PRAGMA synchronous = FULL"):
        assert conn.execute(pragma).fetchall() == []
    with pytest.raises(sqlite3.OperationalError, match="PRAGMA integrity_check"):
        conn.execute("PRAGMA integrity_check")
