"""The kiosk's downstream state machine (sans-I/O): ask, apply, page, retry.

Theory of operation
-------------------
A kiosk holds one **cursor**: the highest downlink cursor whose items it has
applied (stored in its own database, in the same transaction as the items).
This machine decides when to ask central for what came after it
(docs/protocol.md, "Downlink"); the adapter (:class:`sync.client.SyncClient`)
feeds it events and carries out its actions:

- ``SendRequest``: publish a state request (a new ULID each time);
- ``ApplyPage``: give the reply's items and ``next_cursor`` to the application,
  which commits both in one transaction, then report back with
  :meth:`StateSync.applied` (the cursor now stored) or
  :meth:`StateSync.apply_failed`.

At most one request is outstanding. A reply whose ``request`` is not the
outstanding one (a replay, a late answer to a request given up on, another
kiosk's) is ignored and counted. A reply is applied before anything else is
asked: the next page is requested only after :meth:`applied`, from the cursor
the application says it stored, so a crash anywhere re-asks from what is on
disk and nothing is skipped; the application's per-key "never backwards"
rule makes a page applied twice a no-op.

When to ask: on every (re)connect; again while the reply says ``more``; on a
nudge whose cursor is above the stored one (during an outstanding request it
is remembered and asked for once that page is applied); when central says
it is back (:meth:`poke`). A request with no reply within ``reply_timeout_s``
is sent again, at most ``max_attempts`` times in a row; then the machine
waits ``idle_retry_s`` (or the next nudge or reconnect) before trying again,
so a kiosk whose central is down sends a handful of requests per
``idle_retry_s``, not a stream. A failed apply is retried after
``reply_timeout_s`` the same way.

Events x state, one table:

=================  ===============  ==============================================
event              state            effect
=================  ===============  ==============================================
connected(cursor)  any              online; cursor stored; SendRequest
disconnected       any              offline; nothing outstanding
nudge(c)           online, idle     SendRequest if c > cursor
nudge(c)           online, waiting  remember c if c > cursor
poke               online, idle     SendRequest
reply(r)           r is outstanding ApplyPage(r); nothing outstanding
reply(r)           otherwise        ignored, counted
applied(cursor)    online           cursor stored; SendRequest if more or a nudge
                                    above it came meanwhile
apply_failed       online           retry after reply_timeout_s
tick(now)          waiting, late    SendRequest again, or give up for idle_retry_s
tick(now)          retry due        SendRequest
=================  ===============  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sync.downlink import MAX_PAGE_ITEMS, StateReply, StateRequest
from sync.ids import new_ulid


@dataclass(frozen=True, kw_only=True)
class SendRequest:
    request: StateRequest


@dataclass(frozen=True, kw_only=True)
class ApplyPage:
    reply: StateReply


StateAction = SendRequest | ApplyPage


@dataclass
class StateCounters:
    requests: int = 0
    replies: int = 0
    ignored_replies: int = 0
    timeouts: int = 0
    pages_applied: int = 0
    apply_failures: int = 0
    nudges: int = 0
    gave_up: int = 0


class StateSync:
    """When to ask central for downstream state, and what to do with a reply."""

    def __init__(
        self,
        *,
        kiosk: str,
        office: str,
        page_limit: int = MAX_PAGE_ITEMS,
        reply_timeout_s: float = 15.0,
        max_attempts: int = 5,
        idle_retry_s: float = 300.0,
        new_id: Callable[[], str] = new_ulid,
    ) -> None:
        if not 1 <= page_limit <= MAX_PAGE_ITEMS:
            raise ValueError(f"page_limit must be 1..{MAX_PAGE_ITEMS}, got {page_limit}")
        if reply_timeout_s <= 0 or idle_retry_s <= 0 or max_attempts < 1:
            raise ValueError("reply_timeout_s and idle_retry_s must be > 0, max_attempts >= 1")
        self.kiosk = kiosk
        self.office = office
        self.page_limit = page_limit
        self.reply_timeout_s = reply_timeout_s
        self.max_attempts = max_attempts
        self.idle_retry_s = idle_retry_s
        self._new_id = new_id
        self.online = False
        self.cursor = 0
        self.outstanding: str | None = None
        self._sent_at = 0.0
        self._attempts = 0
        self._retry_at: float | None = None
        self._applying: str | None = None
        self._wanted = False  # a nudge above the cursor came since the last request
        self.counters = StateCounters()

    # -- helpers ---------------------------------------------------------------------
    def _request(self, now: float) -> list[StateAction]:
        request = StateRequest(
            kiosk=self.kiosk,
            request=self._new_id(),
            cursor=self.cursor,
            office=self.office,
            limit=self.page_limit,
        )
        self.outstanding = request.request
        self._sent_at = now
        self._retry_at = None
        self._wanted = False
        self.counters.requests += 1
        return [SendRequest(request=request)]

    def _busy(self) -> bool:
        return self.outstanding is not None or self._applying is not None

    # -- events -------------------------------------------------------------------------
    def connected(self, now: float, cursor: int) -> list[StateAction]:
        self.online = True
        self.cursor = cursor
        self._attempts = 0
        self._applying = None
        return self._request(now)

    def disconnected(self) -> list[StateAction]:
        self.online = False
        self.outstanding = None
        self._applying = None
        self._retry_at = None
        return []

    def nudge(self, cursor: int, now: float) -> list[StateAction]:
        self.counters.nudges += 1
        if not self.online or cursor <= self.cursor:
            return []
        if self._busy():
            self._wanted = True
            return []
        self._attempts = 0
        return self._request(now)

    def poke(self, now: float) -> list[StateAction]:
        """A collector has just (re)subscribed: ask now.

        A request still out may have been published before it subscribed, to
        nobody, and would otherwise wait out ``reply_timeout_s``: it is replaced
        (a late reply to it is ignored, like any reply to a request not out). A
        page being applied is asked again after it is committed.
        """
        if not self.online:
            return []
        if self._applying is not None:
            self._wanted = True
            return []
        self._attempts = 0
        return self._request(now)

    def reply(self, reply: StateReply, now: float) -> list[StateAction]:
        if not self.online or reply.request != self.outstanding:
            self.counters.ignored_replies += 1
            return []
        self.counters.replies += 1
        self.outstanding = None
        self._attempts = 0
        self._applying = reply.request
        return [ApplyPage(reply=reply)]

    def applied(self, reply: StateReply, now: float, cursor: int) -> list[StateAction]:
        """The application committed ``reply``; ``cursor`` is what it stored."""
        if self._applying != reply.request:
            return []
        self._applying = None
        self.counters.pages_applied += 1
        self.cursor = max(self.cursor, cursor)
        if self.online and (reply.more or self._wanted):
            return self._request(now)
        return []

    def apply_failed(self, reply: StateReply, now: float) -> list[StateAction]:
        if self._applying != reply.request:
            return []
        self._applying = None
        self.counters.apply_failures += 1
        self._retry_at = now + self.reply_timeout_s
        return []

    def next_deadline(self) -> float | None:
        if not self.online:
            return None
        if self.outstanding is not None:
            return self._sent_at + self.reply_timeout_s
        return self._retry_at

    def tick(self, now: float) -> list[StateAction]:
        if not self.online:
            return []
        if self.outstanding is not None:
            if now < self._sent_at + self.reply_timeout_s:
                return []
            self.counters.timeouts += 1
            self._attempts += 1
            if self._attempts >= self.max_attempts:
                self.counters.gave_up += 1
                self.outstanding = None
                self._attempts = 0
                self._retry_at = now + self.idle_retry_s
                return []
            return self._request(now)
        if self._retry_at is not None and now >= self._retry_at and self._applying is None:
            return self._request(now)
        return []
