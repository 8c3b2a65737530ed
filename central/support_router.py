"""The support router's thread in ``aps-central run``.

Every ``[support] route_every_s`` it runs one :func:`central.support.route_pending`
round on its own back-office connection: new support records are projected,
help requests are given to whoever is on duty (or answered with the
hotline), and due notifications are sent. One round's failure (a locked
database, a notifier bug) is logged and the next round tries again; the
requests stay in the database either way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from central import backoffice_db, support
from central.notify import Notifier

log = logging.getLogger("aps.central.support")


class SupportRouter:
    def __init__(
        self,
        database: Path,
        notifier: Notifier | None,
        settings: support.SupportSettings,
        *,
        every_s: float = 2.0,
    ) -> None:
        self.database = database
        self.notifier = notifier
        self.settings = settings
        self.every_s = every_s
        self.stop_event = threading.Event()
        self.rounds = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="support-router", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        conn = backoffice_db.connect(self.database)
        log.info(
            "support router started; notifier: %s",
            "none" if self.notifier is None else self.notifier.describe(),
        )
        try:
            while not self.stop_event.is_set():
                self.round(conn)
                self.stop_event.wait(self.every_s)
        finally:
            conn.close()

    def round(self, conn: sqlite3.Connection) -> support.RouteReport | None:
        try:
            report = support.route_pending(conn, self.notifier, settings=self.settings)
        except Exception:
            log.exception("support routing round failed (retried next round)")
            return None
        finally:
            self.rounds += 1
        if report.assigned or report.no_one_on_duty or report.notified or report.notify_failures:
            log.info(
                "support: %d new, %d assigned, %d no one on duty, %d notified, %d notify "
                "failures (%d given up)",
                report.projected,
                report.assigned,
                report.no_one_on_duty,
                report.notified,
                report.notify_failures,
                report.gave_up,
            )
        return report
