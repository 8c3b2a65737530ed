"""Ack means committed (invariant 3), with central's COMMIT failing.

A real :class:`central.collector.Collector` and a real kiosk
:class:`sync.client.SyncClient` on the test broker; central's store is the
real :class:`central.store.SQLiteStore` whose connection refuses COMMIT while a
fault is switched on (what a dying disk or a full volume does to the last step
of a transaction). While it is on, no ack may leave central: a subscriber of
our own on the kiosk's ack topic must hear nothing, the kiosk must keep every
record queued (and resend it after its ack timeout), and central must hold
nothing. When the fault clears, every record arrives once and is acked, and
each ack, when it arrives, names only records central's database holds.

An ack published before the commit (the collector publishing what it is about
to store, or publishing inside the store's transaction) fails this test: the
kiosk then marks records acked that central never stored.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from central.collector import Collector, CollectorSettings
from central.ingest import Accept, DeadLetter, FleetUpdate
from central.mosquitto import MosquittoProcess
from central.store import IngestOutcome, SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import Ack
from sync.outbox import Outbox
from tests import identity as keyring
from tests.ack_watch import AckWatch
from tests.stack import fill_outbox
from tests.waiting import wait_until

KIOSK = "k-commit-01"
N = 20


class CommitFault:
    """Shared between the test and the collector's writer thread."""

    def __init__(self) -> None:
        self.on = threading.Event()
        self.lock = threading.Lock()
        self.failed_commits = 0
        self.attempts: Counter[str] = Counter()  # record id -> failed ingests it was in

    def resent_during_fault(self) -> bool:
        with self.lock:
            return any(n >= 2 for n in self.attempts.values())


class FailingCommitConnection:
    """The store's sqlite3 connection, except that COMMIT raises while the fault is on."""

    def __init__(self, conn: sqlite3.Connection, fault: CommitFault) -> None:
        self._conn = conn
        self._fault = fault

    def _refuse(self) -> None:
        with self._fault.lock:
            self._fault.failed_commits += 1
        raise sqlite3.OperationalError("disk I/O error (injected by the test: COMMIT fails)")

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        words = sql.split(None, 1)
        if self._fault.on.is_set() and words and words[0].upper() in ("COMMIT", "END"):
            self._refuse()
        return self._conn.execute(sql, *args)

    def commit(self) -> None:
        if self._fault.on.is_set():
            self._refuse()
        self._conn.commit()

    # "with conn:" commits on the way out; dunders do not go through __getattr__.
    def __enter__(self) -> FailingCommitConnection:
        self._conn.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        if exc[0] is None and self._fault.on.is_set():
            self._conn.rollback()
            self._refuse()
        return self._conn.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class FailingCommitStore(SQLiteStore):
    def __init__(self, path: Path, fault: CommitFault) -> None:
        super().__init__(path)
        self.fault = fault
        self.conn = cast(sqlite3.Connection, FailingCommitConnection(self.conn, fault))

    def ingest(self, items: Sequence[Accept | DeadLetter | FleetUpdate]) -> IngestOutcome:
        ids = [i.record.id for i in items if isinstance(i, Accept)]
        try:
            return super().ingest(items)
        except sqlite3.Error:
            with self.fault.lock:
                self.fault.attempts.update(ids)
            raise


def test_no_ack_while_central_cannot_commit_then_each_record_once(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db = tmp_path / "kiosk.db"
    central_db = tmp_path / "central.db"
    ids = fill_outbox(kiosk_db, N, kiosk=KIOSK)
    fault = CommitFault()
    fault.on.set()

    reader = SQLiteStore(central_db)  # the test's own view of central's database
    at_ack = SQLiteStore(central_db)  # the same, for the watch's thread

    def not_yet_committed(ack: Ack) -> set[str]:
        """Ids this ack names that central's database does not hold as it arrives."""
        held = {r.id for r in at_ack.stored_records(KIOSK)}
        return set(ack.acked) - held

    watch = AckWatch(broker.observer(), KIOSK, not_yet_committed).start()
    collector = Collector(
        store_factory=lambda: FailingCommitStore(central_db, fault),
        mqtt_settings=broker.collector(),
        settings=CollectorSettings(),
        **keyring.CENTRAL,
    )
    client = SyncClient(
        database=kiosk_db,
        kiosk=KIOSK,
        mqtt_settings=broker.kiosk(KIOSK),
        settings=SyncSettings(ack_timeout_s=1.0, tick_s=0.05, reconnect_min_s=0.1),
        identity=keyring.kiosk_identity(),
    )
    check = Outbox(kiosk_db, KIOSK)
    collector.start()
    client.start()
    try:
        # Either the kiosk resent a record central failed to commit (it waited out
        # its ack timeout: no ack came), or some ack reached it. Both end the wait;
        # only the first is right.
        wait_until(
            lambda: fault.resent_during_fault() or check.stats().acked > 0 or watch.acked_ids(),
            60,
            "a resend during the fault, or an ack",
        )
        wait_until(
            lambda: fault.failed_commits >= 1,
            10,
            "the injected COMMIT failure to fire (if SQLiteStore no longer commits through "
            "self.conn, make FailingCommitStore refuse its commit where it now happens)",
        )
        stats = check.stats()
        assert stats.acked == 0, f"kiosk marked {stats.acked} acked; central committed nothing"
        assert watch.results() == [], "central acked while its COMMIT was failing"
        assert stats.queued == N
        assert reader.stored_records(KIOSK) == []
        assert fault.failed_commits >= 2  # the first attempt and the kiosk's resend

        fault.on.clear()
        wait_until(lambda: check.stats().queued == 0, 60, "every record acked after the fault")
        held = reader.stored_records(KIOSK)
        assert sorted(r.id for r in held) == sorted(ids)  # each once
        assert [r.seq for r in held] == list(range(1, N + 1))
        assert {r["id"] for r in check.records("acked")} == set(ids)
        wait_until(lambda: set(watch.acked_ids()) >= set(ids), 30, "the watch heard every ack")
        early = [sorted(missing) for _, missing in watch.results() if missing]
        assert not early, f"{len(early)} acks named records central did not hold yet: {early[:3]}"
    finally:
        client.stop()
        collector.stop()
        watch.stop()
        check.close()
        reader.close()
        at_ack.close()
