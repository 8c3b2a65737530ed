"""The kiosk's durable outbox: every record waits here until central has it.

Theory of operation
-------------------
One SQLite file (WAL, ``synchronous=FULL``) holds the ``outbox`` table and the
kiosk's own tables (dossiers, ...), so a service can commit its row and the
outbox record in one transaction: either both are on disk or neither is
(invariant 1: durable before promised).

A record is born ``queued`` with the next per-stream ``seq`` (``AUTOINCREMENT``:
never reused, not even after a purge) and its envelope already encoded, so the
sync loop publishes stored bytes and never re-encodes. "In flight" is not
written to disk: it lives in the sync state machine, and a crash returns every
in-flight record to ``queued``, which is what at-least-once delivery needs.
An application ack from central moves a record to ``acked`` (or ``rejected``,
parked for an operator); a purge deletes acked records after the retention
period (invariant 8).

One writer: an Outbox may be shared by several threads (the kiosk's services
behind its local HTTP API). Every transaction, and every read through the
Outbox's methods, holds the Outbox's re-entrant lock, so two threads never
interleave statements on its one connection (SQLite keeps one transaction
per connection: without the lock a second BEGIN fails with "cannot start a
transaction within a transaction", and a read would see another thread's
uncommitted rows). Callers reading the kiosk's own tables take the same lock
with :meth:`Outbox.reading`. Each transaction still commits with
``synchronous=FULL`` before its caller returns, and the ``on_commit`` hooks
run after the lock is released (a hook that waits on another thread that
files would otherwise deadlock).

Limits (invariant 5) are checked before a write and enforced by SQLite itself:
a queue length limit, a database size limit (``max_page_count``) and a
free-disk reserve. At each one the write is refused with :class:`OutboxFull`,
whose message names the limit; nothing committed before is touched, and
marking records acked still works when the database limit or the free-disk
reserve is reached (acks and purges may take a few MiB past max_db_bytes:
``Outbox._housekeeping``), so a full kiosk drains and recovers; a purge
checkpoints the WAL so its space goes back to the disk. On a disk with no
space left at all the WAL cannot grow and acks cannot be recorded either: the
free-disk reserve is what keeps room for them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sync import SyncError
from sync.envelope import MAX_RECORD_BYTES, Record, check_kiosk_id
from sync.files import create_private_file, why_unopenable
from sync.ids import new_stream_id, new_ulid
from sync.schemas import check_body
from sync.wire_signing import SIGNATURE_BYTES, stored_record_digest

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger("aps.outbox")

_T = TypeVar("_T")

SCHEMA_VERSION = 1
#: The outbox schema versions this release can open and read back. A software update is
#: refused when the new release writes a schema outside this set (the previous release must
#: read what the new one wrote, or a rollback would strand the queued records:
#: edge_agent/updater/, docs/updates.md); an outbox written in one is refused at open.
READABLE_SCHEMA_VERSIONS = frozenset({1})

#: Page size of a new kiosk database. Every commit writes each page it touches
#: to the WAL and later, at a checkpoint, to the database file. A filing touches
#: about seven pages (the outbox row, its id and state indexes, the sequence,
#: the dossier row, the daily counter) and a record is under 1 KiB, so 1 KiB
#: pages write about half the bytes of SQLite's default 4 KiB ones: less wear on
#: an SD card (docs/benchmarks.md). It applies to new files only; an existing
#: database keeps its page size (docs/benchmarks.md says how to rebuild one).
PAGE_SIZE = 1024

#: Within this many bytes of the free-disk reserve, every write checks the disk.
DISK_RECHECK_MARGIN = 64 * 1024**2


class OutboxError(SyncError):
    """Base class of outbox errors."""


class OutboxFull(OutboxError):
    """A new record was refused because a limit was reached; nothing was lost."""


class RecordTooLarge(OutboxError):
    """A record's encoded envelope is over ``max_record_bytes``."""


class OutboxCorrupt(OutboxError):
    """The database file failed SQLite's integrity check; it was left untouched."""


class OutboxUnopenable(OutboxError):
    """The database path cannot be opened (missing directory, a directory, permissions)."""


class OutboxMissing(OutboxUnopenable):
    """No kiosk database at the path; opening read-only never creates one."""


class IntegrityCheckFailed(sqlite3.DatabaseError):
    """``PRAGMA quick_check`` found damage (raised by :func:`connect`)."""


#: Primary result codes that mean the file itself is damaged or not a database.
_DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def sqlite_code(exc: sqlite3.Error) -> int | None:
    """The primary SQLite result code of ``exc`` (``SQLITE_FULL``...), or None.

    Errors are told apart by this code (``sqlite3.Error.sqlite_errorcode``,
    Python 3.11+), never by their wording, which SQLite may change and which a
    table name can contain ("no such table: full_names").
    """
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


@dataclass(frozen=True, kw_only=True)
class Pending:
    """A queued record as the sync loop sees it."""

    seq: int
    id: str
    payload: bytes


@dataclass(frozen=True, kw_only=True)
class OutboxStats:
    queued: int
    acked: int
    rejected: int
    oldest_queued_created: str | None
    db_bytes: int


_local_zone: tuple[float, tzinfo] = (-1e9, UTC)


def _now_iso() -> str:
    """Local time with its UTC offset (the envelope's ``created``), to the millisecond.

    ``datetime.now().astimezone()`` looks the zone up on every call; the offset
    is kept for a minute instead. A change of zone or of summer time shows
    within that minute, and the instant written is right either way.
    """
    global _local_zone
    checked, zone = _local_zone
    now = time.monotonic()
    if now - checked >= 60.0:
        zone = datetime.now().astimezone().tzinfo or UTC
        _local_zone = (now, zone)
    return datetime.now(zone).isoformat(timespec="milliseconds")


def _locked(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run an Outbox method holding its lock (reads share the one connection)."""

    @functools.wraps(method)
    def wrapper(self: Outbox, *args: Any, **kwargs: Any) -> _T:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


def connect(
    path: Path | str, *, timeout_s: float = 10.0, quick_check: bool = False
) -> sqlite3.Connection:
    """Open a kiosk database in autocommit mode with WAL and synchronous=FULL.

    With ``quick_check`` the file is checked first and sqlite3.DatabaseError
    raised if it is damaged, before anything (switching to WAL) writes to it.
    The file is created 0600 (it holds citizen data); SQLite gives its -wal and
    -shm the same mode (sync.files). OSError when it cannot be created.
    """
    if str(path) != ":memory:" and not str(path).startswith("file:"):
        create_private_file(Path(path))
    conn = sqlite3.connect(
        str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False
    )
    if quick_check:
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise IntegrityCheckFailed(result)
        except BaseException:
            conn.close()
            raise
    # Before WAL: the page size of an empty file can still be chosen; on an
    # existing one the pragma does nothing.
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class Transaction:
    """An open write transaction on the kiosk database (see Outbox.transaction)."""

    def __init__(self, outbox: Outbox, *, next_seq: int) -> None:
        self._outbox = outbox
        self.conn = outbox.conn
        self._next_seq = next_seq
        self.records: list[Record] = []

    def add(self, kind: str, body: dict[str, Any]) -> Record:
        """Queue one record in this transaction; returns it with seq and id set.

        The body is checked against its kind's schema first (sync/schemas.py,
        shared with central): :class:`sync.schemas.SchemaError` names the field,
        so nothing is queued that central would refuse.
        """
        check_body(kind, body)
        ob = self._outbox
        record = Record(
            kind=kind,
            kiosk=ob.kiosk,
            stream=ob.stream,
            seq=self._next_seq,
            id=new_ulid(),
            created=_now_iso(),
            body=body,
        )
        payload = record.encode()
        # Room for the signature the sync loop adds when it publishes (sync.wire_signing).
        if len(payload) + SIGNATURE_BYTES > ob.max_record_bytes:
            raise RecordTooLarge(
                f"{kind} record is {len(payload)} bytes, over the limit of "
                f"{ob.max_record_bytes} bytes (sync.max_record_bytes); send files as attachments"
            )
        self.conn.execute(
            "INSERT INTO outbox (seq, id, kind, created, payload, size, state)"
            " VALUES (?, ?, ?, ?, ?, ?, 'queued')",
            (record.seq, record.id, kind, record.created, payload, len(payload)),
        )
        self._next_seq += 1
        self.records.append(record)
        return record


class Outbox:
    """The durable outbox of one kiosk (one SQLite file)."""

    def __init__(
        self,
        path: Path | str,
        kiosk: str,
        *,
        max_queued: int = 100_000,
        max_db_bytes: int = 2 * 1024**3,
        min_free_disk_bytes: int = 64 * 1024**2,
        max_record_bytes: int = MAX_RECORD_BYTES,
        check_integrity: bool = True,
    ) -> None:
        self.path = Path(path)
        self.kiosk = check_kiosk_id(kiosk)
        self.max_queued = max_queued
        self.max_db_bytes = max_db_bytes
        self.min_free_disk_bytes = min_free_disk_bytes
        self.max_record_bytes = max_record_bytes
        self._disk_free = 0
        self._disk_checked_at = -1e9
        #: Held by every transaction and read on ``conn`` (one writer; see the module doc).
        self.lock = threading.RLock()
        #: Called after each commit of new records (the agent wakes its sync).
        self.on_commit: list[Callable[[], None]] = []
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self.conn = connect(self.path, quick_check=existed and check_integrity)
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
            with contextlib.suppress(Exception):
                self.conn.close()
            # A path that cannot be opened is not a damaged database: say what it is.
            reason = why_unopenable(self.path, write=True)
            if reason is not None or isinstance(exc, OSError):
                raise OutboxUnopenable(
                    f"cannot open kiosk database {self.path}: {reason or exc}; check "
                    "agent.database in the agent's configuration"
                ) from exc
            if not isinstance(exc, IntegrityCheckFailed) and sqlite_code(exc) not in _DAMAGED:
                raise OutboxError(
                    f"cannot open kiosk database {self.path}: {exc} "
                    f"({getattr(exc, 'sqlite_errorname', 'no SQLite code')}). Check "
                    "agent.database, that its directory exists and the agent's user may write it, "
                    "and that no other process holds the file locked."
                ) from exc
            raise OutboxCorrupt(
                f"kiosk database {self.path} failed SQLite's integrity check ({exc}). "
                "It was left untouched: stop the agent, copy the file somewhere safe, and run "
                f"'aps-agent outbox salvage {self.path}' to copy its unsynced records "
                "to a new file."
            ) from exc
        page_size = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
        self._max_pages = max(16, max_db_bytes // page_size)
        # Acks and purges rewrite rows (state, done_at) and move index entries,
        # which can take a few new pages; a kiosk at max_db_bytes must still
        # record them, or it could never drain. They may use this much beyond
        # the filing limit (a purge then frees far more than it took).
        self._housekeeping_pages = (4 * 1024**2 + 2 * max_record_bytes) // page_size
        self.conn.execute(f"PRAGMA max_page_count={self._max_pages}")
        self.stream = self._meta("stream")

    # -- schema -----------------------------------------------------------------
    def _migrate(self) -> None:
        with self._write():
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " id TEXT NOT NULL UNIQUE,"
                " kind TEXT NOT NULL,"
                " created TEXT NOT NULL,"
                " payload BLOB NOT NULL,"
                " size INTEGER NOT NULL,"
                " state TEXT NOT NULL CHECK (state IN ('queued', 'acked', 'rejected')),"
                " done_at REAL,"
                " reason TEXT)"
            )
            self.conn.execute("CREATE INDEX IF NOT EXISTS outbox_state_seq ON outbox (state, seq)")
            meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
            if "stream" not in meta:
                self.conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("stream", new_stream_id()),
                        ("kiosk", self.kiosk),
                        ("schema_version", str(SCHEMA_VERSION)),
                    ],
                )
            elif not _readable_schema(meta.get("schema_version")):
                raise OutboxError(
                    f"kiosk database {self.path} has outbox schema "
                    f"{meta.get('schema_version')!r}; this release reads "
                    f"{sorted(READABLE_SCHEMA_VERSIONS)}: run the release that wrote it "
                    "(docs/updates.md, rollback)"
                )
            elif meta.get("kiosk") != self.kiosk:
                raise OutboxError(
                    f"kiosk database {self.path} belongs to kiosk {meta.get('kiosk')!r}, "
                    f"not {self.kiosk!r}; point agent.database at this kiosk's own file"
                )

    def _meta(self, key: str) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0])

    @contextlib.contextmanager
    def _housekeeping(self) -> Iterator[None]:
        """A write transaction that may go ``_housekeeping_pages`` past max_db_bytes."""
        self.conn.execute(f"PRAGMA max_page_count={self._max_pages + self._housekeeping_pages}")
        try:
            with self._write():
                yield
        finally:
            # Never below the file's current size: SQLite keeps the larger value.
            self.conn.execute(f"PRAGMA max_page_count={self._max_pages}")

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.conn.execute("COMMIT")
            except BaseException:
                # On SQLITE_FULL (and some I/O errors) SQLite has already rolled the
                # transaction back by itself; a second ROLLBACK would raise "no
                # transaction is active" and hide the real error. A COMMIT that
                # failed leaves the transaction open: roll it back here.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def local_write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the kiosk's own tables only (no records, no hooks).

        For bookkeeping such as "the slip was printed": it may go past the
        filing limits like acks do, so it still works on a full kiosk.
        """
        with self._housekeeping():
            yield self.conn

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, held against other threads' transactions, for reads of own tables."""
        with self.lock:
            yield self.conn

    # -- writing records --------------------------------------------------------
    def _free_disk(self) -> int:
        """Free bytes on the database's disk (statvfs), cached while far from the reserve.

        More than DISK_RECHECK_MARGIN above the reserve, one statvfs a second
        is enough: no second of filings writes that much, and a disk that fills
        anyway still refuses cleanly (SQLITE_FULL becomes OutboxFull). Closer,
        every transaction looks again.
        """
        now = time.monotonic()
        if (
            now - self._disk_checked_at >= 1.0
            or self._disk_free - self.min_free_disk_bytes < DISK_RECHECK_MARGIN
        ):
            self._disk_free = shutil.disk_usage(self.path.parent).free
            self._disk_checked_at = now
        return self._disk_free

    def _check_room(self) -> int:
        """Raise OutboxFull at a limit; return the last seq used (inside a transaction)."""
        # Cheap upper bound first (index look-ups); count only near the limit.
        first, last = self.conn.execute(
            "SELECT (SELECT min(seq) FROM outbox WHERE state = 'queued'),"
            " max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),"
            " coalesce((SELECT max(seq) FROM outbox), 0))"
        ).fetchone()
        queued = 0 if first is None else last - first + 1
        if queued >= self.max_queued:
            queued = self.conn.execute(
                "SELECT count(*) FROM outbox WHERE state = 'queued'"
            ).fetchone()[0]
        if queued >= self.max_queued:
            raise OutboxFull(
                f"outbox holds {queued} records waiting to sync, the limit is {self.max_queued} "
                "(sync.max_queued); new filings are refused until the kiosk is back online "
                "and central has acknowledged them"
            )
        free = self._free_disk()
        if free < self.min_free_disk_bytes:
            raise OutboxFull(
                f"only {free} bytes free on the disk holding {self.path}, the reserve is "
                f"{self.min_free_disk_bytes} (sync.min_free_disk_bytes); free disk space or "
                "wait for synced records to be purged"
            )
        return int(last)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction: add records, write your own rows, commit together.

        On any exception nothing of the transaction is kept. A full disk or
        database raises :class:`OutboxFull`.
        """
        conn = self.conn
        try:
            # _write() written out: one context manager less on the filing's path.
            with self.lock:
                if conn.in_transaction:
                    # Only this thread can be here (the lock is re-entrant): a
                    # transaction opened inside another one's block.
                    raise OutboxError(
                        "Outbox.transaction() called inside another transaction of the same "
                        "thread; add the records to the open transaction instead"
                    )
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield Transaction(self, next_seq=self._check_room() + 1)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # see _write
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:
            if sqlite_code(exc) == sqlite3.SQLITE_FULL:
                raise OutboxFull(
                    f"the kiosk database {self.path} is full ({exc}); limit "
                    f"{self.max_db_bytes} bytes (sync.max_db_bytes) or the disk itself. "
                    "Records already committed are safe and keep syncing."
                ) from exc
            raise
        # Committed: whatever a hook does, the records are durable and the
        # caller's promise stands, so a failing hook is logged, never raised.
        for hook in self.on_commit:  # e.g. SyncClient.wake
            try:
                hook()
            except Exception:
                log.exception("outbox on_commit hook failed (the records are committed)")

    def add(self, kind: str, body: dict[str, Any]) -> Record:
        """Commit one record on its own; returns it once it is durable."""
        with self.transaction() as tx:
            return tx.add(kind, body)

    # -- the sync side ------------------------------------------------------------
    @_locked
    def pending(self, *, after_seq: int = 0, limit: int = 256) -> list[Pending]:
        rows = self.conn.execute(
            "SELECT seq, id, payload FROM outbox WHERE state = 'queued' AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (after_seq, limit),
        ).fetchall()
        return [Pending(seq=r[0], id=r[1], payload=bytes(r[2])) for r in rows]

    @_locked
    def record_digests(self, ids: Sequence[str]) -> dict[str, str]:
        """The digests of the records held under ``ids`` (any state; purged ones absent),
        which a signed ack must name before they are marked (sync.wire_signing.check_ack)."""
        out: dict[str, str] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ", ".join("?" for _ in part)
            for rid, payload in self.conn.execute(
                f"SELECT id, payload FROM outbox WHERE id IN ({marks})", part
            ):
                out[rid] = stored_record_digest(bytes(payload))
        return out

    @_locked
    def mark_acked(self, ids: Sequence[str]) -> int:
        """Mark records acked (one transaction); returns how many changed state."""
        if not ids:
            return 0
        now = time.time()
        with self._housekeeping():
            cur = self.conn.executemany(
                "UPDATE outbox SET state = 'acked', done_at = ? WHERE id = ? AND state = 'queued'",
                [(now, i) for i in ids],
            )
        return cur.rowcount

    @_locked
    def mark_rejected(self, rejections: Sequence[tuple[str, str]]) -> int:
        if not rejections:
            return 0
        now = time.time()
        with self._housekeeping():
            cur = self.conn.executemany(
                "UPDATE outbox SET state = 'rejected', done_at = ?, reason = ?"
                " WHERE id = ? AND state = 'queued'",
                [(now, reason, i) for i, reason in rejections],
            )
        return cur.rowcount

    @_locked
    def purge(self, *, retention_s: float, now: float | None = None) -> int:
        """Delete acked records acknowledged more than ``retention_s`` ago."""
        cutoff = (time.time() if now is None else now) - retention_s
        with self._housekeeping():
            cur = self.conn.execute(
                "DELETE FROM outbox WHERE state = 'acked' AND done_at < ?", (cutoff,)
            )
        if cur.rowcount:
            # Give the WAL's space back to the disk: until a checkpoint the WAL
            # only grows, so on a nearly full disk the free-disk reserve would
            # keep refusing new records even after the purge.
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount

    # -- reading ------------------------------------------------------------------
    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the same connection, for reading (the writes are plain SQL).

        Imported on first use: loading it (and its plugins) costs an agent's
        start about 0.1 s, and the sync loop never reads through it.
        """
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    @_locked
    def data_version(self) -> int:
        """A number that changes when another connection commits to this database.

        ``PRAGMA data_version``: no read of the tables, so the sync loop can
        look for records filed by another process without querying the outbox.
        """
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    @_locked
    def state_of(self, record_id: str) -> str | None:
        row = self.conn.execute("SELECT state FROM outbox WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else str(row[0])

    @_locked
    def stats(self) -> OutboxStats:
        counts = dict(
            self.conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
        )
        oldest = next(
            self.db["outbox"].rows_where(
                "state = 'queued'", order_by="seq", select="created", limit=1
            ),
            None,
        )
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return OutboxStats(
            queued=int(counts.get("queued", 0)),
            acked=int(counts.get("acked", 0)),
            rejected=int(counts.get("rejected", 0)),
            oldest_queued_created=None if oldest is None else str(oldest["created"]),
            db_bytes=int(pages) * int(page_size),
        )

    @_locked
    def records(self, state: str | None = None) -> list[dict[str, Any]]:
        """All records (or those in one state) as dicts with the decoded body."""
        rows = self.db["outbox"].rows_where(
            "state = ?" if state is not None else None,
            [state] if state is not None else None,
            order_by="seq",
            select="seq, id, kind, state, reason, payload",
        )
        out = []
        for row in rows:
            row["body"] = json.loads(bytes(row.pop("payload")))["body"]
            out.append(row)
        return out

    @_locked
    def close(self) -> None:
        self.conn.close()

    # -- reading only -------------------------------------------------------------
    @classmethod
    def open_readonly(cls, path: Path | str, kiosk: str | None = None) -> Outbox:
        """An existing kiosk database opened for reading only (reports, ``outbox status``).

        Never creates a file, never writes (SQLite refuses any write through it).
        Raises :class:`OutboxMissing` when there is no file, :class:`OutboxUnopenable`
        when the path cannot be opened (a directory, permissions),
        :class:`OutboxCorrupt` when it is not a readable kiosk database, and
        :class:`OutboxError` when it belongs to another kiosk than ``kiosk``.
        As root, a -wal/-shm SQLite creates beside it gets the file's owner and mode.
        """
        p = Path(path)
        if not p.exists() and not p.is_symlink():
            reason = why_unopenable(p, write=False)
            raise OutboxMissing(f"no kiosk database at {p}" + (f" ({reason})" if reason else ""))
        reason = why_unopenable(p, write=False)
        if reason is not None:
            raise OutboxUnopenable(f"cannot read kiosk database {p}: {reason}")
        conn = sqlite3.connect(
            f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0, isolation_level=None
        )
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if "stream" not in meta:
                raise sqlite3.DatabaseError("no stream id in its meta table")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise OutboxCorrupt(
                f"{p} is not a readable kiosk database ({exc}); if it is the kiosk's, copy it "
                f"somewhere safe and run 'aps-agent outbox salvage {p} OUTPUT'"
            ) from exc
        if kiosk is not None and meta.get("kiosk") != kiosk:
            conn.close()
            raise OutboxError(
                f"kiosk database {p} belongs to kiosk {meta.get('kiosk')!r}, not {kiosk!r}"
            )
        ob = cls.__new__(cls)
        ob.path, ob.kiosk, ob.conn = p, str(meta.get("kiosk", "")), conn
        ob.max_queued, ob.max_db_bytes = 0, 0
        ob.min_free_disk_bytes, ob.max_record_bytes = 0, 0
        ob.lock = threading.RLock()
        ob.on_commit = []
        ob.stream = str(meta["stream"])  # ob.db (sqlite-utils) is made on first use
        return ob


def _readable_schema(value: str | None) -> bool:
    """True for a stored ``schema_version`` this release reads (absent: the first schema)."""
    if value is None:
        return True
    try:
        return int(value) in READABLE_SCHEMA_VERSIONS
    except ValueError:
        return False
