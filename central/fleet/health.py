"""Each kiosk's health, and the one overall state an admin reads at a glance.

Theory of operation
-------------------
A kiosk's heartbeat updates one status row (``kiosks``, in central's store) and a bounded
history; its Last Will and clean shutdown set ``state`` to ``offline``. Nothing here is a
timer: whether a kiosk is *offline* is derived when the row is read, from the last time the
kiosk was heard and the thresholds in force at that moment, so an offline state can neither
be raised late nor stay raised after the kiosk is back.

:func:`overall_state` is pure: a :class:`KioskHealth` (what central last heard, with the
registry's view of the kiosk), "now" and :class:`Thresholds` in, an :class:`OverallState`
and the reasons out. The first matching rule wins, in this order:

1. ``revoked``: the registry revoked the kiosk (whatever it still sends);
2. ``never-seen``: enrolled, or known, but never heard from;
3. ``inconsistent``: its update and the rollback both failed (a technician is needed);
4. ``offline``: its last word was "offline" (Last Will or clean stop), or it has not been
   heard for longer than :attr:`Thresholds.offline_after_s`. "Last word" is judged on both
   clocks: the ``offline`` status arrived at or after the last heartbeat, or the kiosk's own
   ``ts`` of it is at or after the heartbeat's ``ts`` (a heartbeat sent before a clean stop
   but stored after it, by another collector or a later batch, does not revive the kiosk);
5. ``updating``: a software update is under way;
6. ``degraded``: a device faulted, a backlog older or larger than the limits, the clock
   off, or the disk low (each named in the reasons);
7. ``operational``.

:func:`health_rows` reads every kiosk the store heard from or the registry enrolled, on any
connection to central's database, never creating anything.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from central.fleet.heartbeats import HealthSample, health_history
from central.fleet.registry import registry_rows

__all__ = [
    "DEVICE_OK_STATES",
    "UPDATING_STATES",
    "HealthSample",
    "KioskHealth",
    "OverallState",
    "Thresholds",
    "health_history",
    "health_rows",
    "overall_state",
    "sample_health",
]


class OverallState(StrEnum):
    OPERATIONAL = "operational"
    DEGRADED = "degraded"
    OFFLINE = "offline"
    NEVER_SEEN = "never-seen"
    REVOKED = "revoked"
    UPDATING = "updating"
    INCONSISTENT = "inconsistent"


#: Device states that count as working (a printer near the end of its paper still prints,
#: but is reported as a reason; see :func:`overall_state`).
DEVICE_OK_STATES = frozenset({"ok", "idle", "ready", "connected"})
#: ``update.state`` values during which the kiosk counts as ``updating``.
UPDATING_STATES = frozenset({"downloading", "building", "switching", "restarting", "checking"})


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """What counts as offline or degraded (``[fleet]`` in central.toml)."""

    offline_after_s: float = 180.0  # three missed heartbeats at the default 60 s
    backlog_records: int = 200
    backlog_age_s: float = 3600.0
    clock_off_s: float = 120.0
    disk_low_bytes: int = 500 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class KioskHealth:
    """What central knows of one kiosk: the registry's entry and its last heartbeat."""

    kiosk: str
    office: str | None = None
    slot: int | None = None
    location: str | None = None
    registry: str = "unregistered"  # pending, active, revoked, or unregistered
    presence: str | None = None  # "online" / "offline": the kiosk's last status message
    presence_at: float | None = None  # when central stored that status
    heartbeat_at: float | None = None  # when central stored the last heartbeat
    presence_ts: float | None = None  # the status's own ts (the kiosk's clock)
    heartbeat_ts: float | None = None  # the last heartbeat's own ts (the kiosk's clock)
    queued: int | None = None
    oldest_queued_s: float | None = None
    disk_free_bytes: int | None = None
    uptime_s: float | None = None
    agent_version: str | None = None
    catalogue_version: str | None = None
    config_version: str | None = None
    clock_offset_s: float | None = None  # kiosk clock minus central's, last measured
    last_error: str | None = None
    devices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    update: Mapping[str, Any] | None = None

    @property
    def last_heard_at(self) -> float | None:
        heard = [t for t in (self.heartbeat_at, self.presence_at) if t is not None]
        return max(heard) if heard else None


def overall_state(
    h: KioskHealth, now: float, limits: Thresholds | None = None
) -> tuple[OverallState, list[str]]:
    """The kiosk's state at ``now`` and why (reasons are short English phrases)."""
    t = limits or Thresholds()
    if h.registry == "revoked":
        return OverallState.REVOKED, ["revoked in the registry"]
    heard = h.last_heard_at
    if heard is None:
        return OverallState.NEVER_SEEN, ["never heard from"]
    update_state = (h.update or {}).get("state")
    if update_state == "inconsistent":
        reason = (h.update or {}).get("reason") or "update and rollback both failed"
        return OverallState.INCONSISTENT, [str(reason)]
    silent = now - heard
    said_offline = (
        h.presence == "offline"
        and h.presence_at is not None
        and (
            h.heartbeat_at is None
            or h.presence_at >= h.heartbeat_at
            or (
                h.presence_ts is not None
                and h.heartbeat_ts is not None
                and h.presence_ts >= h.heartbeat_ts
            )
        )
    )
    if said_offline:
        return OverallState.OFFLINE, ["said offline"]
    if silent > t.offline_after_s:
        return OverallState.OFFLINE, [f"not heard for {silent:.0f} s"]
    if update_state in UPDATING_STATES:
        return OverallState.UPDATING, [f"update {update_state}"]
    reasons = list(_degraded_reasons(h, t))
    if reasons:
        return OverallState.DEGRADED, reasons
    return OverallState.OPERATIONAL, []


def _degraded_reasons(h: KioskHealth, t: Thresholds) -> Iterable[str]:
    for name, dev in sorted(h.devices.items()):
        state = str(dev.get("state", ""))
        if state not in DEVICE_OK_STATES:
            yield f"{name} {state or 'unknown'}"
    if h.queued is not None and h.queued > t.backlog_records:
        yield f"backlog {h.queued} records"
    if h.oldest_queued_s is not None and h.oldest_queued_s > t.backlog_age_s:
        yield f"oldest unsynced record {h.oldest_queued_s:.0f} s old"
    if h.clock_offset_s is not None and abs(h.clock_offset_s) > t.clock_off_s:
        yield f"clock off by {h.clock_offset_s:+.0f} s"
    if h.disk_free_bytes is not None and h.disk_free_bytes < t.disk_low_bytes:
        yield f"disk low ({h.disk_free_bytes // (1024 * 1024)} MiB free)"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _from_row(kiosk: str, row: Mapping[str, Any], registered: Mapping[str, Any]) -> KioskHealth:
    try:
        beat = json.loads(row["heartbeat"]) if row.get("heartbeat") else {}
    except ValueError:
        beat = {}
    beat = beat if isinstance(beat, dict) else {}
    catalogue = beat.get("catalogue") if isinstance(beat.get("catalogue"), dict) else {}
    devices = beat.get("devices") if isinstance(beat.get("devices"), dict) else {}
    update = beat.get("update") if isinstance(beat.get("update"), dict) else None
    queued = row.get("queued")
    return KioskHealth(
        kiosk=kiosk,
        office=registered.get("office"),
        slot=registered.get("slot"),
        location=registered.get("location"),
        registry=str(registered.get("registry") or "unregistered"),
        presence=row.get("state"),
        presence_at=row.get("state_at"),
        heartbeat_at=row.get("last_heartbeat_at"),
        presence_ts=row.get("state_ts"),
        heartbeat_ts=row.get("heartbeat_ts"),
        queued=queued if isinstance(queued, int) else None,
        oldest_queued_s=_number(beat.get("oldest_queued_s")),
        disk_free_bytes=beat.get("disk_free_bytes")
        if isinstance(beat.get("disk_free_bytes"), int)
        else None,
        uptime_s=_number(beat.get("uptime_s")),
        agent_version=beat.get("agent_version"),
        catalogue_version=(catalogue or {}).get("version"),
        config_version=beat.get("config_version"),
        # clock_skew_s is arrival minus the kiosk's time: the offset is its negative.
        clock_offset_s=None if row.get("clock_skew_s") is None else -row["clock_skew_s"],
        last_error=beat.get("last_error"),
        devices=devices or {},
        update=update,
    )


_COLUMNS = "kiosk, state, state_at, last_heartbeat_at, queued, heartbeat, clock_skew_s"
_ADDED = ", state_ts, heartbeat_ts"


def _status_rows(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    for columns in (_COLUMNS + _ADDED, _COLUMNS):  # a store of an older release lacks _ADDED
        try:
            cur = conn.execute(f"SELECT {columns} FROM kiosks")
        except sqlite3.OperationalError:  # a database central never opened as a store
            continue
        cols = [d[0] for d in cur.description]
        return {r[0]: dict(zip(cols, r, strict=True)) for r in cur.fetchall()}
    return {}


class StatusSource(Protocol):
    """Where the kiosks' status rows are when not in the fleet's SQLite file: the
    PostgreSQL store (``[central] store = "postgresql"``: the collectors write them there)."""

    def kiosk_status_rows(self, columns: str) -> tuple[list[str], list[tuple[Any, ...]]]: ...


def health_rows(conn: sqlite3.Connection, status: StatusSource | None = None) -> list[KioskHealth]:
    """Every kiosk heard from or enrolled, by kiosk id; read-only, on any connection.

    The registry is read from ``conn``; the status rows from ``status`` when given."""
    registered = registry_rows(conn)
    if status is not None:
        cols, fetched = status.kiosk_status_rows(_COLUMNS + _ADDED)
        rows = {r[0]: dict(zip(cols, r, strict=True)) for r in fetched}
    else:
        rows = _status_rows(conn)
    out = []
    no_entry: Mapping[str, Any] = {}
    for kiosk in sorted(set(rows) | set(registered)):
        row = rows.get(kiosk)
        entry = registered.get(kiosk, no_entry)
        if row is None:
            out.append(_from_row(kiosk, {}, entry))
        else:
            out.append(_from_row(kiosk, row, entry))
    return out


def sample_health(sample: HealthSample, entry: KioskHealth | None = None) -> KioskHealth:
    """A history sample as a :class:`KioskHealth` (heard at ``sample.at``), so that
    ``overall_state(sample_health(s), s.at)`` says what the kiosk's state was then.
    ``entry`` (its current row) lends the registry's fields."""
    return KioskHealth(
        kiosk=sample.kiosk,
        office=entry.office if entry else None,
        slot=entry.slot if entry else None,
        location=entry.location if entry else None,
        registry="active" if entry is None or entry.registry == "revoked" else entry.registry,
        presence="online",
        presence_at=sample.at,
        heartbeat_at=sample.at,
        queued=sample.queued,
        oldest_queued_s=sample.oldest_queued_s,
        disk_free_bytes=sample.disk_free_bytes,
        agent_version=sample.agent_version,
        clock_offset_s=sample.clock_offset_s,
        last_error=sample.last_error,
        devices={name: {"state": state} for name, state in sample.devices.items()},
    )
