"""One Outbox shared by several threads: every add commits, none lost, seqs contiguous."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sync.outbox import Outbox, OutboxError
from tests.stack import dossier_body

THREADS, EACH = 4, 300


def test_four_threads_times_300_adds_on_one_outbox_all_commit(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "kiosk.db", "k-threads-01")
    commits: list[int] = []
    ob.on_commit.append(lambda: commits.append(1))
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        start.wait()
        for i in range(EACH):
            try:
                ob.add("dossier", dossier_body(1 + (t * EACH + i) % 9999))
                # A read between writes, as the screen's lookups do.
                ob.stats()
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[:3]
    ob.close()
    # Read back through a fresh connection: what is on disk, not what the writer saw.
    again = Outbox.open_readonly(tmp_path / "kiosk.db")
    seqs = [r["seq"] for r in again.records()]
    again.close()
    assert len(seqs) == THREADS * EACH
    assert seqs == list(range(1, THREADS * EACH + 1))
    assert len(commits) == THREADS * EACH


def test_a_transaction_inside_another_of_the_same_thread_is_refused(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "kiosk.db", "k-threads-01")
    with pytest.raises(OutboxError, match="inside another transaction"), ob.transaction() as tx:
        tx.add("dossier", dossier_body(1))
        ob.add("dossier", dossier_body(2))
    assert ob.stats().queued == 0  # the outer one rolled back: nothing half-kept
    ob.close()
