"""What the console's pages show, read from central's database within a user's scope.

The fleet comes from :func:`central.fleet.health.health_rows` with the overall state
derived at read time (:func:`~central.fleet.health.overall_state`). A kiosk's office is
the registry's, else the office it claimed (``kiosk_offices``) or filed dossiers for.
Alerts, health history and jobs come from ``central.fleet.alerts``, ``health_history``
and ``central.fleet.jobs`` when those modules are present in this build; until then the
pages say so instead of failing.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central import support
from central.fleet.health import KioskHealth, OverallState, Thresholds, health_rows, overall_state
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
        if at is None:
            return "chưa bao giờ"
        s = max(0.0, self.now - at)
        if s < 120:
            return f"{s:.0f} giây trước"
        if s < 7200:
            return f"{s / 60:.0f} phút trước"
        if s < 172800:
            return f"{s / 3600:.0f} giờ trước"
        return f"{s / 86400:.0f} ngày trước"


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


# -- the other helpers' modules (present or not) -----------------------------------------


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def health_history(conn: sqlite3.Connection, kiosk: str) -> list[dict[str, Any]] | None:
    """The kiosk's last day of heartbeats (None: this build has no health history)."""
    health = _module("central.fleet.health")
    fn = getattr(health, "health_history", None)
    if fn is None:
        return None
    import time

    rows = fn(conn, kiosk, time.time() - 86400)
    return [dict(r) if isinstance(r, dict) else _as_dict(r) for r in rows][-50:]


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "as_dict"):
        out: dict[str, Any] = obj.as_dict()
        return out
    if hasattr(obj, "__dataclass_fields__"):
        return {k: getattr(obj, k) for k in obj.__dataclass_fields__}
    return dict(obj)


def alerts_available() -> bool:
    return _module("central.fleet.alerts") is not None


def _alert_office(conn: sqlite3.Connection, alert: dict[str, Any]) -> str | None:
    if alert.get("office"):
        return str(alert["office"])
    kiosk = alert.get("kiosk")
    if not kiosk:
        return None
    for h in health_rows(conn):
        if h.kiosk == kiosk:
            return _office(conn, h)
    return support.office_of_kiosk(conn, str(kiosk))


def list_alerts(conn: sqlite3.Connection, scope: Scope, office: str | None) -> list[dict[str, Any]]:
    alerts = _module("central.fleet.alerts")
    if alerts is None:
        return []
    out = []
    for a in alerts.list_alerts(conn):
        item = _as_dict(a)
        where = _alert_office(conn, item)
        if scope.sees(where) and (office is None or where == office):
            out.append({**item, "office": where})
    return out


def alerts_of_kiosk(conn: sqlite3.Connection, kiosk: str) -> list[dict[str, Any]] | None:
    alerts = _module("central.fleet.alerts")
    if alerts is None:
        return None
    return [_as_dict(a) for a in alerts.list_alerts(conn) if _as_dict(a).get("kiosk") == kiosk]


def get_alert(conn: sqlite3.Connection, scope: Scope, alert_id: str) -> dict[str, Any] | None:
    alerts = _module("central.fleet.alerts")
    if alerts is None:
        return None
    try:
        found = alerts.get_alert(conn, alert_id)
    except (LookupError, ValueError):
        return None
    if found is None:
        return None
    item = _as_dict(found)
    where = _alert_office(conn, item)
    if not scope.sees(where):
        return None
    events = getattr(alerts, "alert_events", None)
    history = [_as_dict(e) for e in events(conn, alert_id)] if events else []
    return {**item, "office": where, "events": history}


def acknowledge_alert(conn: sqlite3.Connection, alert_id: str, actor: str, comment: str) -> None:
    alerts = _module("central.fleet.alerts")
    if alerts is not None:
        alerts.acknowledge(conn, alert_id, actor=actor, comment=comment)


def jobs_of_kiosk(conn: sqlite3.Connection, kiosk: str) -> list[dict[str, Any]] | None:
    jobs = _module("central.fleet.jobs")
    fn = getattr(jobs, "jobs_of_kiosk", None) or getattr(jobs, "list_jobs", None)
    if fn is None:
        return None
    try:
        rows = fn(conn, kiosk=kiosk)
    except TypeError:
        rows = [j for j in fn(conn) if _as_dict(j).get("kiosk") == kiosk]
    return [_as_dict(j) for j in rows]
