"""Unit tests of the kiosk's durable outbox (sync/outbox.py).

Invariant 1 (durable before promised), 5 (bounded, with a clear message at
each limit) and 8 (purge after retention), plus the designed behaviour on a
full disk and on a corrupt database file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.outbox import Outbox, OutboxCorrupt, OutboxError, OutboxFull, RecordTooLarge

KIOSK = "sadec-p1-k01"
NO_RESERVE = {"min_free_disk_bytes": 0}


def _support(i: int, size: int = 20) -> dict[str, object]:
    return {"topic": "máy in", "message": f"{i}:" + "x" * size, "contact": "", "channel": "kiosk"}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "kiosk.db"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- seq ---------------------------------------------------------------------------


def test_seq_is_monotonic_and_never_reused_after_purge(db: Path) -> None:
    ob = Outbox(db, KIOSK, **NO_RESERVE)
    seqs = [ob.add("support", _support(i)).seq for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    ids = [r["id"] for r in ob.records()]
    assert ob.mark_acked(ids) == 5
    assert ob.purge(retention_s=0, now=time.time() + 1) == 5
    assert ob.records() == []
    # Everything is gone, yet the next seq follows the last one ever given.
    assert ob.add("support", _support(6)).seq == 6
    ob.close()
    ob = Outbox(db, KIOSK, **NO_RESERVE)  # and across a restart
    with ob.transaction() as tx:
        assert [tx.add("rating", {"level": "hai_long"}).seq for _ in range(3)] == [7, 8, 9]
    assert [r["seq"] for r in ob.records()] == [6, 7, 8, 9]
    ob.close()


def test_ack_for_unknown_or_already_acked_id_is_ignored(db: Path) -> None:
    ob = Outbox(db, KIOSK, **NO_RESERVE)
    a, b = ob.add("support", _support(1)), ob.add("support", _support(2))
    assert ob.mark_acked([a.id]) == 1
    assert ob.mark_acked([a.id, "01JDX5V7Q6M1B8X3Z4K0N2R7TA"]) == 0
    assert ob.mark_rejected([(a.id, "late rejection")]) == 0  # acked stays acked
    assert ob.state_of(a.id) == "acked" and ob.state_of(b.id) == "queued"
    ob.close()


# -- transactions ------------------------------------------------------------------


def test_record_and_own_row_commit_together_or_not_at_all(db: Path) -> None:
    ob = Outbox(db, KIOSK, **NO_RESERVE)
    ob.conn.execute("CREATE TABLE dossiers (code TEXT PRIMARY KEY, record_id TEXT NOT NULL)")
    with ob.transaction() as tx:
        rec = tx.add("support", _support(1))
        tx.conn.execute("INSERT INTO dossiers VALUES (?, ?)", ("CODE-1", rec.id))

    class PrinterJam(Exception):
        pass

    with pytest.raises(PrinterJam), ob.transaction() as tx:
        lost = tx.add("support", _support(2))
        tx.conn.execute("INSERT INTO dossiers VALUES (?, ?)", ("CODE-2", lost.id))
        raise PrinterJam

    # The same on a database error half way (duplicate primary key).
    with pytest.raises(sqlite3.IntegrityError), ob.transaction() as tx:
        lost2 = tx.add("support", _support(3))
        tx.conn.execute("INSERT INTO dossiers VALUES (?, ?)", ("CODE-1", lost2.id))
    ob.close()

    ob = Outbox(db, KIOSK, **NO_RESERVE)
    assert [r["id"] for r in ob.records()] == [rec.id]
    assert ob.conn.execute("SELECT code, record_id FROM dossiers").fetchall() == [
        ("CODE-1", rec.id)
    ]
    assert ob.state_of(lost.id) is None and ob.state_of(lost2.id) is None
    # The outbox is still usable after the failed transactions.
    assert ob.add("support", _support(4)).seq > rec.seq
    ob.close()


# -- retention (invariant 8) ----------------------------------------------------------


def test_purge_deletes_only_acked_records_older_than_the_retention(db: Path) -> None:
    ob = Outbox(db, KIOSK, **NO_RESERVE)
    recs = [ob.add("support", _support(i)) for i in range(6)]
    old_acked, new_acked = [r.id for r in recs[:2]], [r.id for r in recs[2:4]]
    rejected, queued = recs[4].id, recs[5].id
    ob.mark_acked(old_acked + new_acked)
    ob.mark_rejected([(rejected, "bad-body: body.message: missing")])
    week = 7 * 86400.0
    now = time.time()
    # The first two were acknowledged eight days ago.
    ob.conn.executemany(
        "UPDATE outbox SET done_at = ? WHERE id = ?", [(now - 8 * 86400, i) for i in old_acked]
    )
    # A rejected record parked for an operator is never purged, however old.
    ob.conn.execute("UPDATE outbox SET done_at = ? WHERE id = ?", (now - 30 * 86400, rejected))

    assert ob.purge(retention_s=week, now=now) == 2
    left = {r["id"]: r["state"] for r in ob.records()}
    assert left == {
        new_acked[0]: "acked",
        new_acked[1]: "acked",
        rejected: "rejected",
        queued: "queued",
    }
    assert ob.purge(retention_s=week, now=now) == 0
    assert ob.purge(retention_s=week, now=now + week + 60) == 2
    assert {r["id"] for r in ob.records()} == {rejected, queued}
    ob.close()


# -- limits (invariant 5) ---------------------------------------------------------------


def test_queue_limit_refuses_with_a_message_naming_the_limit(db: Path) -> None:
    ob = Outbox(db, KIOSK, max_queued=5, **NO_RESERVE)
    ids = [ob.add("support", _support(i)).id for i in range(5)]
    with pytest.raises(OutboxFull) as err:
        ob.add("support", _support(99))
    msg = str(err.value)
    assert "limit is 5" in msg and "sync.max_queued" in msg
    with pytest.raises(OutboxFull), ob.transaction() as tx:
        tx.add("support", _support(100))
    assert [r["id"] for r in ob.records("queued")] == ids  # nothing committed lost
    # One acknowledged makes room for one more.
    ob.mark_acked(ids[:1])
    ob.add("support", _support(6))
    with pytest.raises(OutboxFull):
        ob.add("support", _support(7))
    ob.close()


def test_record_too_large_is_refused_and_rolls_back_its_transaction(db: Path) -> None:
    ob = Outbox(db, KIOSK, max_record_bytes=2048, **NO_RESERVE)
    kept = ob.add("support", _support(1))
    with pytest.raises(RecordTooLarge) as err, ob.transaction() as tx:
        tx.add("support", _support(2))
        tx.add("support", _support(3, size=3900))  # within the schema, over 2048 bytes
    assert "2048 bytes" in str(err.value) and "sync.max_record_bytes" in str(err.value)
    assert [r["id"] for r in ob.records()] == [kept.id]
    ob.close()


def _fill(ob: Outbox, size: int, limit: int = 10_000) -> tuple[list[str], OutboxFull]:
    ids: list[str] = []
    for i in range(limit):
        try:
            ids.append(ob.add("support", _support(i, size=size)).id)
        except OutboxFull as exc:
            return ids, exc
    raise AssertionError(f"the outbox took {limit} records without ever being full")


def _drains_and_recovers(ob: Outbox, ids: list[str]) -> None:
    """A full kiosk can still record acks, purge, and then file again."""
    assert ob.mark_acked(ids) == len(ids)
    assert ob.stats().queued == 0
    assert ob.purge(retention_s=0, now=time.time() + 1) == len(ids)
    after = [ob.add("support", _support(i, size=3000)) for i in range(3)]
    assert [r["id"] for r in ob.records()] == [r.id for r in after]


def test_full_database_refuses_new_records_and_keeps_the_old(db: Path) -> None:
    ob = Outbox(db, KIOSK, max_db_bytes=256 * 1024, **NO_RESERVE)
    ids, full = _fill(ob, size=3000)
    assert len(ids) > 5
    msg = str(full)
    assert str(db) in msg and "full" in msg and "sync.max_db_bytes" in msg
    # Still full, still a clear refusal (not a raw sqlite error), and again.
    for _ in range(2):
        with pytest.raises(OutboxFull):
            ob.add("support", _support(0, size=3000))
    ob.close()
    ob = Outbox(db, KIOSK, max_db_bytes=256 * 1024, **NO_RESERVE)
    assert [r["id"] for r in ob.records("queued")] == ids  # every committed record is there
    _drains_and_recovers(ob, ids)
    ob.close()


@contextlib.contextmanager
def _small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A size-limited tmpfs mounted at ``where``; skips the test if not permitted."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root; the max_page_count test runs")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "aps-test", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        # Lazy: detaches even while a failed test still holds the database open.
        subprocess.run(["umount", "--lazy", str(where)], check=True)


def test_full_disk_hits_the_free_disk_reserve_and_recovers(tmp_path: Path) -> None:
    with _small_filesystem(tmp_path / "sd", "2m") as sd:
        path = sd / "kiosk.db"
        ob = Outbox(path, KIOSK, min_free_disk_bytes=768 * 1024)
        ids, full = _fill(ob, size=3000)
        assert len(ids) > 5
        assert "sync.min_free_disk_bytes" in str(full) and str(path) in str(full)
        assert [r["id"] for r in ob.records("queued")] == ids
        # The reserve leaves room to record acks and purge, then file again.
        _drains_and_recovers(ob, ids)
        ob.close()


def test_disk_really_full_refuses_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    with _small_filesystem(tmp_path / "sd", "1m") as sd:
        path = sd / "kiosk.db"
        ob = Outbox(path, KIOSK, min_free_disk_bytes=0)  # no reserve: ENOSPC itself
        ids, full = _fill(ob, size=3000)
        assert len(ids) > 5
        assert "full" in str(full) and str(path) in str(full)
        with pytest.raises(OutboxFull):
            ob.add("support", _support(0, size=3000))
        ob.close()
        ob = Outbox(path, KIOSK, min_free_disk_bytes=0)
        assert [r["id"] for r in ob.records("queued")] == ids
        ob.close()


# -- corrupt database ------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _bad_page(path: Path) -> None:
    # Overwrite the page holding the outbox table's rows (not the header).
    page_size = int.from_bytes(path.read_bytes()[16:18], "big")
    with path.open("r+b") as f:
        f.seek(page_size * 3)
        f.write(b"\xff" * page_size)


def _bad_page_rollback_journal(path: Path) -> None:
    # The same file after a tool switched it to a rollback journal (a copy, a
    # restore): opening must not switch it back to WAL before checking it.
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    _bad_page(path)


@pytest.mark.parametrize("damage", [_garbage, _truncate, _bad_page, _bad_page_rollback_journal])
def test_corrupt_database_is_refused_and_left_untouched(db: Path, damage: object) -> None:
    ob = Outbox(db, KIOSK, **NO_RESERVE)
    for i in range(40):
        ob.add("support", _support(i, size=500))
    ob.close()
    assert not Path(f"{db}-wal").exists()
    damage(db)  # type: ignore[operator]
    before = _sha256(db)
    with pytest.raises(OutboxCorrupt) as err:
        Outbox(db, KIOSK, **NO_RESERVE)
    assert str(db) in str(err.value) and "left untouched" in str(err.value)
    assert _sha256(db) == before
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


# -- kill -9 (invariant 1) ---------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from sync.outbox import Outbox
    ob = Outbox(sys.argv[1], "sadec-p1-k01", min_free_disk_bytes=0)
    i = 0
    while True:
        with ob.transaction() as tx:
            rec = tx.add("support", {"message": "kill me %d" % i})
            tx.add("rating", {"level": "hai_long"})
        # Promised only now that the transaction returned.
        print(rec.seq, rec.id, flush=True)
        i += 1
    """
)


def test_records_promised_before_sigkill_survive(db: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    promised: list[tuple[int, str]] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            seq, rid = line.split()
            promised.append((int(seq), rid))
            if len(promised) == 150:
                child.send_signal(signal.SIGKILL)  # mid-stream: it keeps committing
                break
        # Lines already written before the kill are promises too.
        promised += [(int(s), r) for s, r in (ln.split() for ln in child.stdout if ln.strip())]
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    ob = Outbox(db, KIOSK, **NO_RESERVE)
    stored = {r["id"]: r for r in ob.records()}
    for seq, rid in promised:
        assert rid in stored, f"seq {seq} was promised but is gone after kill -9"
        assert stored[rid]["seq"] == seq
    # Both records of every transaction, or neither: seqs come in pairs.
    seqs = sorted(r["seq"] for r in stored.values())
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) % 2 == 0
    ob.close()


# -- SQLite errors are told apart by their code, not their wording -----------------------


def test_sql_error_that_mentions_full_is_not_reported_as_a_full_outbox(db: Path) -> None:
    # A service's own statement failing inside the transaction ("no such table:
    # full_names") is a bug to see as it is, not "the kiosk is full" on screen.
    ob = Outbox(db, KIOSK, **NO_RESERVE)
    with pytest.raises(sqlite3.OperationalError) as err, ob.transaction() as tx:
        tx.add("support", _support(1))
        tx.conn.execute("INSERT INTO full_names VALUES (1)")
    assert not isinstance(err.value, OutboxFull)
    assert "full_names" in str(err.value)
    assert ob.records() == []
    ob.close()


def test_unopenable_path_is_not_reported_as_a_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "kiosk.db"
    with pytest.raises(OutboxError) as err:
        Outbox(path, KIOSK, **NO_RESERVE)
    assert not isinstance(err.value, OutboxCorrupt)
    msg = str(err.value)
    # Named for what it is (the missing directory), never as damage with salvage advice.
    assert str(path) in msg and "does not exist" in msg and "salvage" not in msg


# -- page size (SD-card wear) --------------------------------------------------------------


def test_new_database_uses_small_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    from sync.outbox import PAGE_SIZE

    new = Outbox(tmp_path / "new.db", KIOSK, **NO_RESERVE)
    new.add("support", _support(1))
    assert new.conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 1024
    new.close()
    # A kiosk's existing 4 KiB-page database (made before this change) opens,
    # takes records and stays as it is: the page size of a WAL file is fixed.
    old_path = tmp_path / "old.db"
    conn = sqlite3.connect(old_path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    old = Outbox(old_path, KIOSK, **NO_RESERVE)
    rec = old.add("support", _support(2))
    assert old.conn.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert [r["id"] for r in old.records()] == [rec.id]
    old.close()


# -- the free-disk check -------------------------------------------------------------------


def _count_statvfs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import shutil

    from sync import outbox as outbox_module

    calls: list[int] = []
    real = shutil.disk_usage

    def counting(path: object) -> object:
        calls.append(1)
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(outbox_module.shutil, "disk_usage", counting)
    return calls


def test_far_from_the_reserve_the_disk_is_not_asked_on_every_filing(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_statvfs(monkeypatch)
    ob = Outbox(db, KIOSK, **NO_RESERVE)  # every byte of the disk above a zero reserve
    for i in range(50):
        ob.add("support", _support(i))
    # One look a second at most: 50 filings take far less than 50 seconds.
    assert 1 <= len(calls) < 50
    ob.close()


def test_near_the_reserve_every_filing_asks_the_disk(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    free = shutil.disk_usage(db.parent).free
    calls = _count_statvfs(monkeypatch)
    # A reserve just under what is free: within DISK_RECHECK_MARGIN of it.
    ob = Outbox(db, KIOSK, min_free_disk_bytes=max(0, free - 32 * 1024**2))
    for i in range(5):
        ob.add("support", _support(i))
    assert len(calls) == 5
    ob.close()
