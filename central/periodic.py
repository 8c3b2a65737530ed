"""A thread of ``aps-central run`` that does one round of work every few seconds.

The support router (:mod:`central.support_router`) and the alert engine
(:mod:`central.fleet.alert_watch`) share this shape: their own thread and their own
back-office connection (so ingest never waits for them), one :meth:`PeriodicRounds.round`
every ``every_s`` seconds, and a round that fails is logged while the next one tries again.
:meth:`PeriodicRounds.stop` wakes the thread at once rather than after the interval.

A subclass sets :attr:`~PeriodicRounds.thread_name` and :attr:`~PeriodicRounds.what`,
and implements :meth:`~PeriodicRounds.round` (and :meth:`~PeriodicRounds.started`, the
line logged when the thread starts).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from typing import ClassVar

from central import backoffice_db


class PeriodicRounds(ABC):
    thread_name: ClassVar[str]  # the thread's name, as seen in a stack dump
    what: ClassVar[str]  # names the work in the log: "<what> round failed ..."
    log: ClassVar[logging.Logger]

    def __init__(self, database: backoffice_db.Target, *, every_s: float) -> None:
        self.database = database
        self.every_s = every_s
        self.stop_event = threading.Event()
        self.rounds = 0  # rounds run by the thread, failed ones included
        self._thread: threading.Thread | None = None

    @abstractmethod
    def round(self, conn: sqlite3.Connection) -> object:
        """One round of work on the thread's connection."""

    def started(self) -> str:
        """The line logged when the thread starts."""
        return f"{self.what} started, every {self.every_s:g} s"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        conn = backoffice_db.connect(self.database)
        self.log.info("%s", self.started())
        try:
            while not self.stop_event.is_set():
                self.run_round(conn)
                self.stop_event.wait(self.every_s)
        finally:
            conn.close()

    def run_round(self, conn: sqlite3.Connection) -> None:
        """One :meth:`round` as the thread runs it: a failure is logged, never raised."""
        try:
            self.round(conn)
        except Exception:
            self.log.exception("%s round failed (retried next round)", self.what)
        finally:
            self.rounds += 1
