"""Per-kiosk rate limits and storage quotas at central; dead letters kept bounded.

Theory of operation
-------------------
One kiosk must never slow the others or fill central's disk. Three limits,
each with a designed outcome, counted per kiosk and shown by
``aps-central status`` under ``quotas``:

* **Rate** (token buckets per topic kiosk: messages/s and bytes/s, with a
  burst). Checked in the collector's network thread (:meth:`Quotas.admit`)
  before a message is queued, so a flood never reaches the writer's queue and
  other kiosks' messages never wait behind it. An over-rate message first
  waits in its kiosk's small pacing room and is passed on when the buckets
  refill (:meth:`Quotas.pace`, a pacer thread): a kiosk draining a backlog
  with its window of 256 records is slowed to the rate, not stalled for an
  ack timeout. Beyond that room a message is dropped: not parsed, stored,
  dead-lettered or acked; a valid record stays queued on its kiosk, which
  sends it again after its ack timeout; garbage is only counted.
* **Records held** (bytes of records central holds per kiosk: the body and
  the envelope's fields, in ``kiosk_usage``: :class:`UsageTally` counts each
  ingest transaction's new records, triggers take deleted ones off). At or
  over the quota, the kiosk's new records are left unacked
  (:meth:`Quotas.screen`) and an alert is raised; resends of records central
  holds are still acked, and status and heartbeats still pass. The usage is read at the
  start of each batch, so a kiosk may overshoot by at most one batch.
* **Dead letters held** per kiosk. Over the cap, its new dead letters are
  dropped and counted (a rejected record then goes unacked, so it is resent
  later, never lost).

Dead letters are deduplicated (:func:`record_dead_letter`): the same kiosk,
reason, record id and payload (SHA-256 of the stored head and the length)
make one row with a ``count`` and first (``at``) / last (``last_at``) seen,
so a kiosk resending a record in an unknown protocol version adds one row per
record, not one per resend. :func:`housekeep` (every 30 s in
``aps-central run``) writes the counters, expires dead letters past their
retention and incomplete attachments past theirs, and logs alerts.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from central.attachments import AttachmentLimits, expire_incomplete
from central.ingest import Accept, DeadLetter, FleetUpdate
from central.portable_sql import SqlConn, write_transaction
from sync.envelope import Record, kiosk_of_topic

log = logging.getLogger("aps.quotas")

MiB = 1024 * 1024
NO_KIOSK = ""  # usage and counters of messages whose topic names no kiosk
UNTRACKED = "(untracked)"  # counters of kiosks beyond max_tracked_kiosks
REPORT_MAX_KIOSKS = 50
QUIET_LOG_S = 60.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS kiosk_usage (
    kiosk TEXT PRIMARY KEY,
    records INTEGER NOT NULL DEFAULT 0,
    records_bytes INTEGER NOT NULL DEFAULT 0,
    dead_letters INTEGER NOT NULL DEFAULT 0
);
DROP TRIGGER IF EXISTS kiosk_usage_record_in;
CREATE TRIGGER IF NOT EXISTS kiosk_usage_record_out AFTER DELETE ON records BEGIN
    UPDATE kiosk_usage SET records = records - 1,
        records_bytes = records_bytes - (length(OLD.body) + length(OLD.kind)
            + length(OLD.created) + 58)
        WHERE kiosk = OLD.kiosk;
END;
CREATE TRIGGER IF NOT EXISTS kiosk_usage_record_body AFTER UPDATE OF body ON records BEGIN
    UPDATE kiosk_usage SET records_bytes = records_bytes
        - length(OLD.body) + length(NEW.body)
        WHERE kiosk = NEW.kiosk;
END;
CREATE TRIGGER IF NOT EXISTS kiosk_usage_dead_in AFTER INSERT ON dead_letters BEGIN
    INSERT INTO kiosk_usage (kiosk, dead_letters) VALUES (coalesce(NEW.topic_kiosk, ''), 1)
        ON CONFLICT (kiosk) DO UPDATE SET dead_letters = dead_letters + 1;
END;
CREATE TRIGGER IF NOT EXISTS kiosk_usage_dead_out AFTER DELETE ON dead_letters BEGIN
    UPDATE kiosk_usage SET dead_letters = dead_letters - 1
        WHERE kiosk = coalesce(OLD.topic_kiosk, '');
END;
CREATE TABLE IF NOT EXISTS kiosk_limit_events (
    kiosk TEXT NOT NULL,
    event TEXT NOT NULL,
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    first_at REAL NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (kiosk, event)
);
"""

# What each event means, for the report and the logs.
EVENTS = {
    "paced": "messages over the rate limit, held back and passed on at the rate",
    "rate": "messages over the rate limit and its pacing room, dropped unparsed "
    "(a valid record is resent)",
    "records_quota": "records left unacked: the kiosk is at its records quota",
    "dead_letter_quota": "dead letters dropped: the kiosk is at its dead-letter cap",
}


@dataclass(frozen=True, kw_only=True)
class QuotaSettings:
    messages_per_s: float = 500.0
    burst_messages: int = 2000
    bytes_per_s: float = 4.0 * MiB
    burst_bytes: int = 32 * MiB
    max_records_bytes: int = 32 * 1024 * MiB
    max_dead_letters: int = 10_000
    dead_letter_retention_s: float = 30 * 86400.0
    max_tracked_kiosks: int = 100_000
    pace_messages: int = 512  # per kiosk, held back and released at the rate, not dropped
    pace_bytes: int = 8 * MiB
    pace_total_bytes: int = 256 * MiB  # all kiosks together
    pace_tick_s: float = 0.02


@dataclass(frozen=True, kw_only=True)
class Usage:
    records: int = 0
    records_bytes: int = 0
    dead_letters: int = 0


@runtime_checkable
class UsageSource(Protocol):
    """A store that can tell what each kiosk holds (SQLiteStore does)."""

    def quota_usage(self, kiosks: Collection[str]) -> dict[str, Usage]: ...

    def held_ids(self, kiosk: str, ids: Collection[str]) -> set[str]: ...


@dataclass
class _Bucket:
    messages: float
    bytes: float
    at: float


@dataclass
class _Tally:
    count: int = 0
    bytes: int = 0
    first_at: float = 0.0
    last_at: float = 0.0


@dataclass
class _Pending:
    tallies: dict[tuple[str, str], _Tally] = field(default_factory=dict)


class Quotas:
    """The collector's limits: thread-safe (network thread, writer thread, housekeeping)."""

    def __init__(
        self, settings: QuotaSettings | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or QuotaSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._pending = _Pending()
        self._logged: dict[tuple[str, str], float] = {}
        self._tracked: set[str] = set()  # kiosks with counters; the keys of what follows
        self._paced: dict[str, deque[tuple[str, bytes]]] = {}
        self._paced_bytes: dict[str, int] = {}
        self._paced_total = 0
        # Since start, for tests and the counters log line: (kiosk, event) -> count.
        self.totals: dict[tuple[str, str], int] = {}
        self.admitted: dict[str, int] = {}

    # -- rate (network thread) --------------------------------------------------
    def admit(self, mqtt_topic: str, payload: bytes) -> bool:
        """True: queue this message now. False: it is held back (:meth:`pace`) or dropped.

        Within its kiosk's buckets a message passes. Over them, it waits in the
        kiosk's pacing room (``pace_messages``/``pace_bytes``, and ``pace_total_bytes``
        for all kiosks) until the buckets refill, so a kiosk draining a backlog
        is slowed to the rate rather than made to wait out its ack timeout; a
        kiosk sending faster than its room drains has the rest dropped.
        """
        kiosk = kiosk_of_topic(mqtt_topic) or NO_KIOSK
        size = len(payload)
        s = self.settings
        now = self._clock()
        with self._lock:
            b = self._bucket(kiosk, now)
            if kiosk not in self._paced and b.messages >= 1.0 and b.bytes >= size:
                b.messages -= 1.0
                b.bytes -= size
                key = self._key(kiosk)
                self.admitted[key] = self.admitted.get(key, 0) + 1
                return True
            room = self._paced.get(kiosk)
            held = self._paced_bytes.get(kiosk, 0)
            if (
                (room is None or len(room) < s.pace_messages)
                and held + size <= s.pace_bytes
                and self._paced_total + size <= s.pace_total_bytes
                and s.pace_messages > 0
            ):
                self._paced.setdefault(kiosk, deque()).append((mqtt_topic, payload))
                self._paced_bytes[kiosk] = held + size
                self._paced_total += size
                self._count(kiosk, "paced", size)
                return False
            self._count(kiosk, "rate", size)
        return False

    def _bucket(self, kiosk: str, now: float) -> _Bucket:
        # Caller holds the lock.
        s = self.settings
        b = self._buckets.get(kiosk)
        if b is None:
            b = _Bucket(messages=float(s.burst_messages), bytes=float(s.burst_bytes), at=now)
            self._buckets[kiosk] = b
            if len(self._buckets) > s.max_tracked_kiosks:
                # The least recently seen bucket without held-back messages; it has
                # refilled in all likelihood, and a fresh one starts full anyway.
                for old in self._buckets:
                    if old not in self._paced and old != kiosk:
                        del self._buckets[old]
                        break
            return b
        self._buckets.move_to_end(kiosk)
        elapsed = max(0.0, now - b.at)
        b.messages = min(float(s.burst_messages), b.messages + elapsed * s.messages_per_s)
        b.bytes = min(float(s.burst_bytes), b.bytes + elapsed * s.bytes_per_s)
        b.at = now
        return b

    def pace(self) -> list[tuple[str, bytes]]:
        """Held-back messages whose kiosk's buckets now allow them, oldest first."""
        out: list[tuple[str, bytes]] = []
        now = self._clock()
        with self._lock:
            for kiosk in list(self._paced):
                room = self._paced[kiosk]
                b = self._bucket(kiosk, now)
                while room and b.messages >= 1.0 and b.bytes >= len(room[0][1]):
                    topic, payload = room.popleft()
                    b.messages -= 1.0
                    b.bytes -= len(payload)
                    self._paced_bytes[kiosk] -= len(payload)
                    self._paced_total -= len(payload)
                    key = self._key(kiosk)
                    self.admitted[key] = self.admitted.get(key, 0) + 1
                    out.append((topic, payload))
                if not room:
                    del self._paced[kiosk]
                    del self._paced_bytes[kiosk]
        return out

    def start_pacer(
        self, put: Callable[[tuple[str, bytes]], None], stop: threading.Event
    ) -> threading.Thread:
        """Pass held-back messages on to ``put`` (the collector's queue) as they fall due."""

        def run() -> None:
            while not stop.wait(self.settings.pace_tick_s):
                try:
                    for message in self.pace():
                        put(message)
                except Exception:  # never let the pacer die; the kiosks resend anyway
                    log.exception("pacer failed")

        thread = threading.Thread(target=run, name="collector-pacer", daemon=True)
        thread.start()
        return thread

    def held_back(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._paced.values())

    # -- quotas (writer thread, before the store transaction) -------------------
    def screen(
        self, store: object, items: Sequence[Accept | DeadLetter | FleetUpdate]
    ) -> list[Accept | DeadLetter | FleetUpdate]:
        """Leave out what a kiosk at its records quota or dead-letter cap sent."""
        if not isinstance(store, UsageSource):
            return list(items)
        kiosks = {_kiosk_of(i) for i in items if not isinstance(i, FleetUpdate)}
        if not kiosks:
            return list(items)
        usage = store.quota_usage(kiosks)
        s = self.settings
        full = {k for k, u in usage.items() if u.records_bytes >= s.max_records_bytes}
        capped = {k for k, u in usage.items() if u.dead_letters >= s.max_dead_letters}
        if not full and not capped:
            return list(items)
        held: set[tuple[str, str]] = set()
        for kiosk in full:  # resends of what central holds are acked again, quota or not
            ids = [i.record.id for i in items if isinstance(i, Accept) and i.record.kiosk == kiosk]
            held.update((kiosk, rid) for rid in store.held_ids(kiosk, ids))
        out: list[Accept | DeadLetter | FleetUpdate] = []
        with self._lock:
            for item in items:
                if (
                    isinstance(item, Accept)
                    and item.record.kiosk in full
                    and (item.record.kiosk, item.record.id) not in held
                ):
                    self._count(item.record.kiosk, "records_quota", 0)
                    continue
                if isinstance(item, DeadLetter) and _kiosk_of(item) in capped:
                    self._count(_kiosk_of(item), "dead_letter_quota", item.payload_len)
                    continue
                out.append(item)
        return out

    def _key(self, kiosk: str) -> str:
        """``kiosk``, or UNTRACKED once max_tracked_kiosks have counters (memory stays bounded)."""
        if kiosk in self._tracked:
            return kiosk
        if len(self._tracked) < self.settings.max_tracked_kiosks:
            self._tracked.add(kiosk)
            return kiosk
        return UNTRACKED

    def _count(self, kiosk: str, event: str, size: int) -> None:
        # Caller holds the lock.
        kiosk = self._key(kiosk)
        now = time.time()
        t = self._pending.tallies.get((kiosk, event))
        if t is None:
            t = self._pending.tallies[(kiosk, event)] = _Tally(first_at=now)
        t.count += 1
        t.bytes += size
        t.last_at = now
        self.totals[(kiosk, event)] = self.totals.get((kiosk, event), 0) + 1
        last = self._logged.get((kiosk, event))
        if last is None or now - last > QUIET_LOG_S:
            log.warning(
                "kiosk %r: %s; counted under quotas in aps-central status, logged again"
                " only after %.0f s without",
                kiosk,
                EVENTS[event],
                QUIET_LOG_S,
            )
        self._logged[(kiosk, event)] = now

    def count(self, kiosk: str, event: str) -> int:
        with self._lock:
            return self.totals.get((kiosk, event), 0)

    # -- counters to the database -----------------------------------------------
    def flush(self, conn: SqlConn) -> int:
        """Add the counts gathered since the last flush to ``kiosk_limit_events``."""
        with self._lock:
            pending, self._pending = self._pending, _Pending()
        if not pending.tallies:
            return 0
        try:
            with write_transaction(conn):
                conn.executemany(
                    "INSERT INTO kiosk_limit_events (kiosk, event, count, bytes, first_at,"
                    " last_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (kiosk, event) DO UPDATE"
                    " SET count = kiosk_limit_events.count + excluded.count,"
                    " bytes = kiosk_limit_events.bytes + excluded.bytes,"
                    " last_at = excluded.last_at",
                    [
                        (k, e, t.count, t.bytes, t.first_at, t.last_at)
                        for (k, e), t in pending.tallies.items()
                    ],
                )
        except BaseException:
            with self._lock:  # keep them for the next flush
                for key, t in pending.tallies.items():
                    mine = self._pending.tallies.setdefault(key, _Tally(first_at=t.first_at))
                    mine.count += t.count
                    mine.bytes += t.bytes
                    mine.last_at = max(mine.last_at, t.last_at)
            raise
        return len(pending.tallies)


def _kiosk_of(item: Accept | DeadLetter | FleetUpdate) -> str:
    if isinstance(item, Accept):
        return item.record.kiosk
    if isinstance(item, DeadLetter):
        return item.topic_kiosk or NO_KIOSK
    return item.kiosk


# -- schema and usage ---------------------------------------------------------------
DEAD_LETTER_COLUMNS = {
    "count": "INTEGER NOT NULL DEFAULT 1",
    "last_at": "REAL",
    "dedup_key": "TEXT",
}


TRIGGERS = 4  # inserts into records are counted by add_usage, once per batch


def _current(conn: sqlite3.Connection) -> bool:
    have = {row[1] for row in conn.execute("PRAGMA table_info(dead_letters)")}
    names = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE name LIKE 'kiosk_usage%'"
            " OR name IN ('kiosk_limit_events', 'dead_letters_dedup', 'dead_letters_last')"
        )
    }
    return set(DEAD_LETTER_COLUMNS) <= have and len(names) == 1 + TRIGGERS + 3


def migrate(conn: sqlite3.Connection) -> None:
    """Usage table and triggers, dead-letter dedup columns; backfill once on upgrade."""
    if _current(conn):
        return  # nothing to write (a read-only connection gets this far too)
    conn.execute("BEGIN IMMEDIATE")
    try:
        fresh = not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kiosk_usage'"
        ).fetchone()
        have = {row[1] for row in conn.execute("PRAGMA table_info(dead_letters)")}
        for name, decl in DEAD_LETTER_COLUMNS.items():
            if name not in have:
                conn.execute(f"ALTER TABLE dead_letters ADD COLUMN {name} {decl}")
        conn.execute("UPDATE dead_letters SET last_at = at WHERE last_at IS NULL")
        conn.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_dedup ON dead_letters (dedup_key)"
            " WHERE dedup_key IS NOT NULL"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS dead_letters_last ON dead_letters (last_at)")
        for statement in _statements(SCHEMA):
            conn.execute(statement)
        if fresh:
            conn.execute(
                "INSERT INTO kiosk_usage (kiosk, records, records_bytes)"
                " SELECT kiosk, count(*), sum(length(body) + length(kind)"
                " + length(created) + 58) FROM records GROUP BY kiosk"
            )
            conn.execute(
                "INSERT INTO kiosk_usage (kiosk, dead_letters)"
                " SELECT coalesce(topic_kiosk, ''), count(*) FROM dead_letters GROUP BY 1"
                " ON CONFLICT (kiosk) DO UPDATE SET dead_letters = excluded.dead_letters"
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """Split on ';' at the end of a line outside trigger bodies (END; closes one)."""
    out, current, in_trigger = [], [], False
    for line in script.splitlines():
        current.append(line)
        stripped = line.strip()
        if stripped.upper().startswith("CREATE TRIGGER"):
            in_trigger = True
        if stripped.endswith(";") and (not in_trigger or stripped.upper() == "END;"):
            out.append("\n".join(current))
            current, in_trigger = [], False
    return [s for s in out if s.strip()]


ENVELOPE_BYTES = 26 + 16 + 16  # id, stream, and seq/received_at, beside body, kind, created


def stored_bytes(record: Record, body: str) -> int:
    """What one stored record counts toward its kiosk's quota: body and envelope fields.

    Characters, not UTF-8 bytes (O(1) in Python and in SQLite's ``length()``;
    equal for the base64 chunks that make up most of what a kiosk sends). The
    ``kiosk_usage_record_out`` trigger takes the same sum off on delete.
    """
    return len(body) + len(record.kind) + len(record.created) + ENVELOPE_BYTES


class UsageTally:
    """The records one ingest transaction stores, per kiosk, written once at its end.

    (A trigger per inserted row did the same at 8-11 µs a record, a quarter of
    the store's own work per batch; this is well under 1 µs.)
    """

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, record: Record, body: str) -> None:
        size = stored_bytes(record, body)
        tally = self.counts.get(record.kiosk)
        if tally is None:
            self.counts[record.kiosk] = [1, size]
        else:
            tally[0] += 1
            tally[1] += size

    def write(self, conn: SqlConn) -> None:
        if self.counts:
            conn.executemany(
                "INSERT INTO kiosk_usage (kiosk, records, records_bytes) VALUES (?, ?, ?)"
                " ON CONFLICT (kiosk) DO UPDATE SET records = kiosk_usage.records"
                " + excluded.records, records_bytes = kiosk_usage.records_bytes"
                " + excluded.records_bytes",
                [(k, n, size) for k, (n, size) in self.counts.items()],
            )


def read_usage(conn: SqlConn, kiosks: Collection[str]) -> dict[str, Usage]:
    out = {}
    for kiosk in kiosks:
        row = conn.execute(
            "SELECT records, records_bytes, dead_letters FROM kiosk_usage WHERE kiosk = ?",
            (kiosk,),
        ).fetchone()
        out[kiosk] = (
            Usage()
            if row is None
            else Usage(records=row[0], records_bytes=row[1], dead_letters=row[2])
        )
    return out


def read_held_ids(conn: SqlConn, kiosk: str, ids: Collection[str]) -> set[str]:
    out: set[str] = set()
    wanted = list(ids)
    for start in range(0, len(wanted), 500):
        part = wanted[start : start + 500]
        marks = ",".join("?" * len(part))
        out.update(
            row[0]
            for row in conn.execute(
                f"SELECT id FROM records WHERE kiosk = ? AND id IN ({marks})", (kiosk, *part)
            )
        )
    return out


# -- dead letters ---------------------------------------------------------------
def dedup_key(d: DeadLetter) -> str:
    h = hashlib.sha256()
    for part in (d.topic_kiosk or NO_KIOSK, d.reason, d.record_id or "", str(d.payload_len)):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    h.update(d.payload_head)
    return h.hexdigest()


def record_dead_letter(conn: SqlConn, d: DeadLetter, now: float) -> None:
    """One row per (kiosk, reason, record id, payload): the same again adds to its count.

    Both stores run this statement (PostgreSQL infers its full unique constraint from the
    partial index's predicate)."""
    conn.execute(
        "INSERT INTO dead_letters (at, topic, topic_kiosk, reason, record_id, payload_len,"
        " payload_head, count, last_at, dedup_key) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"
        " ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL"
        " DO UPDATE SET count = dead_letters.count + 1, last_at = excluded.last_at",
        (
            now,
            d.topic,
            d.topic_kiosk,
            d.reason,
            d.record_id,
            d.payload_len,
            bytes(d.payload_head),
            now,
            dedup_key(d),
        ),
    )


def expire_dead_letters(
    conn: SqlConn, *, retention_s: float, now: float | None = None, limit: int = 5000
) -> int:
    """Delete dead letters last seen more than ``retention_s`` ago (``limit`` at a time)."""
    now = time.time() if now is None else now
    removed = 0
    while True:
        with write_transaction(conn):
            cur = conn.execute(
                "DELETE FROM dead_letters WHERE n IN"
                " (SELECT n FROM dead_letters WHERE last_at < ? ORDER BY last_at LIMIT ?)",
                (now - retention_s, limit),
            )
        gone: int = cur.rowcount
        removed += gone
        if gone < limit:
            return removed


# -- housekeeping and the report ------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Housekeeping:
    counters_flushed: int
    dead_letters_expired: int
    attachments_expired: int
    alerts: list[str]


def housekeep(
    conn: SqlConn,
    quotas: Quotas | None,
    settings: QuotaSettings,
    attachment_limits: AttachmentLimits,
    now: float | None = None,
) -> Housekeeping:
    """What ``aps-central run`` does every 30 s besides collecting."""
    now = time.time() if now is None else now
    flushed = quotas.flush(conn) if quotas is not None else 0
    dead = expire_dead_letters(conn, retention_s=settings.dead_letter_retention_s, now=now)
    atts = expire_incomplete(conn, older_than_s=attachment_limits.expire_after_s, now=now)
    if dead or atts:
        log.info("expired %d dead letters and %d incomplete attachments", dead, atts)
    found = alerts(conn, settings, now)
    for line in found:
        log.warning("ALERT %s", line)
    return Housekeeping(
        counters_flushed=flushed, dead_letters_expired=dead, attachments_expired=atts, alerts=found
    )


def alerts(conn: SqlConn, settings: QuotaSettings, now: float) -> list[str]:
    out = []
    for kiosk, held in conn.execute(
        "SELECT kiosk, records_bytes FROM kiosk_usage WHERE records_bytes >= ?"
        " ORDER BY records_bytes DESC LIMIT ?",
        (settings.max_records_bytes, REPORT_MAX_KIOSKS),
    ):
        out.append(
            f"kiosk {kiosk}: holds {held} bytes of records, at its quota of "
            f"{settings.max_records_bytes} ([quotas] max_records_mb_per_kiosk): its new records "
            "are left unacked and wait on the kiosk; raise the quota or find out why it sends "
            "so much"
        )
    for kiosk, count in conn.execute(
        "SELECT kiosk, dead_letters FROM kiosk_usage WHERE dead_letters >= ?"
        " ORDER BY dead_letters DESC LIMIT ?",
        (settings.max_dead_letters, REPORT_MAX_KIOSKS),
    ):
        out.append(
            f"kiosk {kiosk or '(none)'}: {count} dead letters held, at its cap of "
            f"{settings.max_dead_letters} ([quotas] max_dead_letters_per_kiosk): new ones are "
            "dropped and counted; look at `aps-central dead-letters`"
        )
    for kiosk, count, last_at in conn.execute(
        "SELECT kiosk, count, last_at FROM kiosk_limit_events WHERE event = 'rate'"
        " AND last_at > ? ORDER BY count DESC LIMIT ?",
        (now - 3600, REPORT_MAX_KIOSKS),
    ):
        out.append(
            f"kiosk {kiosk or '(none)'}: {count} messages over the rate limit so far, the last "
            f"{now - last_at:.0f} s ago ([quotas] messages_per_s, kib_per_s)"
        )
    return out


def report(conn: SqlConn, settings: QuotaSettings, now: float | None = None) -> dict[str, Any]:
    """The ``quotas`` part of ``aps-central status`` (bounded: at most 50 kiosks)."""
    now = time.time() if now is None else now
    try:
        events: dict[str, dict[str, Any]] = {}
        for kiosk, event, count, nbytes, first_at, last_at in conn.execute(
            "SELECT kiosk, event, count, bytes, first_at, last_at FROM kiosk_limit_events"
            " ORDER BY last_at DESC LIMIT ?",
            (REPORT_MAX_KIOSKS * len(EVENTS),),
        ):
            events.setdefault(kiosk, {})[event] = {
                "count": count,
                "bytes": nbytes,
                "first_s_ago": round(now - first_at),
                "last_s_ago": round(now - last_at),
            }
        top = conn.execute(
            "SELECT kiosk, records, records_bytes, dead_letters FROM kiosk_usage"
            # the larger of the two shares of its quotas (CASE: SQLite's max(a, b) is
            # PostgreSQL's greatest(a, b))
            " ORDER BY CASE WHEN records_bytes * 1.0 / ?1 > dead_letters * 1.0 / ?2"
            " THEN records_bytes * 1.0 / ?1 ELSE dead_letters * 1.0 / ?2 END DESC LIMIT ?3",
            (settings.max_records_bytes, settings.max_dead_letters, REPORT_MAX_KIOSKS),
        ).fetchall()
        kiosks = {
            k: {
                "kiosk": k,
                "records": r,
                "records_bytes": b,
                "records_quota_used": round(b / settings.max_records_bytes, 4),
                "dead_letters": d,
                "limited": {},
            }
            for k, r, b, d in top
        }
        for k, ev in events.items():
            if k not in kiosks:
                (u,) = read_usage(conn, [k]).values()
                kiosks[k] = {
                    "kiosk": k,
                    "records": u.records,
                    "records_bytes": u.records_bytes,
                    "records_quota_used": round(u.records_bytes / settings.max_records_bytes, 4),
                    "dead_letters": u.dead_letters,
                    "limited": {},
                }
            kiosks[k]["limited"] = ev
        rows, received = conn.execute(
            "SELECT count(*), coalesce(sum(count), 0) FROM dead_letters"
        ).fetchone()
        incomplete = conn.execute("SELECT count(*) FROM attachment_progress").fetchone()[0]
        expired = conn.execute(
            "SELECT count(*) FROM attachments WHERE status = 'expired'"
        ).fetchone()[0]
        found = alerts(conn, settings, now)
    except sqlite3.OperationalError as exc:  # a database from before these tables
        return {"error": f"no quota tables in this database ({exc}); start aps-central once"}
    ordered = sorted(
        kiosks.values(),
        key=lambda k: (-sum(e["count"] for e in k["limited"].values()), -k["records_quota_used"]),
    )[:REPORT_MAX_KIOSKS]
    return {
        "limits": {
            "messages_per_s": settings.messages_per_s,
            "burst_messages": settings.burst_messages,
            "bytes_per_s": settings.bytes_per_s,
            "burst_bytes": settings.burst_bytes,
            "max_records_bytes_per_kiosk": settings.max_records_bytes,
            "max_dead_letters_per_kiosk": settings.max_dead_letters,
            "dead_letter_retention_s": settings.dead_letter_retention_s,
        },
        "kiosks": ordered,
        "dead_letters": {"rows": rows, "received": int(received)},  # PostgreSQL: a Decimal sum
        "attachments": {"incomplete": incomplete, "expired": expired},
        "alerts": found,
    }
