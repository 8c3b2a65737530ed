"""central.periodic: the round-every-few-seconds thread shared by the support router and
the alert engine, run for real on a SQLite file."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from central import backoffice_db
from central.fleet.alert_watch import AlertSettings, AlertWatch
from central.periodic import PeriodicRounds
from central.support import SupportSettings
from central.support_router import SupportRouter
from tests.waiting import wait_until

log = logging.getLogger("aps.test.periodic")


class Flaky(PeriodicRounds):
    """Fails its first round, then writes one row per round."""

    thread_name = "test-flaky"
    what = "flaky work"
    log = log

    def round(self, conn: sqlite3.Connection) -> None:
        if self.rounds == 0:
            raise RuntimeError("the first round breaks")
        conn.execute("CREATE TABLE IF NOT EXISTS done (n INTEGER)")
        conn.execute("INSERT INTO done VALUES (?)", (self.rounds,))


def _done(db: Path) -> int:
    conn = backoffice_db.connect(db)
    try:
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'done'").fetchone()
        return 0 if has is None else int(conn.execute("SELECT COUNT(*) FROM done").fetchone()[0])
    finally:
        conn.close()


def test_a_failed_round_is_logged_and_the_next_one_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "central.db"
    worker = Flaky(db, every_s=0.01)
    with caplog.at_level(logging.INFO, logger=log.name):
        worker.start()
        try:
            wait_until(lambda: _done(db) >= 2, what="two rounds after the failed one")
        finally:
            worker.stop()
    assert worker.rounds >= 3  # the failed round counts
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == ["flaky work round failed (retried next round)"]
    assert failed[0].exc_info is not None
    assert "flaky work started, every 0.01 s" in caplog.messages


def test_stop_wakes_a_thread_waiting_for_its_next_round(tmp_path: Path) -> None:
    worker = Flaky(tmp_path / "central.db", every_s=3600.0)
    worker.start()
    wait_until(lambda: worker.rounds >= 1, what="the first round")
    worker.stop(timeout_s=20.0)
    assert worker._thread is not None and not worker._thread.is_alive()


def test_the_alert_engine_and_the_support_router_run_as_periodic_rounds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "central.db"
    watch = AlertWatch(db, AlertSettings(), None, every_s=0.01)
    router = SupportRouter(db, None, SupportSettings(hotline="1900 1234"), every_s=0.01)
    with caplog.at_level(logging.INFO):
        for worker in (watch, router):
            worker.start()
        try:
            wait_until(lambda: watch.rounds >= 2 and router.rounds >= 2, what="rounds of both")
        finally:
            for worker in (watch, router):
                worker.stop()
    for worker in (watch, router):
        assert worker._thread is not None and not worker._thread.is_alive()
    assert "alert engine started, every 0.01 s; notifier: none" in caplog.messages
    assert "support router started; notifier: none" in caplog.messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
