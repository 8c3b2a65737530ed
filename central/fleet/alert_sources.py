"""What the alert engine observes: every cause present now, read from central's database.

Each kind reads what central already keeps: the kiosks' health (heartbeats, statuses and the
registry, through :func:`central.fleet.health.health_rows`), the published catalogue, the
duplicate-identity rows, the streams' gaps, the dead letters and the support requests. The
thresholds come from each kiosk's office's rules (:class:`central.fleet.alert_rules.RuleBook`).
A source whose table does not exist yet observes nothing. Revoked kiosks raise nothing.

Health comes from the kiosk's *last* heartbeat: a kiosk that went offline with its paper out
keeps its paper-out alert (nobody knows it was refilled) next to its offline alert.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from central import store_reads
from central.fleet import duplicates
from central.fleet.alert_engine import Observation
from central.fleet.alert_rules import Rule, RuleBook
from central.fleet.health import DEVICE_OK_STATES, KioskHealth, StatusSource, health_rows

log = logging.getLogger("aps.central.alerts")

DesiredVersions = Callable[[sqlite3.Connection], Mapping[str, str]]

MIB = 1024 * 1024
#: Device states with their own alert kind; every other state not ok is ``device-fault``.
DEVICE_KINDS = {"paper_out": "paper-out", "paper_near_end": "paper-low", "cover_open": "cover-open"}
OPEN_SUPPORT = ("pending", "queued", "assigned", "no-one-on-duty")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _health(h: KioskHealth, book: RuleBook, now: float) -> Iterator[Observation]:
    def obs(kind: str, detail: str) -> Observation:
        return Observation(kiosk=h.kiosk, kind=kind, office=h.office, detail=detail)

    def rule(kind: str) -> Rule:
        return book.rule(h.office, kind)

    heard = h.last_heard_at
    if heard is not None:
        silent = now - heard
        if silent > rule("offline").param("minutes") * 60:
            said = (
                h.presence == "offline"
                and h.presence_at is not None
                and (h.heartbeat_at is None or h.presence_at >= h.heartbeat_at)
            )
            yield obs(
                "offline",
                f"said offline {_minutes(silent)} ago"
                if said
                else f"not heard for {_minutes(silent)}",
            )
    faults = []
    special: dict[str, list[str]] = {}
    for name, dev in sorted(h.devices.items()):
        if not isinstance(dev, Mapping):  # a damaged heartbeat row: not this kiosk's fault
            continue
        state = str(dev.get("state", "")) or "unknown"
        if state in DEVICE_KINDS:
            special.setdefault(DEVICE_KINDS[state], []).append(name)
        elif state not in DEVICE_OK_STATES:
            err = dev.get("last_error")
            faults.append(f"{name} {state}" + (f" ({err})" if err else ""))
    for kind, names in special.items():
        yield obs(kind, ", ".join(names))
    if faults:
        yield obs("device-fault", "; ".join(faults))
    backlog = rule("backlog")
    records, age_s = backlog.param("records"), backlog.param("hours") * 3600
    why = []
    if h.queued is not None and h.queued > records:
        why.append(f"{h.queued} records queued (limit {records:.0f})")
    if h.oldest_queued_s is not None and h.oldest_queued_s > age_s:
        why.append(f"oldest unsynced record {_minutes(h.oldest_queued_s)} old")
    if why:
        yield obs("backlog", "; ".join(why))
    low = rule("disk-low").param("mib") * MIB
    if h.disk_free_bytes is not None and h.disk_free_bytes < low:
        yield obs("disk-low", f"{h.disk_free_bytes // MIB} MiB free (limit {low // MIB:.0f})")
    off = rule("clock-off").param("seconds")
    if h.clock_offset_s is not None and abs(h.clock_offset_s) > off:
        yield obs("clock-off", f"clock off by {h.clock_offset_s:+.0f} s (limit {off:.0f})")


def _published_catalogue(conn: sqlite3.Connection) -> str | None:
    from central.catalogue_publish import current_catalogue

    try:
        doc = current_catalogue(conn)
    except sqlite3.OperationalError:  # no downlink log yet
        return None
    return None if doc is None else str(doc.get("version"))


def _rows(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # the table does not exist yet
        return []


class RecordSignals(Protocol):
    """Where the records' own alert causes are read: gaps and dead letters. The SQLite
    file by default; the PostgreSQL store when the records are there (both stores have
    these methods, central/store_reads.py)."""

    def gap_summary(self) -> list[tuple[str, int, int, float]]: ...

    def dead_letter_times(self, after: float) -> list[tuple[str, float]]: ...


class _SameFile:
    """The records' signals read from the fleet's own SQLite connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def gap_summary(self) -> list[tuple[str, int, int, float]]:
        try:
            return store_reads.gap_summary(self.conn)
        except sqlite3.OperationalError:  # the table does not exist yet
            return []

    def dead_letter_times(self, after: float) -> list[tuple[str, float]]:
        try:
            return store_reads.dead_letter_times(self.conn, after)
        except sqlite3.OperationalError:
            return []


def observe(
    conn: sqlite3.Connection,
    book: RuleBook,
    now: float,
    *,
    desired_versions: DesiredVersions | None = None,
    records: RecordSignals | None = None,
    status: StatusSource | None = None,
) -> list[Observation]:
    """Every alert cause present at ``now`` (``records``: where gaps and dead letters are;
    ``status``: where the kiosks' status rows are, when not in ``conn``'s file)."""
    signals = records if records is not None else _SameFile(conn)
    out: list[Observation] = []
    every = health_rows(conn, status)
    healths = [h for h in every if h.registry != "revoked"]
    office = {h.kiosk: h.office for h in healths}
    revoked = {h.kiosk for h in every if h.registry == "revoked"}

    def add(kiosk: str, kind: str, detail: str) -> None:
        if kiosk not in revoked:
            out.append(Observation(kiosk=kiosk, kind=kind, office=office.get(kiosk), detail=detail))

    for h in healths:
        out.extend(_health(h, book, now))
    desired = dict(desired_versions(conn)) if desired_versions is not None else {}
    published = _published_catalogue(conn)
    for h in healths:
        want = desired.get(h.kiosk)
        if want and h.agent_version is not None and h.agent_version != want:
            add(h.kiosk, "software-behind", f"runs {h.agent_version}, should run {want}")
        if published and h.heartbeat_at is not None and h.catalogue_version != published:
            add(
                h.kiosk,
                "catalogue-behind",
                f"catalogue {h.catalogue_version or 'none'}, published {published}",
            )
    for kiosk, last_at, pairs in duplicates.last_seen(conn):
        hours = book.rule(office.get(kiosk), "duplicate-identity").param("hours")
        if now - last_at <= hours * 3600:
            add(kiosk, "duplicate-identity", f"{pairs} pair(s) of boxes share the identity")
    for kiosk, streams, missing, since in signals.gap_summary():
        minutes = book.rule(office.get(kiosk), "sequence-gap").param("minutes")
        if now - since > minutes * 60:
            add(
                kiosk,
                "sequence-gap",
                f"{missing} records missing in {streams} stream(s) for {_minutes(now - since)}",
            )
    _dead_letters(signals, book, now, office, add)
    for kiosk, n, oldest in _rows(
        conn,
        "SELECT kiosk, count(*), min(received_at) FROM support_requests"
        f" WHERE status IN ({', '.join('?' * len(OPEN_SUPPORT))}) GROUP BY kiosk",
        OPEN_SUPPORT,
    ):
        minutes = book.rule(office.get(kiosk), "support-unanswered").param("minutes")
        if now - oldest > minutes * 60:
            add(
                kiosk, "support-unanswered", f"{n} open request(s), oldest {_minutes(now - oldest)}"
            )
    return out


def _dead_letters(
    signals: RecordSignals,
    book: RuleBook,
    now: float,
    office: Mapping[str, str | None],
    add: Callable[[str, str, str], None],
) -> None:
    windows = [book.rule(o, "dead-letters").param("minutes") for o in {*office.values(), None}]
    cutoff = now - max(windows) * 60
    times: dict[str, list[float]] = {}
    for kiosk, at in signals.dead_letter_times(cutoff):
        times.setdefault(kiosk, []).append(at)
    for kiosk, ats in sorted(times.items()):
        rule = book.rule(office.get(kiosk), "dead-letters")
        recent = [t for t in ats if t > now - rule.param("minutes") * 60]
        if recent and len(recent) >= rule.param("count"):
            add(
                kiosk,
                "dead-letters",
                f"{len(recent)} dead-lettered in the last {rule.param('minutes'):.0f} min",
            )
