"""Rolling a release out in rings: canary kiosks, then an office, then everything.

Theory of operation
-------------------
A rollout (table ``rollouts``) names a published release and its rings, each a superset
of the one before:

    ring 0  the canary kiosks (``--canary K``, one or more)
    ring 1  those and every kiosk of ``--office O`` (skipped when no office is given)
    ring 2  every kiosk central knows (enrolled or heard from)

A kiosk in a ring the rollout has reached *should* run the release
(:func:`desired_versions`; the alert rule "software version behind" compares it with what
the kiosk reports). :func:`tick`, run periodically by central (and by
``aps-central rollout tick``), judges the current ring from the kiosks' heartbeats
(:func:`central.fleet.health.health_rows`):

- a kiosk is **done** when it reports ``agent_version`` equal to the release and its update
  is not on trial; **failed** when its ``update`` names the release and says
  ``rolled-back``, ``failed`` or ``inconsistent``;
- the failure rate (failed / kiosks in the ring) above ``max_failure_rate`` **stops** the
  rollout by itself (state ``stopped``, the reason audited; the kiosks already updated keep
  the release, nothing more is asked of anyone); ``rollout resume`` goes on after a look;
- every kiosk of the ring done, or the ring's soak time over without too many failures,
  **advances** to the next ring; past the last ring the rollout is ``done``.

Every change of a rollout (start, pause, resume, abort, advance, stop) writes an audit row
in the same transaction (central/audit.py). Only one rollout is active (running, paused or
stopped) at a time; ``abort`` ends it and its kiosks are no longer asked for the release
(an earlier finished rollout's version is what they should run again).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from central import CentralError, audit
from central.fleet.health import KioskHealth, StatusSource, health_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'paused', 'stopped', 'aborted', 'done')),
    ring INTEGER NOT NULL,
    canary TEXT NOT NULL,
    office TEXT,
    soak_s REAL NOT NULL,
    max_failure_rate REAL NOT NULL,
    created_at REAL NOT NULL,
    ring_started_at REAL NOT NULL,
    reason TEXT
);
"""

ACTIVE = ("running", "paused", "stopped")
LAST_RING = 2
RING_NAMES = {0: "canary", 1: "office", 2: "all"}
FAILED_UPDATE_STATES = frozenset({"rolled-back", "failed", "inconsistent"})
ON_TRIAL_STATES = frozenset({"restarting", "checking"})


class RolloutError(CentralError):
    pass


@dataclass(frozen=True, kw_only=True)
class Rollout:
    id: int
    version: str
    state: str
    ring: int
    canary: tuple[str, ...]
    office: str | None
    soak_s: float
    max_failure_rate: float
    created_at: float
    ring_started_at: float
    reason: str | None


@contextlib.contextmanager
def _tx(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, on an autocommit connection (central's) or a default one:
    the rollout's change and its audit row commit together or not at all."""
    if conn.in_transaction:
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    audit.ensure_schema(conn)


def _rollout(row: tuple[Any, ...]) -> Rollout:
    return Rollout(
        id=row[0],
        version=row[1],
        state=row[2],
        ring=row[3],
        canary=tuple(json.loads(row[4])),
        office=row[5],
        soak_s=row[6],
        max_failure_rate=row[7],
        created_at=row[8],
        ring_started_at=row[9],
        reason=row[10],
    )


_COLUMNS = (
    "id, version, state, ring, canary, office, soak_s, max_failure_rate, created_at,"
    " ring_started_at, reason"
)


def rollouts(conn: sqlite3.Connection) -> list[Rollout]:
    try:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM rollouts ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # never rolled anything out
        return []
    return [_rollout(r) for r in rows]


def active(conn: sqlite3.Connection) -> Rollout | None:
    found = [r for r in rollouts(conn) if r.state in ACTIVE]
    return found[-1] if found else None


def ring_members(rollout: Rollout, ring: int, fleet: Iterable[KioskHealth]) -> set[str]:
    """The kiosks of ``ring`` (cumulative: ring 1 holds ring 0's)."""
    kiosks = [h for h in fleet if h.registry != "revoked"]
    members = set(rollout.canary)
    if ring >= 1 and rollout.office:
        members |= {h.kiosk for h in kiosks if h.office == rollout.office}
    if ring >= 2:
        members |= {h.kiosk for h in kiosks}
    return members


def outcome(h: KioskHealth, version: str) -> str:
    """``done``, ``failed`` or ``pending`` for one kiosk and the release."""
    update = h.update or {}
    if update.get("version") == version and update.get("state") in FAILED_UPDATE_STATES:
        return "failed"
    if h.agent_version == version and update.get("state") not in ON_TRIAL_STATES:
        return "done"
    return "pending"


def desired_versions(conn: sqlite3.Connection) -> dict[str, str]:
    """kiosk -> the release it should run, for every kiosk a rollout has reached.

    Rollouts in order, later ones overriding; an aborted rollout asks nothing; a finished
    one covers every kiosk known now (a kiosk enrolled later should run it too).
    """
    fleet = health_rows(conn)
    out: dict[str, str] = {}
    for r in rollouts(conn):
        if r.state == "aborted":
            continue
        ring = LAST_RING if r.state == "done" else r.ring
        for kiosk in ring_members(r, ring, fleet):
            out[kiosk] = r.version
    return out


def start(
    conn: sqlite3.Connection,
    version: str,
    *,
    actor: str,
    canary: Iterable[str],
    office: str | None,
    soak_s: float,
    max_failure_rate: float,
    now: float | None = None,
) -> Rollout:
    canary = tuple(dict.fromkeys(canary))
    if not canary:
        raise RolloutError("--canary: name at least one kiosk to take the release first")
    if not 0 <= max_failure_rate < 1:
        raise RolloutError("--max-failure-rate: expected 0 to 0.99 (0.2 stops at 20% failed)")
    if soak_s < 0:
        raise RolloutError("--soak: expected seconds >= 0")
    ensure_schema(conn)
    with _tx(conn):
        running = active(conn)
        if running is not None:
            raise RolloutError(
                f"rollout {running.id} of {running.version} is {running.state}: abort it "
                "(`aps-central rollout abort`) or let it finish first"
            )
        at = time.time() if now is None else now
        cur = conn.execute(
            "INSERT INTO rollouts (version, state, ring, canary, office, soak_s,"
            " max_failure_rate, created_at, ring_started_at) VALUES (?, 'running', 0, ?, ?, ?,"
            " ?, ?, ?) RETURNING id",
            (version, json.dumps(list(canary)), office, soak_s, max_failure_rate, at, at),
        )
        rid = int(cur.fetchone()[0])
        audit.record(
            conn,
            actor,
            "rollout.start",
            f"release:{version}",
            {
                "rollout": rid,
                "canary": list(canary),
                "office": office,
                "soak_s": soak_s,
                "max_failure_rate": max_failure_rate,
            },
            now=at,
        )
    got = active(conn)
    assert got is not None
    return got


def _set(
    conn: sqlite3.Connection,
    r: Rollout,
    *,
    actor: str,
    action: str,
    state: str,
    ring: int | None = None,
    reason: str | None = None,
    now: float,
    fresh_soak: bool = False,
) -> None:
    """One change of a rollout and its audit row (the caller's transaction)."""
    new_ring = r.ring if ring is None else ring
    started = now if new_ring != r.ring or fresh_soak else r.ring_started_at
    conn.execute(
        "UPDATE rollouts SET state = ?, ring = ?, ring_started_at = ?, reason = ? WHERE id = ?",
        (state, new_ring, started, reason, r.id),
    )
    audit.record(
        conn,
        actor,
        action,
        f"release:{r.version}",
        {
            "rollout": r.id,
            "state": state,
            "ring": RING_NAMES.get(new_ring, new_ring),
            "reason": reason,
        },
        now=now,
    )


def change(conn: sqlite3.Connection, what: str, *, actor: str, now: float | None = None) -> Rollout:
    """``pause``, ``resume`` or ``abort`` the active rollout."""
    at = time.time() if now is None else now
    with _tx(conn):
        r = active(conn)
        if r is None:
            raise RolloutError("no rollout is active: `aps-central rollout status` lists them")
        if what == "pause":
            if r.state != "running":
                raise RolloutError(f"rollout {r.id} is {r.state}, not running")
            _set(conn, r, actor=actor, action="rollout.pause", state="paused", now=at)
        elif what == "resume":
            if r.state not in ("paused", "stopped"):
                raise RolloutError(f"rollout {r.id} is {r.state}: only paused or stopped resume")
            # a fresh soak for the ring; the failures seen stay visible in the status
            _set(
                conn,
                r,
                actor=actor,
                action="rollout.resume",
                state="running",
                now=at,
                fresh_soak=True,
            )
        elif what == "abort":
            _set(conn, r, actor=actor, action="rollout.abort", state="aborted", now=at)
        else:
            raise RolloutError(f"{what!r}: expected pause, resume or abort")
    return next(x for x in rollouts(conn) if x.id == r.id)


def ring_counts(r: Rollout, ring: int, fleet: list[KioskHealth]) -> dict[str, Any]:
    members = ring_members(r, ring, fleet)
    by_kiosk = {h.kiosk: h for h in fleet}
    outcomes = {
        k: (outcome(by_kiosk[k], r.version) if k in by_kiosk else "pending") for k in members
    }
    failed = sorted(k for k, o in outcomes.items() if o == "failed")
    done = sorted(k for k, o in outcomes.items() if o == "done")
    return {
        "ring": RING_NAMES[ring],
        "kiosks": len(members),
        "done": len(done),
        "failed": failed,
        "pending": sorted(k for k, o in outcomes.items() if o == "pending"),
        "failure_rate": (len(failed) / len(members)) if members else 0.0,
    }


def tick(
    conn: sqlite3.Connection,
    *,
    now: float | None = None,
    actor: str = "rollout",
    status: StatusSource | None = None,
) -> str | None:
    """Judge the running rollout's ring once: stop, advance, finish, or nothing (None).

    ``status``: where the kiosks' status rows are, when not in ``conn``'s file (the
    PostgreSQL store): the heartbeats' update state decides each kiosk's outcome."""
    at = time.time() if now is None else now
    r = active(conn)
    if r is None or r.state != "running":
        return None
    fleet = health_rows(conn, status)
    counts = ring_counts(r, r.ring, fleet)
    with _tx(conn):
        if counts["failure_rate"] > r.max_failure_rate:
            reason = (
                f"{len(counts['failed'])} of {counts['kiosks']} kiosks of ring "
                f"{counts['ring']} failed ({', '.join(counts['failed'][:5])}): above "
                f"{r.max_failure_rate:.0%}"
            )
            _set(
                conn, r, actor=actor, action="rollout.stop", state="stopped", reason=reason, now=at
            )
            return "stopped"
        all_done = counts["kiosks"] > 0 and counts["done"] == counts["kiosks"]
        soaked = at - r.ring_started_at >= r.soak_s
        if not (all_done or soaked):
            return None
        nxt = r.ring + 1
        if nxt == 1 and not r.office:
            nxt = 2
        if nxt > LAST_RING:
            _set(conn, r, actor=actor, action="rollout.done", state="done", now=at)
            return "done"
        _set(conn, r, actor=actor, action="rollout.advance", state="running", ring=nxt, now=at)
        return f"advanced to {RING_NAMES[nxt]}"


def rollout_status(
    conn: sqlite3.Connection, status: StatusSource | None = None
) -> list[dict[str, Any]]:
    """Every rollout, newest first, with its current ring's counts (for CLI and console)."""
    fleet = health_rows(conn, status)
    out = []
    for r in reversed(rollouts(conn)):
        item: dict[str, Any] = {
            "id": r.id,
            "version": r.version,
            "state": r.state,
            "ring": RING_NAMES[r.ring],
            "canary": list(r.canary),
            "office": r.office,
            "soak_s": r.soak_s,
            "max_failure_rate": r.max_failure_rate,
            "created_at": r.created_at,
            "ring_started_at": r.ring_started_at,
            "reason": r.reason,
        }
        if r.state in ACTIVE:
            item["current"] = ring_counts(r, r.ring, fleet)
        out.append(item)
    return out


def kiosks_to_update(
    conn: sqlite3.Connection, status: StatusSource | None = None
) -> Mapping[str, str]:
    """kiosk -> version for the running rollout's ring, kiosks not done nor failed yet:
    whom an ``update`` job should go to (the jobs transport, when merged)."""
    r = active(conn)
    if r is None or r.state != "running":
        return {}
    fleet = health_rows(conn, status)
    counts = ring_counts(r, r.ring, fleet)
    return {k: r.version for k in counts["pending"]}


#: How long an ``update`` job may wait for its kiosk (offline, or a session in progress).
UPDATE_JOB_DEADLINE_S = 24 * 3600


def manifest_path(version: str) -> str:
    """The manifest's path on central's API; the kiosk joins it to its ``central_url``."""
    return f"/v1/releases/{version}/manifest.json"


def dispatch_jobs(
    conn: sqlite3.Connection,
    *,
    actor: str = "rollout",
    now: float | None = None,
    status: StatusSource | None = None,
) -> list[str]:
    """Queue an ``update`` job for each kiosk of the running ring that has none for this
    release since the rollout started (one order per kiosk and rollout: a kiosk that
    failed is judged, not ordered again). Returns the kiosks ordered."""
    from central.fleet import jobs

    at = time.time() if now is None else now
    r = active(conn)
    if r is None or r.state != "running":
        return []
    wanted = kiosks_to_update(conn, status)
    if not wanted:
        return []
    jobs.ensure_schema(conn)
    have = {
        kiosk
        for kiosk, args in conn.execute(
            "SELECT kiosk, args FROM jobs WHERE kind = 'update' AND created_at >= ?",
            (r.created_at,),
        )
        if json.loads(args).get("version") == r.version
    }
    ordered = sorted(set(wanted) - have)
    if ordered:
        jobs.create(
            conn,
            "update",
            kiosks=ordered,
            args={"version": r.version, "manifest_url": manifest_path(r.version)},
            deadline_s=UPDATE_JOB_DEADLINE_S,
            actor=actor,
            now=at,
        )
    return ordered
