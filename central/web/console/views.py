"""What the console's pages show, read from central's database within a user's scope.

The fleet comes from :func:`central.fleet.health.health_rows` with the overall state
derived at read time (:func:`~central.fleet.health.overall_state`). A kiosk's office is
the registry's, else the office it claimed (``kiosk_offices``) or filed dossiers for.
Alerts (:mod:`central.fleet.alerts`) and jobs (:mod:`central.fleet.jobs`) carry their
office; a kiosk's health history (:func:`central.fleet.health.health_history`) is shown
with the overall state each sample meant at its time.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central import support
from central.fleet import alerts, jobs
from central.fleet.health import (
    HealthSample,
    KioskHealth,
    OverallState,
    Thresholds,
    health_history,
    health_rows,
    overall_state,
    sample_health,
)
from central.humanize import VIETNAMESE, age
from central.web.console.policy import Scope
from sync.dossier_status import STATES

#: Colours follow the state, and every badge also says the state in words.
STATE_ORDER = [
    OverallState.INCONSISTENT,
    OverallState.OFFLINE,
    OverallState.DEGRADED,
    OverallState.UPDATING,
    OverallState.NEVER_SEEN,
    OverallState.REVOKED,
    OverallState.OPERATIONAL,
]


@dataclass(frozen=True, kw_only=True)
class KioskView:
    health: KioskHealth
    office: str | None
    state: OverallState
    reasons: list[str]
    now: float

    @property
    def kiosk(self) -> str:
        return self.health.kiosk

    def ago(self, at: float | None) -> str:
        """``12 phút trước``: how long before the page's ``now`` (``central.humanize``)."""
        if at is None:
            return "chưa bao giờ"
        return f"{age(self.now - at, units=VIETNAMESE)} trước"


def when(at: float | None) -> str:
    if at is None:
        return "—"
    return datetime.fromtimestamp(at, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _office(conn: sqlite3.Connection, h: KioskHealth) -> str | None:
    return h.office or support.office_of_kiosk(conn, h.kiosk)


def fleet_rows(
    conn: sqlite3.Connection, scope: Scope, now: float, limits: Thresholds
) -> list[KioskView]:
    out = []
    for h in health_rows(conn):
        office = _office(conn, h)
        if not scope.sees(office):
            continue
        state, reasons = overall_state(h, now, limits)
        out.append(KioskView(health=h, office=office, state=state, reasons=reasons, now=now))
    return out


def kiosk_row(
    conn: sqlite3.Connection, kiosk: str, scope: Scope, now: float, limits: Thresholds
) -> KioskView | None:
    for row in fleet_rows(conn, scope, now, limits):
        if row.kiosk == kiosk:
            return row
    return None


def by_office(rows: list[KioskView]) -> list[tuple[str, list[KioskView], Counter[str]]]:
    groups: dict[str, list[KioskView]] = {}
    for r in rows:
        groups.setdefault(r.office or "—", []).append(r)
    out = []
    for office in sorted(groups):
        kiosks = sorted(groups[office], key=lambda r: (STATE_ORDER.index(r.state), r.kiosk))
        out.append((office, kiosks, Counter(r.state.value for r in kiosks)))
    return out


def state_counts(rows: list[KioskView]) -> list[tuple[OverallState, int]]:
    counts = Counter(r.state for r in rows)
    return [(s, counts.get(s, 0)) for s in STATE_ORDER]


def office_names(conn: sqlite3.Connection, scope: Scope) -> list[str]:
    if scope.office is not None:
        return [scope.office]
    names: set[str] = set()
    for h in health_rows(conn):
        office = _office(conn, h)
        if office:
            names.add(office)
    names.update(r[0] for r in conn.execute("SELECT DISTINCT office FROM kiosk_offices"))
    return sorted(names)


def dossier_states() -> list[str]:
    return list(STATES)


def error_text(exc: Exception) -> str:
    message = getattr(exc, "message", None)
    return str(message if message else exc)


# -- health history, alerts, jobs -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class HistoryRow:
    sample: HealthSample
    state: OverallState
    reasons: list[str]


def health_history_rows(
    conn: sqlite3.Connection, row: KioskView, limits: Thresholds, *, hours: float = 24
) -> list[HistoryRow]:
    """The kiosk's samples of the last ``hours``, newest first, each with its state then."""
    samples = health_history(conn, row.kiosk, row.now - hours * 3600, limit=200)
    out = []
    for sample in reversed(samples):
        state, reasons = overall_state(sample_health(sample, row.health), sample.at, limits)
        out.append(HistoryRow(sample=sample, state=state, reasons=reasons))
    return out


ALERT_STATES = alerts.STATES
ATTENTION = ("open", "acknowledged")
SEVERITIES = ("critical", "warning", "info")


def list_alerts(
    conn: sqlite3.Connection,
    scope: Scope,
    *,
    office: str | None = None,
    kiosk: str | None = None,
    state: str | None = None,
    severity: str | None = None,
    limit: int = 200,
) -> list[alerts.Alert]:
    """Alerts in the user's scope (staff: their office's only), newest first."""
    wanted = scope.office or office
    return alerts.list_alerts(
        conn,
        offices=None if wanted is None else [wanted],
        kiosk=kiosk,
        states=ATTENTION if state is None else [state],
        severities=None if severity is None else [severity],
        limit=limit,
    )


def get_alert(conn: sqlite3.Connection, scope: Scope, alert_id: str) -> alerts.Alert | None:
    """The alert with this id when the user may see it (else None: answered 404)."""
    if not alert_id.isdigit() or len(alert_id) > 18:
        return None
    try:
        found = alerts.get_alert(conn, int(alert_id))
    except alerts.AlertNotFound:
        return None
    return found if scope.sees(found.office) else None


def alert_history(conn: sqlite3.Connection, alert_id: int) -> list[alerts.AlertEvent]:
    return alerts.alert_events(conn, alert_id)


def jobs_of_kiosk(conn: sqlite3.Connection, row: KioskView) -> list[dict[str, Any]]:
    return [j.to_json_dict() for j in jobs.list_jobs(conn, kiosk=row.kiosk, limit=20, now=row.now)]
