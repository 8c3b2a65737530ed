"""Fleet alerts in central's database: the tables, what the console reads, acknowledging.

Theory of operation
-------------------
``alerts`` has one row per alert, open or past; at most one row per (kiosk, kind) is open
or acknowledged at a time (a partial unique index holds the engine to it). ``alert_events``
is the history of each alert: ``opened``, ``renotified``, ``escalated``, ``acknowledged``,
``cleared`` (and ``cause-gone`` / ``cause-back`` while it fades), each with its actor and
time. ``alert_candidates`` holds causes seen but not yet present for the rule's
``open_after_s``. The engine (:mod:`central.fleet.alert_engine`) decides; :func:`apply`
writes its actions inside the caller's transaction.

Notification state rides on the alert row: ``notify_due`` names the event waiting to be
sent (``opened``, ``renotified``, ``escalated``, ``cleared``), with ``notify_next_at`` and
the last ``notify_error``. The sender (:mod:`central.fleet.alert_watch`) sends after the
commit and records the outcome; a failed send is retried and changes nothing else, so a
notifier outage never loses or alters an alert.

The functions the console and the CLI call (:func:`list_alerts`, :func:`get_alert`,
:func:`alert_events`, :func:`acknowledge`, :func:`alert_counts`) take any connection to
central's database; the readers never create anything (no table yet: nothing to list).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from central import audit
from central.fleet import alert_engine as engine

__all__ = [
    "STATES",
    "Alert",
    "AlertError",
    "AlertEvent",
    "AlertNotFound",
    "acknowledge",
    "alert_counts",
    "alert_events",
    "apply",
    "candidates",
    "due_notifications",
    "ensure_schema",
    "get_alert",
    "list_alerts",
    "open_alerts",
]

STATES = ("open", "acknowledged", "cleared")
COMMENT_CHARS = 1000
DETAIL_CHARS = 300

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kiosk TEXT NOT NULL,
    office TEXT,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'cleared')),
    detail TEXT NOT NULL,
    opened_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    cause_gone_at REAL,
    cleared_at REAL,
    acked_by TEXT,
    acked_at REAL,
    ack_comment TEXT,
    notified_at REAL,
    notify_count INTEGER NOT NULL DEFAULT 0,
    escalated_at REAL,
    notify_due TEXT,
    notify_next_at REAL,
    notify_attempts INTEGER NOT NULL DEFAULT 0,
    notify_error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (kiosk, kind)
    WHERE state IN ('open', 'acknowledged');
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS alerts_notify ON alerts (notify_next_at) WHERE notify_due IS NOT NULL;
CREATE TABLE IF NOT EXISTS alert_events (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    alert INTEGER NOT NULL REFERENCES alerts (id),
    event TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS alert_events_alert ON alert_events (alert, n);
CREATE TABLE IF NOT EXISTS alert_candidates (
    kiosk TEXT NOT NULL,
    kind TEXT NOT NULL,
    office TEXT,
    since REAL NOT NULL,
    detail TEXT NOT NULL,
    PRIMARY KEY (kiosk, kind)
);
"""

ENGINE = "central:alerts"


class AlertError(ValueError):
    """An alert change was refused; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AlertNotFound(AlertError):
    pass


@dataclass(frozen=True, kw_only=True)
class Alert:
    id: int
    kiosk: str
    office: str | None
    kind: str
    severity: str
    state: str
    detail: str
    opened_at: float
    last_seen_at: float
    cause_gone_at: float | None
    cleared_at: float | None
    acked_by: str | None
    acked_at: float | None
    ack_comment: str | None
    notified_at: float | None
    notify_count: int
    escalated_at: float | None
    notify_due: str | None
    notify_next_at: float | None
    notify_attempts: int
    notify_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def engine_view(self) -> engine.OpenAlert:
        return engine.OpenAlert(
            id=self.id,
            kiosk=self.kiosk,
            kind=self.kind,
            office=self.office,
            severity=self.severity,
            state=self.state,
            opened_at=self.opened_at,
            cause_gone_at=self.cause_gone_at,
            notified_at=self.notified_at,
            escalated_at=self.escalated_at,
            detail=self.detail,
            notify_due=self.notify_due,
        )


@dataclass(frozen=True, kw_only=True)
class AlertEvent:
    n: int
    alert: int
    event: str
    at: float
    actor: str
    detail: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = ", ".join(f.name for f in Alert.__dataclass_fields__.values())


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def _has_tables(conn: sqlite3.Connection) -> bool:
    # PRAGMA table_info answers on both engines (pg_dialect reads PostgreSQL's catalogue).
    return conn.execute("PRAGMA table_info(alerts)").fetchone() is not None


def _alert(row: Sequence[Any]) -> Alert:
    return Alert(**dict(zip(Alert.__dataclass_fields__, row, strict=True)))


def _in(column: str, values: Iterable[str] | None, where: list[str], args: list[Any]) -> None:
    if values is None:
        return
    vals = list(values)
    if not vals:
        where.append("1 = 0")
        return
    where.append(f"{column} IN ({', '.join('?' * len(vals))})")
    args.extend(vals)


def list_alerts(
    conn: sqlite3.Connection,
    *,
    offices: Iterable[str] | None = None,
    kiosk: str | None = None,
    states: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
    severities: Iterable[str] | None = None,
    limit: int = 100,
) -> list[Alert]:
    """Alerts matching every filter given, newest first, at most ``limit``.

    ``states`` defaults to every state; the console passes ``("open", "acknowledged")`` for
    what needs attention. ``offices`` restricts to those offices (a staff member's scope).
    """
    if limit < 1 or limit > 10_000:
        raise AlertError("limit", f"{limit} is out of range; give 1 to 10000")
    states = None if states is None else list(states)
    for s in states or ():
        if s not in STATES:
            raise AlertError("state", f"{s!r} is not one of {', '.join(STATES)}")
    if not _has_tables(conn):
        return []
    where: list[str] = []
    args: list[Any] = []
    _in("office", offices, where, args)
    _in("state", states, where, args)
    _in("kind", kinds, where, args)
    _in("severity", severities, where, args)
    if kiosk is not None:
        where.append("kiosk = ?")
        args.append(kiosk)
    sql = f"SELECT {_COLUMNS} FROM alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    return [_alert(r) for r in conn.execute(sql, (*args, limit)).fetchall()]


def get_alert(conn: sqlite3.Connection, alert_id: int) -> Alert:
    """The alert, or :class:`AlertNotFound` naming the id."""
    row = None
    if _has_tables(conn):
        row = conn.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        raise AlertNotFound(
            "id", f"no alert {alert_id}; list them with `aps-central alerts --state open`"
        )
    return _alert(row)


def alert_events(conn: sqlite3.Connection, alert_id: int) -> list[AlertEvent]:
    """The alert's history, oldest first (empty for an unknown id)."""
    if not _has_tables(conn):
        return []
    rows = conn.execute(
        "SELECT n, alert, event, at, actor, detail FROM alert_events WHERE alert = ? ORDER BY n",
        (alert_id,),
    ).fetchall()
    return [
        AlertEvent(n=n, alert=a, event=e, at=at, actor=who, detail=d)
        for n, a, e, at, who, d in rows
    ]


def open_alerts(conn: sqlite3.Connection) -> list[Alert]:
    """Every open or acknowledged alert (the engine's input)."""
    if not _has_tables(conn):
        return []
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE state IN ('open', 'acknowledged') ORDER BY id"
    ).fetchall()
    return [_alert(r) for r in rows]


def due_notifications(conn: sqlite3.Connection, now: float, limit: int = 50) -> list[Alert]:
    """Alerts with a notification due at ``now``, the longest waiting first."""
    if not _has_tables(conn):
        return []
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE notify_due IS NOT NULL AND notify_next_at <= ?"
        " ORDER BY notify_next_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    return [_alert(r) for r in rows]


def candidates(conn: sqlite3.Connection) -> list[engine.Candidate]:
    if not _has_tables(conn):
        return []
    rows = conn.execute("SELECT kiosk, kind, office, since, detail FROM alert_candidates")
    return [
        engine.Candidate(kiosk=k, kind=kind, office=o, since=s, detail=d)
        for k, kind, o, s, d in rows.fetchall()
    ]


def _event(
    conn: sqlite3.Connection,
    alert_id: int,
    event: str,
    at: float,
    actor: str = ENGINE,
    detail: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO alert_events (alert, event, at, actor, detail) VALUES (?, ?, ?, ?, ?)",
        (alert_id, event, at, actor, detail),
    )


def acknowledge(
    conn: sqlite3.Connection,
    alert_id: int,
    *,
    actor: str,
    comment: str,
    now: float | None = None,
) -> Alert:
    """Acknowledge an open alert with a comment (audited, one transaction).

    It stays acknowledged while its cause lasts (no more re-notifications or escalation)
    and still clears by itself. Acknowledging an acknowledged or cleared alert is refused.
    ``conn`` is outside any transaction (autocommit, as :mod:`central.backoffice_db`).
    """
    at = time.time() if now is None else now
    text = comment.strip()
    if not text:
        raise AlertError("comment", "say what is being done, e.g. --comment 'paper refilled'")
    if len(text) > COMMENT_CHARS:
        raise AlertError("comment", f"{len(text)} characters; at most {COMMENT_CHARS}")
    if not actor or len(actor) > 100:
        raise AlertError("actor", "name who acknowledges (1 to 100 characters)")
    ensure_schema(conn)
    audit.ensure_schema(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        alert = get_alert(conn, alert_id)
        if alert.state != "open":
            raise AlertError(
                "state",
                f"alert {alert_id} is {alert.state}"
                + (f" (by {alert.acked_by})" if alert.state == "acknowledged" else "")
                + "; only an open alert can be acknowledged",
            )
        conn.execute(
            "UPDATE alerts SET state = 'acknowledged', acked_by = ?, acked_at = ?,"
            " ack_comment = ?, notify_due = NULL, notify_next_at = NULL WHERE id = ?",
            (actor, at, text, alert_id),
        )
        _event(conn, alert_id, "acknowledged", at, actor, text)
        audit.record(
            conn,
            actor,
            "alert.acknowledge",
            f"alert:{alert_id}",
            {"kiosk": alert.kiosk, "kind": alert.kind, "comment": text},
            now=at,
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return get_alert(conn, alert_id)


def alert_counts(conn: sqlite3.Connection) -> dict[str, Any]:
    """``{"state": {...}, "severity": {...}, "office": {...}, "kind": {...}}``.

    ``state`` counts every alert by state; the others count the alerts that need attention
    (open or acknowledged). An alert without an office counts under ``"-"``.
    """
    out: dict[str, Any] = {
        "state": dict.fromkeys(STATES, 0),
        "severity": {"critical": 0, "warning": 0, "info": 0},
        "office": {},
        "kind": {},
    }
    if not _has_tables(conn):
        return out
    for state, n in conn.execute("SELECT state, count(*) FROM alerts GROUP BY state"):
        out["state"][state] = n
    active = "WHERE state IN ('open', 'acknowledged')"
    for col in ("severity", "office", "kind"):
        rows = conn.execute(f"SELECT {col}, count(*) FROM alerts {active} GROUP BY {col}")
        for value, n in rows:
            out[col][value if value is not None else "-"] = n
    return out


def _short(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def apply(conn: sqlite3.Connection, actions: Iterable[engine.Action], now: float) -> list[int]:
    """Write the engine's actions inside the caller's transaction; returns new alert ids."""
    opened: list[int] = []
    for a in actions:
        if isinstance(a, engine.StartCandidate):
            conn.execute(
                "INSERT INTO alert_candidates (kiosk, kind, office, since, detail)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kiosk, kind) DO UPDATE SET"
                " office = excluded.office, since = excluded.since, detail = excluded.detail",
                (a.kiosk, a.kind, a.office, a.since, _short(a.detail)),
            )
        elif isinstance(a, engine.DropCandidate):
            conn.execute(
                "DELETE FROM alert_candidates WHERE kiosk = ? AND kind = ?", (a.kiosk, a.kind)
            )
        elif isinstance(a, engine.Open):
            cur = conn.execute(
                "INSERT INTO alerts (kiosk, office, kind, severity, state, detail, opened_at,"
                " last_seen_at, notify_due, notify_next_at)"
                " VALUES (?, ?, ?, ?, 'open', ?, ?, ?, 'opened', ?) RETURNING id",
                (a.kiosk, a.office, a.kind, a.severity, _short(a.detail), a.at, a.at, a.at),
            )
            alert_id = int(cur.fetchone()[0])
            opened.append(alert_id)
            _event(conn, alert_id, "opened", a.at, detail=_short(a.detail))
        elif isinstance(a, engine.Seen):
            conn.execute(
                "UPDATE alerts SET last_seen_at = ?, cause_gone_at = NULL, detail = ? WHERE id = ?",
                (a.at, _short(a.detail), a.alert_id),
            )
            if a.came_back:
                _event(conn, a.alert_id, "cause-back", a.at, detail=_short(a.detail))
        elif isinstance(a, engine.CauseGone):
            conn.execute("UPDATE alerts SET cause_gone_at = ? WHERE id = ?", (a.at, a.alert_id))
            _event(conn, a.alert_id, "cause-gone", a.at)
        elif isinstance(a, engine.Clear):
            # Tell whoever was told it opened; an alert never delivered needs no "cleared".
            conn.execute(
                "UPDATE alerts SET state = 'cleared', cleared_at = ?,"
                " cause_gone_at = coalesce(cause_gone_at, ?),"
                " notify_due = CASE WHEN notify_count > 0 THEN 'cleared' END,"
                " notify_next_at = CASE WHEN notify_count > 0 THEN ? END,"
                " notify_attempts = 0 WHERE id = ?",
                (a.at, a.at, a.at, a.alert_id),
            )
            _event(conn, a.alert_id, "cleared", a.at, detail=a.reason)
        elif isinstance(a, engine.Renotify):
            conn.execute(
                "UPDATE alerts SET notify_due = 'renotified', notify_next_at = ?,"
                " notify_attempts = 0 WHERE id = ? AND notify_due IS NULL",
                (a.at, a.alert_id),
            )
            _event(conn, a.alert_id, "renotified", a.at)
        elif isinstance(a, engine.Escalate):
            conn.execute(
                "UPDATE alerts SET escalated_at = ?, severity = ?, notify_due = 'escalated',"
                " notify_next_at = ?, notify_attempts = 0 WHERE id = ?",
                (a.at, a.severity, a.at, a.alert_id),
            )
            _event(conn, a.alert_id, "escalated", a.at, detail=f"severity {a.severity}")
    return opened
