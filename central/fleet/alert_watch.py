"""The alert engine's adapter: read the database, apply the engine's actions, notify.

Theory of operation
-------------------
One round (:meth:`AlertWatch.round`, every ``[alerts] evaluate_every_s`` on its own thread
and its own connection, so ingest never waits for it; the thread is a
:class:`central.periodic.PeriodicRounds`):

1. **evaluate**: read the rules (:class:`~central.fleet.alert_rules.RuleBook`) and what is
   observed now (:func:`~central.fleet.alert_sources.observe`) without any lock; then, in
   one ``BEGIN IMMEDIATE`` transaction, read the open alerts and the candidates, run the
   pure :func:`~central.fleet.alert_engine.evaluate` and write its actions
   (:func:`~central.fleet.alerts.apply`). Reading the alerts and writing them in one
   transaction means a concurrent acknowledgement is either seen by the engine or waits
   for it: never lost. The write lock is held for that short step only, so the collector's
   commits are not held up by the observation queries.
2. **notify**, after the commit and outside any transaction: every alert whose
   ``notify_due`` is set and due is sent through the notifier (escalations also through
   the escalation notifier); a success records ``notified_at`` and ``notify_count``, a
   failure records the error and the next attempt (exponential backoff, capped). The alert's
   own state is never touched by sending, and a send whose alert changed meanwhile (acked,
   escalated) records nothing stale: the update is conditional on the event still due.

A round that fails (a locked database, a bug) is logged and the next round tries again.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from central import backoffice_db
from central.fleet import alert_engine as engine
from central.fleet import alerts
from central.fleet.alert_rules import RuleBook
from central.fleet.alert_sources import DesiredVersions, RecordSignals, observe
from central.fleet.health import StatusSource
from central.notify import FanoutNotifier, Notification, Notifier, NotifyError
from central.periodic import PeriodicRounds

log = logging.getLogger("aps.central.alerts")

SEND_BATCH = 50
ERROR_CHARS = 300


@dataclass(frozen=True, kw_only=True)
class AlertSettings:
    rules: Mapping[str, Mapping[str, Any]] | None = None  # [alerts.rules.<kind>]
    backoff_s: float = 5.0
    backoff_max_s: float = 300.0


@dataclass(frozen=True, kw_only=True)
class RoundReport:
    opened: int = 0
    cleared: int = 0
    escalated: int = 0
    sent: int = 0
    failed: int = 0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def notification(alert: alerts.Alert, event: str, now: float) -> Notification:
    """The notification of one alert event (``opened``, ``renotified``, ...)."""
    return Notification(
        id=f"alert:{alert.id}:{event}:{alert.notify_count + 1}",
        event=f"alert-{event}",
        request=alert.id,
        lookup_code=None,
        office=alert.office,
        kiosk=alert.kiosk,
        staff_id=None,
        staff_name=None,
        staff_email=None,
        message=alert.detail,
        received_at=_iso(alert.opened_at),
        sent_at=_iso(now),
        extra={
            "alert": {
                "id": alert.id,
                "kind": alert.kind,
                "severity": alert.severity,
                "state": alert.state,
                "opened_at": _iso(alert.opened_at),
                "escalated": alert.escalated_at is not None,
            }
        },
    )


def evaluate_round(
    conn: sqlite3.Connection,
    settings: AlertSettings,
    now: float,
    *,
    desired_versions: DesiredVersions | None = None,
    observations: list[engine.Observation] | None = None,
    records: RecordSignals | None = None,
    status: StatusSource | None = None,
) -> list[engine.Action]:
    """Step 1 of a round, in one transaction; ``observations`` replaces reading them."""
    alerts.ensure_schema(conn)
    # Observing reads many tables: done before taking the write lock, so the collector's
    # commits never wait for it. The alerts themselves are read under the lock.
    book = RuleBook.load(conn, settings.rules)
    seen = (
        observations
        if observations is not None
        else observe(
            conn, book, now, desired_versions=desired_versions, records=records, status=status
        )
    )
    conn.execute("BEGIN IMMEDIATE")
    try:
        view = [a.engine_view() for a in alerts.open_alerts(conn)]
        actions = engine.evaluate(seen, view, book.rule, now, candidates=alerts.candidates(conn))
        alerts.apply(conn, actions, now)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return actions


def _backoff(attempts: int, settings: AlertSettings) -> float:
    return float(min(settings.backoff_s * 2 ** max(attempts - 1, 0), settings.backoff_max_s))


def send_due(
    conn: sqlite3.Connection,
    notifier: Notifier | None,
    settings: AlertSettings,
    now: float,
    *,
    escalation: Notifier | None = None,
) -> tuple[int, int]:
    """Step 2 of a round: send what is due; returns (sent, failed)."""
    sent = failed = 0
    for alert in alerts.due_notifications(conn, now, SEND_BATCH):
        due = alert.notify_due
        if due is None:
            continue
        if notifier is None:
            conn.execute(
                "UPDATE alerts SET notify_due = NULL, notify_next_at = NULL,"
                " notify_error = 'no notifier configured ([notify])'"
                " WHERE id = ? AND notify_due = ?",
                (alert.id, due),
            )
            continue
        target: Notifier = notifier
        if due == "escalated" and escalation is not None:
            target = FanoutNotifier([notifier, escalation])
        try:
            target.send(notification(alert, due, now))
        except NotifyError as exc:
            failed += 1
            attempts = alert.notify_attempts + 1
            error = str(exc)[:ERROR_CHARS]
            conn.execute(
                "UPDATE alerts SET notify_attempts = ?, notify_next_at = ?, notify_error = ?"
                " WHERE id = ? AND notify_due = ?",
                (attempts, now + _backoff(attempts, settings), error, alert.id, due),
            )
            log.warning(
                "alert %d (%s %s): notification %s failed (attempt %d, retried): %s",
                alert.id,
                alert.kiosk,
                alert.kind,
                due,
                attempts,
                error,
            )
            continue
        sent += 1
        conn.execute(
            "UPDATE alerts SET notified_at = ?, notify_count = notify_count + 1,"
            " notify_due = NULL, notify_next_at = NULL, notify_attempts = 0, notify_error = NULL"
            " WHERE id = ? AND notify_due = ?",
            (now, alert.id, due),
        )
    return sent, failed


class RecordStore(RecordSignals, StatusSource, Protocol):
    """The records' store as the alert engine uses it: gaps, dead letters and the kiosks'
    status rows, then closed."""

    def close(self) -> None: ...


class AlertWatch(PeriodicRounds):
    """The alert engine's thread in ``aps-central run``."""

    thread_name = "alert-engine"
    what = "alert engine"
    log = log

    def __init__(
        self,
        database: backoffice_db.Target,
        settings: AlertSettings,
        notifier: Notifier | None,
        *,
        escalation: Notifier | None = None,
        desired_versions: DesiredVersions | None = None,
        every_s: float = 10.0,
        records_store: Callable[[], RecordStore] | None = None,
    ) -> None:
        super().__init__(database, every_s=every_s)
        self.settings = settings
        self.notifier = notifier
        self.escalation = escalation
        self.desired_versions = desired_versions
        #: [central] store = "postgresql": opens the records' store, in this thread, at
        #: the first round (and again after a round that lost it); None: the same file.
        self.records_store = records_store
        self._records: RecordStore | None = None

    def _signals(self) -> RecordStore | None:
        if self.records_store is None:
            return None
        if self._records is None:
            self._records = self.records_store()
        return self._records

    def _lost_records(self) -> None:
        if self._records is not None:
            with contextlib.suppress(Exception):  # already broken: reopened next round
                self._records.close()
            self._records = None

    def stop(self, timeout_s: float = 30.0) -> None:
        super().stop(timeout_s)
        self._lost_records()  # the thread has ended: its records store goes with it

    def started(self) -> str:
        notifier = "none" if self.notifier is None else self.notifier.describe()
        return f"alert engine started, every {self.every_s:g} s; notifier: {notifier}"

    def round(self, conn: sqlite3.Connection, now: float | None = None) -> RoundReport | None:
        at = time.time() if now is None else now
        try:
            records = self._signals()
            actions = evaluate_round(
                conn,
                self.settings,
                at,
                desired_versions=self.desired_versions,
                records=records,
                status=records,
            )
        except Exception:
            log.exception("alert evaluation failed (retried next round)")
            self._lost_records()
            actions = []
        try:
            sent, failed = send_due(
                conn, self.notifier, self.settings, at, escalation=self.escalation
            )
        except Exception:
            log.exception("sending alert notifications failed (retried next round)")
            sent = failed = 0
        report = RoundReport(
            opened=sum(isinstance(a, engine.Open) for a in actions),
            cleared=sum(isinstance(a, engine.Clear) for a in actions),
            escalated=sum(isinstance(a, engine.Escalate) for a in actions),
            sent=sent,
            failed=failed,
        )
        for a in actions:
            if isinstance(a, engine.Open):
                log.warning("ALERT %s %s at kiosk %s: %s", a.severity, a.kind, a.kiosk, a.detail)
            elif isinstance(a, engine.Clear):
                log.info("alert %d cleared (%s)", a.alert_id, a.reason)
        return report


def watch_from_config(cfg: Any, desired_versions: DesiredVersions | None = None) -> AlertWatch:
    """An :class:`AlertWatch` from a :class:`central.config.CentralConfig`."""
    from central.notify import SmtpNotifier

    n = cfg.notify
    escalation: Notifier | None = None
    if cfg.alerts.escalate_to and n.smtp_host is not None and n.smtp_sender is not None:
        escalation = SmtpNotifier(
            n.smtp_host,
            n.smtp_port,
            n.smtp_sender,
            to=cfg.alerts.escalate_to,
            username=n.smtp_username,
            password=None if n.smtp_password is None else n.smtp_password.get_secret_value(),
            starttls=n.smtp_starttls,
            timeout_s=n.smtp_timeout_s,
        )
    records: Callable[[], RecordStore] | None = None
    if cfg.central.store == "postgresql":

        def records() -> RecordStore:
            from central.store_pg import PostgresStore  # psycopg only when it is used

            return PostgresStore.open_readonly(cfg.central.postgresql_dsn.get_secret_value())

    return AlertWatch(
        backoffice_db.target_of(cfg.central),  # the console reads its alerts there
        AlertSettings(rules=cfg.alerts.rules, backoff_s=n.backoff_s, backoff_max_s=n.backoff_max_s),
        n.notifier(),
        escalation=escalation,
        desired_versions=desired_versions,
        every_s=cfg.alerts.evaluate_every_s,
        records_store=records,
    )
