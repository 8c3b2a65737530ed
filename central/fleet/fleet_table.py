"""The fleet at a glance, as text: the table, the summary line and the JSON objects that
``aps-central fleet`` prints (docs/fleet.md). Pure: rows and "now" in, strings out.

The table is one line per kiosk and never wider than :data:`TABLE_WIDTH` columns: the kiosk
and office columns are as wide as their longest value up to a cap (longer values are cut
with ``…``), the devices column counts the working ones (the reasons name the others), the
reasons take what is left of the line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central.fleet.health import DEVICE_OK_STATES, KioskHealth, OverallState
from central.humanize import age

TABLE_WIDTH = 120
SORT_KEYS = ("kiosk", "office", "state", "heard", "queue")

#: Worst first: the order ``--sort state`` uses and the summary line counts in.
STATE_ORDER = (
    OverallState.INCONSISTENT,
    OverallState.OFFLINE,
    OverallState.DEGRADED,
    OverallState.UPDATING,
    OverallState.NEVER_SEEN,
    OverallState.REVOKED,
    OverallState.OPERATIONAL,
)
#: States in which a kiosk serves no citizen (the ``down`` field of ``--json``).
DOWN_STATES = frozenset(
    {
        OverallState.OFFLINE,
        OverallState.NEVER_SEEN,
        OverallState.REVOKED,
        OverallState.INCONSISTENT,
    }
)


@dataclass(frozen=True, kw_only=True)
class FleetRow:
    """One kiosk as listed: its health, its state at "now" and why."""

    health: KioskHealth
    state: OverallState
    reasons: tuple[str, ...]
    duplicate_identity: tuple[tuple[str, ...], ...] = ()


def when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def devices_count(devices: Mapping[str, Mapping[str, Any]]) -> str:
    """``3/4 ok``: how many devices work (the reasons name the others); ``-`` for none."""
    if not devices:
        return "-"
    ok = sum(1 for dev in devices.values() if str(dev.get("state", "")) in DEVICE_OK_STATES)
    return f"{ok}/{len(devices)} ok"


def devices_summary(devices: Mapping[str, Mapping[str, Any]]) -> str:
    """``4 ok``, or the faulted ones: ``printer:paper_out`` (``+2 ok`` when others work)."""
    if not devices:
        return "-"
    bad = [
        f"{name}:{dev.get('state') or 'unknown'}"
        for name, dev in sorted(devices.items())
        if str(dev.get("state", "")) not in DEVICE_OK_STATES
    ]
    ok = len(devices) - len(bad)
    if not bad:
        return f"{ok} ok"
    return ",".join(bad) + (f" +{ok} ok" if ok else "")


def sort_rows(rows: Iterable[FleetRow], key: str, now: float) -> list[FleetRow]:
    rank = {s: i for i, s in enumerate(STATE_ORDER)}
    keyed: dict[str, Any] = {
        "kiosk": lambda r: r.health.kiosk,
        "office": lambda r: (r.health.office or "\uffff", r.health.kiosk),
        "state": lambda r: (rank[r.state], r.health.kiosk),
        # longest silent first, never heard at the very top
        "heard": lambda r: (r.health.last_heard_at or float("-inf"), r.health.kiosk),
        # largest backlog first
        "queue": lambda r: (-(r.health.queued or 0), r.health.kiosk),
    }
    return sorted(rows, key=keyed[key])


def summary_line(rows: Sequence[FleetRow]) -> str:
    counts = Counter(r.state for r in rows)
    parts = [f"{counts[s]} {s.value}" for s in STATE_ORDER if counts[s]]
    noun = "kiosk" if len(rows) == 1 else "kiosks"
    return f"{len(rows)} {noun}" + (": " + ", ".join(parts) if parts else "")


def reasons_of(row: FleetRow) -> list[str]:
    extra = ["two boxes use one identity"] if row.duplicate_identity else []
    return [*row.reasons, *extra]


def render_table(rows: Sequence[FleetRow], now: float, width: int = TABLE_WIDTH) -> list[str]:
    """The header and one line per kiosk, each at most ``width`` characters."""
    kw = min(max([5, *(len(r.health.kiosk) for r in rows)]), 20)
    ow = min(max([6, *(len(r.health.office or "-") for r in rows)]), 16)
    fixed = [
        ("KIOSK", kw),
        ("OFFICE", ow),
        ("STATE", 12),
        ("HEARD", 5),
        ("QUEUE", 5),
        ("OLDEST", 6),
        ("DEVICES", 7),
        ("VERSION", 8),
    ]
    used = sum(w for _, w in fixed) + len(fixed)  # one space after each column
    rw = max(10, width - used)
    header = " ".join(f"{name:<{w}}" for name, w in fixed) + " REASONS"
    lines = [header[:width]]
    for r in rows:
        h = r.health
        heard = None if h.last_heard_at is None else now - h.last_heard_at
        cells = [
            _cut(h.kiosk, kw),
            _cut(h.office or "-", ow),
            r.state.value,
            age(heard),
            "-" if h.queued is None else str(h.queued),
            age(h.oldest_queued_s),
            devices_count(h.devices),
            _cut(h.agent_version or "-", 8),
        ]
        text = " ".join(f"{c:<{w}}" for c, (_, w) in zip(cells, fixed, strict=True))
        reasons = "; ".join(reasons_of(r)) or "-"
        lines.append((text + " " + _cut(reasons, rw)).rstrip()[:width])
    return lines


def row_json(row: FleetRow, now: float) -> dict[str, Any]:
    """One kiosk for scripts (``--json``): the state, the reasons and what they rest on."""
    h = row.health
    heard = h.last_heard_at
    return {
        "kiosk": h.kiosk,
        "office": h.office,
        "slot": h.slot,
        "location": h.location,
        "registry": h.registry,
        "state": row.state.value,
        "reasons": reasons_of(row),
        "down": row.state in DOWN_STATES,
        "presence": h.presence,
        "presence_at": h.presence_at,
        "last_heartbeat_at": h.heartbeat_at,
        "last_heard_at": heard,
        "seconds_since_heard": None if heard is None else round(now - heard),
        "queued": h.queued,
        "oldest_queued_s": h.oldest_queued_s,
        "disk_free_bytes": h.disk_free_bytes,
        "uptime_s": h.uptime_s,
        "agent_version": h.agent_version,
        "catalogue_version": h.catalogue_version,
        "config_version": h.config_version,
        "clock_offset_s": h.clock_offset_s,
        "last_error": h.last_error,
        "devices": {k: dict(v) for k, v in h.devices.items()},
        "update": dict(h.update) if h.update is not None else None,
        "duplicate_identity": [list(p) for p in row.duplicate_identity],
    }
