"""Heartbeats at central: the status row per kiosk and its bounded history.

Theory of operation
-------------------
A kiosk sends a heartbeat every minute (and at once when a device changes state). Central
keeps two things of it, in the same transaction as the rest of the collector's batch:

* the **status row** (``kiosks``, one per kiosk): the last heartbeat as received (its text,
  not encoded again; the older ``devices`` column is left empty, readers take the devices
  from the heartbeat), when it
  arrived (``last_heartbeat_at``, central's clock), the kiosk's own ``ts`` of it
  (``heartbeat_ts``) and the clock offset measured from the two (``clock_skew_s`` = arrival
  minus ``ts``: positive when the kiosk's clock is behind, the same sign the records' skew
  uses; once a kiosk's heartbeats carry ``ts``, records no longer overwrite it: a backlog
  drained hours late is delivery delay, not a wrong clock);
* the **history** (``kiosk_health_history``): at most one sample per kiosk per
  :attr:`HistorySettings.every_s`, at most :attr:`HistorySettings.max_rows` per kiosk and
  nothing older than :attr:`HistorySettings.max_days`. The row count is trimmed for the
  kiosk each time a sample is added, the age for every kiosk at most once per
  :data:`AGE_PRUNE_EVERY_S` (so a kiosk that went silent does not keep its rows for ever).

Several heartbeats of one kiosk in one batch are **coalesced**: only the last one is
written (the status row is "the latest", and the history keeps one sample per interval
anyway), so a flood of heartbeats costs one row write per kiosk per batch.

A heartbeat never sets a kiosk's presence back to ``online`` once it has one: presence comes
from the status messages (``online`` on connect, ``offline`` on a clean stop or as the Last
Will). A heartbeat that reaches central after the kiosk's clean-stop ``offline`` (another
collector of a shared subscription, a later batch) therefore cannot make it look online;
:func:`central.fleet.health.overall_state` compares the kiosk's own timestamps of the two
(``state_ts`` and ``heartbeat_ts``) as well as the arrival times.

Nothing here writes the records, streams or dead-letter tables: heartbeats never grow the
dossier store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.schemas import parse_datetime

__all__ = [
    "AGE_PRUNE_EVERY_S",
    "HISTORY_SCHEMA",
    "KIOSK_COLUMNS",
    "HealthSample",
    "Heartbeat",
    "HistorySettings",
    "health_history",
    "kiosk_ts",
    "prune_history",
    "write_heartbeats",
    "write_statuses",
]

#: Columns the heartbeat path adds to ``kiosks`` (central/store.py ADDED_COLUMNS).
KIOSK_COLUMNS = {"heartbeat_ts": "REAL", "state_ts": "REAL", "history_at": "REAL"}

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS kiosk_health_history (
    kiosk TEXT NOT NULL,
    at REAL NOT NULL,
    queued INTEGER,
    oldest_queued_s REAL,
    disk_free_bytes INTEGER,
    clock_skew_s REAL,
    agent_version TEXT,
    devices TEXT,
    last_error TEXT,
    PRIMARY KEY (kiosk, at)
) WITHOUT ROWID;
"""

AGE_PRUNE_EVERY_S = 3600.0
_CHUNK = 500  # SQLite host parameters per IN (...) list


@dataclass(frozen=True, kw_only=True)
class HistorySettings:
    """How much health history central keeps (``[fleet]`` in central.toml)."""

    every_s: float = 300.0
    max_rows: int = 2016  # a week at one sample every five minutes
    max_days: float = 7.0


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """One kiosk's heartbeat as the store writes it (the last of a batch)."""

    kiosk: str
    body: Mapping[str, Any]
    text: str | None = None  # the body as received, when the collector has it


@dataclass(frozen=True, kw_only=True)
class HealthSample:
    """One history row: what a heartbeat said, at central's time ``at``."""

    kiosk: str
    at: float
    queued: int | None = None
    oldest_queued_s: float | None = None
    disk_free_bytes: int | None = None
    clock_offset_s: float | None = None  # kiosk clock minus central's
    agent_version: str | None = None
    devices: Mapping[str, str] = field(default_factory=dict)  # device -> state
    last_error: str | None = None


def kiosk_ts(body: Mapping[str, Any]) -> float | None:
    """The message's own ``ts`` (the kiosk's clock) as epoch seconds, or None."""
    ts = body.get("ts")
    if not isinstance(ts, str):
        return None
    parsed = parse_datetime(ts)
    return None if parsed is None else parsed.timestamp()


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _device_states(body: Mapping[str, Any]) -> dict[str, str]:
    devices = body.get("devices")
    if not isinstance(devices, dict):
        return {}
    return {
        str(name): str(dev.get("state", ""))
        for name, dev in devices.items()
        if isinstance(dev, dict)
    }


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def coalesce(beats: Iterable[Heartbeat]) -> list[Heartbeat]:
    """The last heartbeat of each kiosk, in the order kiosks were first seen."""
    last: dict[str, Heartbeat] = {}
    for b in beats:
        last[b.kiosk] = b
    return list(last.values())


def _history_marks(conn: sqlite3.Connection, kiosks: Sequence[str]) -> dict[str, float | None]:
    marks: dict[str, float | None] = {}
    for i in range(0, len(kiosks), _CHUNK):
        part = kiosks[i : i + _CHUNK]
        marks_sql = ",".join("?" * len(part))
        marks.update(
            conn.execute(
                f"SELECT kiosk, history_at FROM kiosks WHERE kiosk IN ({marks_sql})", part
            ).fetchall()
        )
    return marks


def write_heartbeats(
    conn: sqlite3.Connection,
    beats: Iterable[Heartbeat],
    now: float,
    settings: HistorySettings,
) -> int:
    """Write the status rows and history samples of a batch's heartbeats (inside its
    transaction); returns the number of history rows added."""
    latest = coalesce(beats)
    if not latest:
        return 0
    marks = _history_marks(conn, [b.kiosk for b in latest])
    rows = []
    samples = []
    for b in latest:
        body = b.body
        ts = kiosk_ts(body)
        skew = None if ts is None else round(now - ts, 3)
        queued = _int(body.get("queued"))
        rows.append(
            (
                b.kiosk,
                now,
                ts,
                queued,
                str(body.get("oldest_queued") or "") or None,
                b.text if b.text is not None else _dumps(body),
                skew,
                None if skew is None else now,
            )
        )
        mark = marks.get(b.kiosk)
        if mark is None or now - mark >= settings.every_s or now < mark:
            last_error, version = body.get("last_error"), body.get("agent_version")
            samples.append(
                (
                    b.kiosk,
                    now,
                    queued,
                    _num(body.get("oldest_queued_s")),
                    _int(body.get("disk_free_bytes")),
                    skew,
                    version if isinstance(version, str) else None,
                    _dumps(_device_states(body)),
                    last_error if isinstance(last_error, str) else None,
                )
            )
    # A heartbeat sets presence only for a kiosk that has none yet (see the module doc).
    conn.executemany(
        "INSERT INTO kiosks (kiosk, last_heartbeat_at, heartbeat_ts, queued, oldest_queued,"
        " devices, heartbeat, clock_skew_s, clock_skew_at, state, state_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, ?8, 'online', ?2)"
        " ON CONFLICT (kiosk) DO UPDATE SET last_heartbeat_at = excluded.last_heartbeat_at,"
        " heartbeat_ts = excluded.heartbeat_ts, queued = excluded.queued,"
        " oldest_queued = excluded.oldest_queued, devices = NULL,"
        " heartbeat = excluded.heartbeat,"
        " clock_skew_s = coalesce(excluded.clock_skew_s, kiosks.clock_skew_s),"
        " clock_skew_at = coalesce(excluded.clock_skew_at, kiosks.clock_skew_at),"
        " state = coalesce(kiosks.state, 'online'),"
        " state_at = coalesce(kiosks.state_at, excluded.state_at)",
        rows,
    )
    if samples:
        conn.executemany(
            "INSERT INTO kiosk_health_history (kiosk, at, queued, oldest_queued_s,"
            " disk_free_bytes, clock_skew_s, agent_version, devices, last_error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kiosk, at) DO UPDATE SET"
            " queued = excluded.queued, oldest_queued_s = excluded.oldest_queued_s,"
            " disk_free_bytes = excluded.disk_free_bytes, clock_skew_s = excluded.clock_skew_s,"
            " agent_version = excluded.agent_version, devices = excluded.devices,"
            " last_error = excluded.last_error",
            samples,
        )
        conn.executemany(
            "UPDATE kiosks SET history_at = ? WHERE kiosk = ?", [(now, s[0]) for s in samples]
        )
        # At most max_rows per kiosk: drop what is older than its max_rows-th newest row.
        conn.executemany(
            "DELETE FROM kiosk_health_history WHERE kiosk = ?1 AND at < ("
            " SELECT at FROM kiosk_health_history WHERE kiosk = ?1"
            " ORDER BY at DESC LIMIT 1 OFFSET ?2)",
            [(s[0], settings.max_rows - 1) for s in samples],
        )
    return len(samples)


def write_statuses(
    conn: sqlite3.Connection, statuses: Iterable[tuple[str, Mapping[str, Any]]], now: float
) -> None:
    """A kiosk's online/offline status: the presence, when it arrived and the kiosk's ``ts``."""
    conn.executemany(
        "INSERT INTO kiosks (kiosk, state, state_at, state_ts) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (kiosk) DO UPDATE SET state = excluded.state,"
        " state_at = excluded.state_at, state_ts = excluded.state_ts",
        [(kiosk, body["state"], now, kiosk_ts(body)) for kiosk, body in statuses],
    )


def prune_history(conn: sqlite3.Connection, now: float, settings: HistorySettings) -> int:
    """Delete every kiosk's samples older than ``max_days``; returns how many went."""
    cur = conn.execute(
        "DELETE FROM kiosk_health_history WHERE at < ?", (now - settings.max_days * 86400.0,)
    )
    return cur.rowcount


def health_history(
    conn: sqlite3.Connection, kiosk: str, since: float | None = None, *, limit: int = 10_000
) -> list[HealthSample]:
    """The kiosk's samples at or after ``since`` (epoch seconds), oldest first; read-only.

    A database without the history table (central never ran there) has none.
    """
    try:
        cur = conn.execute(
            "SELECT at, queued, oldest_queued_s, disk_free_bytes, clock_skew_s, agent_version,"
            " devices, last_error FROM kiosk_health_history WHERE kiosk = ? AND at >= ?"
            " ORDER BY at DESC LIMIT ?",
            (kiosk, since if since is not None else float("-inf"), limit),
        )
        rows = cur.fetchall()
    except sqlite3.OperationalError:
        return []
    out = []
    for at, queued, oldest, disk, skew, version, devices, last_error in reversed(rows):
        try:
            states = json.loads(devices) if devices else {}
        except ValueError:
            states = {}
        out.append(
            HealthSample(
                kiosk=kiosk,
                at=at,
                queued=queued,
                oldest_queued_s=oldest,
                disk_free_bytes=disk,
                clock_offset_s=None if skew is None else -skew,
                agent_version=version,
                devices=states if isinstance(states, dict) else {},
                last_error=last_error,
            )
        )
    return out
