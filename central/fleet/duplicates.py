"""Two boxes presenting one kiosk identity: detected from the kiosk's status messages.

Theory of operation
-------------------
The broker forces a kiosk's client id to its certificate's CN, so two boxes
with one certificate (a cloned SD card, a copied key) take the connection
from each other: each connect closes the other's, whose agent reconnects
after its backoff and closes the first again. Every connect publishes the
kiosk's ``online`` status with the agent's ``instance``
(``<run>.<box>``, :func:`sync.envelope.new_instance`): new at each agent
start, so the two boxes show two instances.

:class:`DuplicateDetector` (sans-I/O: status in, alert or None out) keeps,
per kiosk, the instances of its recent ``online`` statuses within
``window_s``. An alert is raised when an instance comes back online after
another instance was online since its own last ``online``: X, Y, X. That is
the ping-pong, and not:

- a reconnect after a network cut: X, X (one instance);
- a restart: X, Y (a new instance, and X never returns). Only ``online``
  statuses count: a Last Will (``offline``; on a takeover the broker sends
  the old connection's at once) or a clean ``offline`` in between, in
  whatever order it arrives, changes nothing.

Each (kiosk, pair of instances) alerts once per process (:meth:`DuplicateDetector.observe`);
every later alternation of the same pair is a sighting (:meth:`DuplicateDetector.sight`).
The store's ``identity_alerts`` table keeps one row per pair whatever the restarts, with
when it was first and last seen taking turns (``first_at``, ``last_at``, as the other
alert sources keep theirs): the ``duplicate-identity`` alert source reads ``last_at``, so
the alert stays while the boxes go on. Memory is bounded: at most ``max_kiosks`` kiosks
(least recently seen dropped) and ``HISTORY`` statuses each.

:class:`DuplicateWatch` is the collector's adapter: it feeds the status
messages of each committed batch to the detector, logs a WARNING naming both
instances, and records the alert (central/collector.py calls it once per
batch), on SQLite in the store's file, on PostgreSQL through the store's own
connection (the table comes from the back office's migrations, run at central's start).
``aps-central fleet`` shows ``duplicate_identity`` for such kiosks.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from central.store_pg import PgConn

log = logging.getLogger("aps.central.fleet")

HISTORY = 8
DEFAULT_WINDOW_S = 600.0
DEFAULT_MAX_KIOSKS = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS identity_alerts (
    kiosk TEXT NOT NULL,
    instance_a TEXT NOT NULL,
    instance_b TEXT NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL,
    PRIMARY KEY (kiosk, instance_a, instance_b)
);
"""


@dataclass(frozen=True, kw_only=True)
class DuplicateAlert:
    """Kiosk ``kiosk`` is online from two instances in turn (two boxes, one identity)."""

    kiosk: str
    instances: tuple[str, str]  # sorted
    at: float

    def describe(self) -> str:
        a, b = self.instances
        return (
            f"kiosk {self.kiosk}: two boxes use one identity (instances {a} and {b} take the "
            "broker connection from each other); revoke the kiosk's certificate and "
            "re-enrol the genuine box"
        )


@dataclass
class _Seen:
    online: deque[tuple[str, float]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    alerted: set[tuple[str, str]] = field(default_factory=set)


class DuplicateDetector:
    """Status messages in, :class:`DuplicateAlert` out (once per kiosk and pair)."""

    def __init__(
        self, *, window_s: float = DEFAULT_WINDOW_S, max_kiosks: int = DEFAULT_MAX_KIOSKS
    ) -> None:
        if window_s <= 0 or max_kiosks < 1:
            raise ValueError(
                f"window_s {window_s} and max_kiosks {max_kiosks}: both must be positive"
            )
        self.window_s = window_s
        self.max_kiosks = max_kiosks
        self._kiosks: OrderedDict[str, _Seen] = OrderedDict()

    def __len__(self) -> int:
        """How many kiosks are tracked (at most ``max_kiosks``)."""
        return len(self._kiosks)

    def history(self, kiosk: str) -> list[str]:
        """The instances of the kiosk's recent ``online`` statuses, oldest first."""
        seen = self._kiosks.get(kiosk)
        return [instance for instance, _ in seen.online] if seen else []

    def observe(
        self, kiosk: str, state: str, instance: str | None, now: float
    ) -> DuplicateAlert | None:
        """The alert, the first time this process sees a pair take turns; else None."""
        sighting = self.sight(kiosk, state, instance, now)
        return sighting[0] if sighting is not None and sighting[1] else None

    def sight(
        self, kiosk: str, state: str, instance: str | None, now: float
    ) -> tuple[DuplicateAlert, bool] | None:
        """Every alternation (X, Y, X) seen, and whether its pair is new to this process."""
        if state != "online" or not instance:
            return None
        seen = self._kiosks.get(kiosk)
        if seen is None:
            seen = self._kiosks[kiosk] = _Seen()
            while len(self._kiosks) > self.max_kiosks:
                self._kiosks.popitem(last=False)
        self._kiosks.move_to_end(kiosk)
        online = seen.online
        while online and now - online[0][1] > self.window_s:
            online.popleft()
        sighting = None
        # Instances online since this instance's previous "online", newest first.
        others: list[str] = []
        for previous, _ in reversed(online):
            if previous == instance:
                if others:
                    pair = (min(instance, others[0]), max(instance, others[0]))
                    new = pair not in seen.alerted
                    seen.alerted.add(pair)
                    sighting = (DuplicateAlert(kiosk=kiosk, instances=pair, at=now), new)
                break
            others.append(previous)
        online.append((instance, now))
        return sighting


def _has_last_at(conn: sqlite3.Connection) -> bool:
    return "last_at" in {row[1] for row in conn.execute("PRAGMA table_info(identity_alerts)")}


def record_alert(conn: sqlite3.Connection, alert: DuplicateAlert) -> bool:
    """Keep one row per (kiosk, pair), its ``last_at`` moved to this sighting; True if
    this pair is new to the store. A table from before ``last_at`` gets the column, its
    rows ``last_at = first_at``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA)
        if not _has_last_at(conn):
            conn.execute("ALTER TABLE identity_alerts ADD COLUMN last_at REAL")
            conn.execute("UPDATE identity_alerts SET last_at = first_at")
        new = _upsert(conn, alert)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return new


def _upsert(conn: Any, alert: DuplicateAlert) -> bool:
    """The row of ``alert``'s pair, inside the caller's transaction; True if it is new.

    ``conn`` answers ``execute(sql, args)`` with ``?`` placeholders: a sqlite3 connection
    or the PostgreSQL store's :class:`central.store_pg.PgConn`.
    """
    cur = conn.execute(
        "INSERT INTO identity_alerts"
        " (kiosk, instance_a, instance_b, first_at, last_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (alert.kiosk, *alert.instances, alert.at, alert.at),
    )
    new = bool(cur.rowcount == 1)
    if not new:
        conn.execute(
            # the later of the two (no scalar max(a, b) on PostgreSQL)
            "UPDATE identity_alerts SET last_at = CASE"
            " WHEN coalesce(last_at, first_at) > ? THEN coalesce(last_at, first_at)"
            " ELSE ? END WHERE kiosk = ? AND instance_a = ? AND instance_b = ?",
            (alert.at, alert.at, alert.kiosk, *alert.instances),
        )
    return new


def last_seen(conn: sqlite3.Connection) -> list[tuple[str, float, int]]:
    """(kiosk, when a pair of its boxes was last seen taking turns, how many pairs), for
    the alert source; a table from before ``last_at`` counts ``first_at``; no table: []."""
    try:
        last = "coalesce(last_at, first_at)" if _has_last_at(conn) else "first_at"
        rows = conn.execute(
            f"SELECT kiosk, max({last}), count(*) FROM identity_alerts GROUP BY kiosk"
        ).fetchall()
    except sqlite3.OperationalError:  # no alert ever recorded
        return []
    return [(str(k), float(at), int(n)) for k, at, n in rows]


def duplicate_identities(conn: sqlite3.Connection) -> dict[str, list[list[str]]]:
    """kiosk -> the pairs of instances seen taking turns (empty when the table is absent)."""
    try:
        rows = conn.execute(
            "SELECT kiosk, instance_a, instance_b FROM identity_alerts ORDER BY first_at"
        ).fetchall()
    except sqlite3.OperationalError:  # no alert ever recorded (read-only reports)
        return {}
    out: dict[str, list[list[str]]] = {}
    for kiosk, a, b in rows:
        out.setdefault(kiosk, []).append([a, b])
    return out


class DuplicateWatch:
    """The collector's adapter: statuses of a committed batch -> log line and table row."""

    def __init__(self, detector: DuplicateDetector | None = None) -> None:
        self.detector = detector or DuplicateDetector()
        self.alerts: list[DuplicateAlert] = []

    def observe_batch(self, store: Any, items: Iterable[Any], now: float) -> None:
        """Never raises: a failure here must not stop ingest."""
        try:
            for item in items:
                if getattr(item, "type", None) != "status":
                    continue
                body = item.body
                sighting = self.detector.sight(
                    item.kiosk, body.get("state"), body.get("instance"), now
                )
                if sighting is None:
                    continue
                alert, new = sighting
                if new:
                    self.alerts.append(alert)
                    log.warning("ALERT %s", alert.describe())
                conn = getattr(store, "conn", None)
                if isinstance(conn, sqlite3.Connection):
                    record_alert(conn, alert)
                elif isinstance(conn, PgConn):
                    # PostgreSQL: the table is the migrations' (with last_at); one short
                    # transaction of its own, no back-office write lock on ingest's path
                    with conn.transaction():
                        _upsert(conn, alert)
        except Exception:
            log.exception("duplicate-identity check failed (ingest goes on)")
