"""The support router's thread in ``aps-central run``.

Every ``[support] route_every_s`` it runs one :func:`central.support.route_pending`
round on its own back-office connection (SQLite or PostgreSQL, as ``[central]
store`` says): new support records are projected, help requests are given to
whoever is on duty (or answered with the hotline), and due notifications are
sent. One round's failure (a locked database, a notifier bug) is logged and the
next round tries again; the requests stay in the database either way. The
thread is a :class:`central.periodic.PeriodicRounds`.
"""

from __future__ import annotations

import logging
import sqlite3

from central import backoffice_db, support
from central.notify import Notifier
from central.periodic import PeriodicRounds

log = logging.getLogger("aps.central.support")


class SupportRouter(PeriodicRounds):
    thread_name = "support-router"
    what = "support routing"
    log = log

    def __init__(
        self,
        database: backoffice_db.Target,
        notifier: Notifier | None,
        settings: support.SupportSettings,
        *,
        every_s: float = 2.0,
    ) -> None:
        super().__init__(database, every_s=every_s)
        self.notifier = notifier
        self.settings = settings

    def started(self) -> str:
        notifier = "none" if self.notifier is None else self.notifier.describe()
        return f"support router started; notifier: {notifier}"

    def round(self, conn: sqlite3.Connection) -> support.RouteReport:
        report = support.route_pending(conn, self.notifier, settings=self.settings)
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
