"""The kiosk's inbox: the newest downlink item per (kind, key), and the cursor.

Theory of operation
-------------------
Central's downlink log gives every change a cursor that only grows
(``central/downlink_log.py``); the kiosk asks for what came after its stored
cursor (``sync.state_sync``). This module is where the answers land, in the
kiosk's own SQLite file (the outbox database), in two tables:

- ``downlink_items (kind, key, cursor, body, applied_at)``: the newest item
  per ``(kind, key)`` (a dossier's status, an answer, a FAQ entry, the
  catalogue), which the screens read, online or not;
- ``downlink_state (name, value)``: ``cursor`` (every item up to it has been
  applied or deliberately skipped), ``last_reply_at`` (unix seconds of the
  last state reply: the age of the offline cache) and ``kinds`` (the item
  kinds this agent validated when it stored the cursor).

:meth:`Inbox.apply` takes one page and, in **one transaction**, validates each
item's body by kind (:class:`sync.downlink.ItemValidators`), runs the kind's
registered handler (helper A's catalogue swap, for example) inside a
savepoint of that transaction, upserts the item, and stores the new cursor.
A crash before the commit leaves the old cursor and the old items, so the
next request gets the same page again; a crash after it asks from the new
cursor. Either way nothing is skipped and nothing is applied twice:

- an item whose cursor is at or below the one stored for its key (or at or
  below the stored cursor) is a no-op, so a page applied again, a replay or
  an out-of-order reply changes nothing;
- the cursor never goes backwards (``max(stored, next_cursor)``), with one
  deliberate exception: an agent that has learnt a new item kind since the
  cursor was stored asks from 0 once (items it holds are no-ops), since the
  items of that kind were skipped as unknown before.

**An invalid item is skipped, counted and logged, and does not hold the
cursor back.** The alternative, refusing the whole page, would wedge the kiosk
for good: central would send the same bad item on every request, and every
item behind it (other dossiers' statuses, answers, the next catalogue) would
never arrive. Skipping loses only the bad item, which is already useless to
this kiosk; its next version (central supersedes by key) arrives as usual. A
handler that raises is treated the same way, and its savepoint is rolled
back, so it never leaves half its rows behind.

After the page's transaction has committed, every ``on_applied`` listener gets
the ``(kind, key)`` of each item applied (stale, invalid and failed items are
not news); the application turns them into the screen's ``downlink`` events.

Writes go through the Outbox's own transaction API (``with
outbox.transaction() as tx: tx.conn``), so the inbox and filing share one
writer. When the outbox refuses new records because it is full
(:class:`sync.outbox.OutboxFull`), downlink items are still applied, through
the outbox's housekeeping transaction (as acks are): a kiosk that cannot
sync up must still learn a status change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.downlink import DownlinkError, Item, ItemValidators
from sync.outbox import Outbox, OutboxFull

log = logging.getLogger("aps.inbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS downlink_items (
    kind TEXT,
    key TEXT,
    cursor INTEGER NOT NULL,
    body TEXT NOT NULL,
    applied_at REAL NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS downlink_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

#: ``handler(conn, item)``: runs inside the page's transaction (a savepoint of it).
KindHandler = Callable[[sqlite3.Connection, Item], None]
#: ``listener([(kind, key), ...])``: the items of one page applied, after its commit.
AppliedListener = Callable[[list[tuple[str, str]]], None]


@dataclass(frozen=True, kw_only=True)
class CachedItem:
    kind: str
    key: str
    cursor: int
    body: dict[str, Any]
    applied_at: float


@dataclass(frozen=True, kw_only=True)
class ApplyResult:
    applied: int
    stale: int
    invalid: int
    failed: int
    cursor: int


@dataclass
class InboxCounters:
    pages: int = 0
    applied: int = 0
    stale: int = 0
    invalid: int = 0
    handler_failures: int = 0
    last_invalid: list[str] = field(default_factory=list)


class Inbox:
    """The kiosk-side cache of downlink items (tables ``downlink_items``, ``downlink_state``)."""

    MAX_REMEMBERED_PROBLEMS = 20

    def __init__(
        self, target: Outbox | sqlite3.Connection, *, validators: ItemValidators | None = None
    ) -> None:
        self._outbox = target if isinstance(target, Outbox) else None
        self.conn = target.conn if isinstance(target, Outbox) else target
        self.validators = validators or ItemValidators()
        self._handlers: dict[str, KindHandler] = {}
        self.counters = InboxCounters()
        #: Called after each page's commit with the (kind, key) of every item applied.
        self.on_applied: list[AppliedListener] = []
        with self._transaction() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- registration --------------------------------------------------------------
    def register(self, kind: str, handler: KindHandler) -> None:
        """Run ``handler(conn, item)`` for each valid new item of ``kind``, in the transaction."""
        self._handlers[kind] = handler

    def register_validator(self, kind: str, validator: Callable[[dict[str, Any]], None]) -> None:
        """Accept items of ``kind`` whose body ``validator`` does not refuse (``catalogue``)."""
        self.validators.register(kind, validator)

    # -- transactions ------------------------------------------------------------------
    def _lock(self) -> contextlib.AbstractContextManager[Any]:
        """The Outbox's lock when it has one (one writer, one connection shared by threads)."""
        lock = getattr(self._outbox, "lock", None)
        return lock if lock is not None else contextlib.nullcontext()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._outbox is not None:
            entered = False
            try:
                with self._outbox.transaction() as tx:
                    entered = True
                    yield tx.conn
                return
            except OutboxFull:
                if entered:  # the database itself is full: nothing was applied
                    raise
                log.info("the outbox is full; applying downlink items in a housekeeping write")
            # The outbox refused the transaction before it began (filing limits):
            # downlink items are not filings; write them as acks are written.
            with self._lock(), self._outbox._housekeeping():
                yield self._outbox.conn
            return
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- applying -------------------------------------------------------------------------
    def apply(
        self, items: Sequence[Item], next_cursor: int, *, now: float | None = None
    ) -> ApplyResult:
        """Apply one state reply's page and store ``next_cursor``, in one transaction."""
        at = time.time() if now is None else now
        applied = stale = invalid = failed = 0
        news: list[tuple[str, str]] = []
        with self._transaction() as conn:
            stored = self._effective_cursor(conn)
            for item in items:
                outcome = self._apply_one(conn, item, stored, at)
                if outcome == "applied":
                    applied += 1
                    news.append((item.kind, item.key))
                elif outcome == "stale":
                    stale += 1
                elif outcome == "invalid":
                    invalid += 1
                else:
                    failed += 1
            new_cursor = max([stored, int(next_cursor), *(i.cursor for i in items)])
            self._set(conn, "cursor", str(new_cursor))
            self._set(conn, "kinds", ",".join(sorted(self.validators.kinds())))
            self._set(conn, "last_reply_at", repr(at))
        c = self.counters
        c.pages += 1
        c.applied += applied
        c.stale += stale
        c.invalid += invalid
        c.handler_failures += failed
        if news:
            for listener in self.on_applied:
                try:
                    listener(news)
                except Exception:  # the screen's news must never cost the cursor
                    log.exception("downlink listener failed")
        return ApplyResult(
            applied=applied, stale=stale, invalid=invalid, failed=failed, cursor=new_cursor
        )

    def _apply_one(self, conn: sqlite3.Connection, item: Item, stored: int, at: float) -> str:
        if item.cursor <= stored:
            return "stale"
        row = conn.execute(
            "SELECT cursor FROM downlink_items WHERE kind = ? AND key = ?", (item.kind, item.key)
        ).fetchone()
        if row is not None and item.cursor <= int(row[0]):
            return "stale"
        try:
            self.validators.check(item.kind, item.key, item.body)
        except DownlinkError as exc:
            self._remember(f"cursor {item.cursor}: {exc.reason}")
            log.warning("skipped invalid downlink item at cursor %d: %s", item.cursor, exc.reason)
            return "invalid"
        handler = self._handlers.get(item.kind)
        conn.execute("SAVEPOINT downlink_item")
        try:
            if handler is not None:
                handler(conn, item)
            conn.execute(
                "INSERT INTO downlink_items (kind, key, cursor, body, applied_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET cursor = excluded.cursor,"
                " body = excluded.body, applied_at = excluded.applied_at"
                " WHERE excluded.cursor > downlink_items.cursor",
                (
                    item.kind,
                    item.key,
                    item.cursor,
                    json.dumps(item.body, ensure_ascii=False, separators=(",", ":")),
                    at,
                ),
            )
        except sqlite3.OperationalError:
            conn.execute("ROLLBACK TO downlink_item")
            conn.execute("RELEASE downlink_item")
            raise  # the database itself failed (full, I/O): the whole page waits
        except Exception as exc:
            conn.execute("ROLLBACK TO downlink_item")
            conn.execute("RELEASE downlink_item")
            self._remember(f"cursor {item.cursor}: {item.kind} handler: {exc}")
            log.exception(
                "the %s handler refused item %s at cursor %d; skipped",
                item.kind,
                item.key,
                item.cursor,
            )
            return "failed"
        conn.execute("RELEASE downlink_item")
        return "applied"

    def _remember(self, problem: str) -> None:
        problems = self.counters.last_invalid
        problems.append(problem[:300])
        del problems[: -self.MAX_REMEMBERED_PROBLEMS]

    @staticmethod
    def _set(conn: sqlite3.Connection, name: str, value: str) -> None:
        conn.execute(
            "INSERT INTO downlink_state (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    @staticmethod
    def _cursor(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM downlink_state WHERE name = 'cursor'").fetchone()
        return 0 if row is None else int(row[0])

    # -- reading ------------------------------------------------------------------------------
    def _effective_cursor(self, conn: sqlite3.Connection) -> int:
        """The stored cursor, or 0 when this agent knows kinds the stored one did not.

        Items of a kind without a validator were skipped (and the cursor moved
        past them); an agent that has since learnt the kind asks from the start
        once, so it gets that kind's current items. Items it holds already are
        no-ops (their per-key cursors), so nothing is applied twice.
        """
        row = conn.execute("SELECT value FROM downlink_state WHERE name = 'kinds'").fetchone()
        stored = self._cursor(conn)
        if row is None:
            return stored
        known = set(str(row[0]).split(",")) - {""}
        if self.validators.kinds() - known:
            return 0
        return stored

    def cursor(self) -> int:
        """Every downlink item up to this cursor has been applied (or skipped as invalid).

        0 after an upgrade that taught the agent a new item kind (see
        :meth:`_effective_cursor`): the kiosk then asks for everything once.
        """
        with self._lock():
            return self._effective_cursor(self.conn)

    def last_reply_at(self) -> float | None:
        """Unix seconds of the last state reply applied (the offline cache's age), or None."""
        with self._lock():
            row = self.conn.execute(
                "SELECT value FROM downlink_state WHERE name = 'last_reply_at'"
            ).fetchone()
        return None if row is None else float(row[0])

    def get(self, kind: str, key: str) -> CachedItem | None:
        with self._lock():
            row = self.conn.execute(
                "SELECT kind, key, cursor, body, applied_at FROM downlink_items"
                " WHERE kind = ? AND key = ?",
                (kind, key),
            ).fetchone()
        return None if row is None else _cached(row)

    def all(self, kind: str) -> list[CachedItem]:
        with self._lock():
            rows = self.conn.execute(
                "SELECT kind, key, cursor, body, applied_at FROM downlink_items"
                " WHERE kind = ? ORDER BY cursor",
                (kind,),
            ).fetchall()
        return [_cached(r) for r in rows]


def _cached(row: tuple[Any, ...]) -> CachedItem:
    kind, key, cursor, body, applied_at = row
    return CachedItem(
        kind=kind, key=key, cursor=int(cursor), body=json.loads(body), applied_at=float(applied_at)
    )


def for_app(app: Any) -> Inbox:
    """The seam ``edge_agent.app.make_inbox`` calls: the inbox of one kiosk application.

    Builds the inbox on the application's outbox (one writer), lets the
    application's catalogue store (``app.catalogues``, a
    ``edge_agent.catalogue.CatalogueStore``) register its validator and its
    handler (the atomic swap, inside the page's transaction), and has the sync
    client ask for downstream state for the kiosk's office (``kiosk.agency``),
    applying every page here.
    """
    inbox = Inbox(app.outbox)
    store = getattr(app, "catalogues", None)
    if store is not None and hasattr(store, "install"):
        store.install(inbox)
    app.sync.attach_state(
        office=app.cfg.kiosk.agency, on_state=inbox.apply, state_cursor=inbox.cursor
    )
    return inbox
