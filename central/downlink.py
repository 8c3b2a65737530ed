"""Central's downlink service: answers state requests, routes remote calls, nudges kiosks.

Theory of operation
-------------------
It rides on the collector's MQTT connection (same identity: the collector
role may read every kiosk's ``up/#`` and write every ``down/#``;
docs/broker.md). The collector subscribes to ``aps/v1/+/up/state-request``
and ``aps/v1/+/up/rpc`` as well (in its ``$share`` group when it has one, so
exactly one of several collectors answers each request) and hands those
messages to :meth:`DownlinkService.submit` from its network thread, before
its own record quotas.

``submit`` is cheap and never blocks: a per-kiosk token bucket
(``requests_per_s``, ``burst``) drops a flooding kiosk's requests (counted;
the kiosk asks again after its reply timeout), and a bounded queue drops
what does not fit (counted). Other kiosks' requests are unaffected by one
kiosk's flood: each has its own bucket, and at most ``burst`` of one
kiosk's requests can sit in the queue at any time.

The worker thread answers state requests from the downlink log
(:mod:`central.downlink_log`): the kiosk's claimed ``office`` is checked
against what central has for it (first claim trusted, later different
claims refused with no reply and an ERROR naming the fix), then the current
items after the kiosk's cursor for its audiences (fleet, its office, itself),
at most ``limit`` items and 256 KiB encoded (``more`` tells it to ask
again). An item too big to ever fit a reply is skipped with an ERROR (and
the cursor moves past it): publishers check with
:func:`sync.downlink.check_item_size` first, so this only guards the log.

Remote calls go to handlers registered by method name
(:meth:`DownlinkService.register_rpc`), run on a small thread pool (a slow
signing provider does not hold up state replies), at most
``rpc_per_kiosk`` in progress per kiosk. A handler raising
:class:`RpcFailure` answers with its code and message; any other exception
answers ``internal`` (logged, details stay at central).

The nudger (same worker, every ``nudge_interval_s``) asks the log which
audiences got items since it last looked (:func:`changed_audiences`, an
index range scan) and publishes one ``nudge`` with the newest cursor to
each kiosk those audiences reach (:func:`kiosks_of`). A lost nudge costs
nothing but latency: kiosks also ask on every connect.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import audit, backoffice_db, downlink_log
from central.fleet import desired_config
from sync.downlink import (
    DOWN_NUDGE,
    DOWN_RPC,
    DOWN_STATE,
    MAX_ITEM_BYTES,
    MAX_PAGE_ITEMS,
    MAX_RPC_BYTES,
    MAX_STATE_BYTES,
    UP_RPC,
    UP_STATE_REQUEST,
    DownlinkError,
    Item,
    Nudge,
    RpcReply,
    StateReply,
    decode_rpc_request,
    decode_state_request,
    down_topic,
    encode_json,
    split_topic,
)
from sync.envelope import TOPIC_ROOT
from sync.wire_signing import SIGNATURE_BYTES, sign_downlink

log = logging.getLogger("aps.downlink")

RpcHandler = Callable[[str, dict[str, Any]], dict[str, Any]]
Publish = Callable[[str, bytes], object]


class RpcFailure(Exception):
    """Raised by an rpc handler: the kiosk gets ``{"code", "message"}`` (Vietnamese if shown)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True)
class DownlinkSettings:
    requests_per_s: float = 5.0
    burst: int = 20
    queue_max: int = 2000
    nudge_interval_s: float = 1.0
    rpc_workers: int = 4
    rpc_per_kiosk: int = 4
    max_tracked_kiosks: int = 100_000


@dataclass
class DownlinkCounters:
    state_requests: int = 0
    state_replies: int = 0
    items_sent: int = 0
    rpc_requests: int = 0
    rpc_errors: int = 0
    nudges: int = 0
    throttled: int = 0
    queue_full: int = 0
    invalid: int = 0
    office_conflicts: int = 0
    oversize_items: int = 0
    per_kiosk_throttled: dict[str, int] = field(default_factory=dict)


def subscriptions(shared_group: str | None) -> list[str]:
    """The collector's extra subscriptions for the downlink service."""
    out = []
    for name in (UP_STATE_REQUEST, UP_RPC):
        base = f"{TOPIC_ROOT}/+/up/{name}"
        out.append(f"$share/{shared_group}/{base}" if shared_group else base)
    return out


def is_downlink_topic(mqtt_topic: str) -> bool:
    return mqtt_topic.endswith(f"/up/{UP_STATE_REQUEST}") or mqtt_topic.endswith(f"/up/{UP_RPC}")


class _Bucket:
    __slots__ = ("at", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


class KioskThrottle:
    """One token bucket per kiosk (least recently seen forgotten beyond ``max_kiosks``)."""

    def __init__(self, rate: float, burst: int, max_kiosks: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_kiosks = max_kiosks
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, kiosk: str, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(kiosk)
            if bucket is None:
                bucket = _Bucket(float(self.burst), t)
                self._buckets[kiosk] = bucket
                if len(self._buckets) > self.max_kiosks:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(kiosk)
                bucket.tokens = min(float(self.burst), bucket.tokens + (t - bucket.at) * self.rate)
                bucket.at = t
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True


class DownlinkService:
    """State replies, remote calls and nudges, on a publish function (the collector's client)."""

    def __init__(
        self,
        *,
        database: backoffice_db.Target | str,
        publish: Publish,
        signing_key: Ed25519PrivateKey,
        settings: DownlinkSettings | None = None,
    ) -> None:
        """Everything sent goes through ``publish`` signed with ``signing_key`` (central's
        ``[security] signing_key``, domain ``aps-downlink-v1``): the kiosk acts on nothing
        else (docs/protocol.md, "Signed downlink")."""
        self.database = database if isinstance(database, backoffice_db.PgTarget) else Path(database)
        self.settings = settings or DownlinkSettings()
        self._publish_raw = publish
        self._signing_key = signing_key
        self.counters = DownlinkCounters()
        self._rpc: dict[str, RpcHandler] = {}
        self._queue: queue.Queue[tuple[str, str, bytes]] = queue.Queue(
            maxsize=self.settings.queue_max
        )
        self._throttle = KioskThrottle(
            self.settings.requests_per_s, self.settings.burst, self.settings.max_tracked_kiosks
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="downlink", daemon=True)
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.rpc_workers, thread_name_prefix="downlink-rpc"
        )
        self._rpc_lock = threading.Lock()
        self._rpc_running: dict[str, int] = {}
        self._nudged_up_to: int | None = None
        self.ready = threading.Event()  # the worker has its connection and nudge baseline

    # -- registration -------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes) -> None:
        """The one way out: every message signed (the downlink's choke point)."""
        self._publish_raw(topic, sign_downlink(payload, self._signing_key))

    def register_rpc(self, method: str, fn: RpcHandler) -> None:
        """``fn(kiosk, params) -> result`` answers ``method`` (e.g. ``sign.start``)."""
        self._rpc[method] = fn

    # -- network thread -------------------------------------------------------------------
    def submit(self, mqtt_topic: str, payload: bytes) -> bool:
        """Take one message from the collector's network thread; never blocks."""
        parts = split_topic(mqtt_topic)
        if parts is None or parts[1] != "up" or parts[2] not in (UP_STATE_REQUEST, UP_RPC):
            self.counters.invalid += 1
            return False
        kiosk, _, name = parts
        if not self._throttle.admit(kiosk):
            self.counters.throttled += 1
            per = self.counters.per_kiosk_throttled
            if kiosk in per or len(per) < 1000:
                per[kiosk] = per.get(kiosk, 0) + 1
            return False
        try:
            self._queue.put_nowait((kiosk, name, payload))
        except queue.Full:
            self.counters.queue_full += 1
            return False
        return True

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        next_nudge = 0.0
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = backoffice_db.connect(self.database)
                    if self._nudged_up_to is None:
                        self._nudged_up_to = downlink_log.latest_cursor(conn)
                    self.ready.set()
                now = time.monotonic()
                if now >= next_nudge:
                    self.nudge_changed(conn)
                    next_nudge = now + self.settings.nudge_interval_s
                try:
                    kiosk, name, payload = self._queue.get(
                        timeout=max(0.0, min(next_nudge - time.monotonic(), 1.0))
                    )
                except queue.Empty:
                    continue
                if name == UP_STATE_REQUEST:
                    self.answer_state(conn, kiosk, payload)
                else:
                    self._start_rpc(kiosk, payload)
            except Exception:
                log.exception("downlink service step failed; reopening the database")
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        log.debug("closing failed", exc_info=True)
                conn = None
                self._stop.wait(1.0)
        if conn is not None:
            conn.close()

    # -- state requests ----------------------------------------------------------------------
    def answer_state(self, conn: sqlite3.Connection, kiosk: str, payload: bytes) -> bool:
        """Answer one state request (worker thread; public for tests). True if answered."""
        self.counters.state_requests += 1
        try:
            req = decode_state_request(payload)
        except DownlinkError as exc:
            self.counters.invalid += 1
            log.warning("ignored an invalid state request from %s: %s", kiosk, exc.reason)
            return False
        if req.kiosk != kiosk:
            self.counters.invalid += 1
            log.warning(
                "ignored a state request on kiosk %s's topic naming kiosk %s", kiosk, req.kiosk
            )
            return False
        try:
            self._claim(conn, kiosk, req.office)
        except downlink_log.OfficeConflict as exc:
            self.counters.office_conflicts += 1
            log.error("refused a state request: %s", exc)
            return False
        reply = self.state_reply(conn, kiosk, req.request, req.cursor, req.limit)
        self._publish(down_topic(kiosk, DOWN_STATE), reply.encode())
        self.counters.state_replies += 1
        self.counters.items_sent += len(reply.items)
        return True

    def _claim(self, conn: sqlite3.Connection, kiosk: str, office: str) -> None:
        known = downlink_log.office_of(conn, kiosk)
        if known == office:
            return
        with backoffice_db.transaction(conn):
            first = downlink_log.office_of(conn, kiosk) is None
            downlink_log.claim_office(conn, kiosk, office)
            if first:
                audit.record(
                    conn, f"kiosk:{kiosk}", "kiosk.office-claimed", kiosk, {"office": office}
                )
                log.info("kiosk %s claims office %s (first claim, trusted)", kiosk, office)
                # its office's remote configuration, set before central knew the kiosk
                desired_config.publish(conn, kiosk, actor="central", now=time.time())

    def state_reply(
        self, conn: sqlite3.Connection, kiosk: str, request: str, cursor: int, limit: int
    ) -> StateReply:
        """The reply to one request: at most ``limit`` items and MAX_STATE_BYTES encoded."""
        audiences = downlink_log.audiences_for(conn, kiosk)
        logged, next_cursor, more = downlink_log.items_since(
            conn, audiences, cursor, limit=min(limit, MAX_PAGE_ITEMS)
        )
        items: list[Item] = []
        size = 0
        budget = MAX_STATE_BYTES - 512 - SIGNATURE_BYTES  # the reply's own fields, its sig
        for entry in logged:
            item = Item(cursor=entry.cursor, kind=entry.kind, key=entry.key, body=entry.body)
            item_size = len(encode_json(item.wire())) + 1
            if item_size > MAX_ITEM_BYTES:
                self.counters.oversize_items += 1
                log.error(
                    "downlink item %s %s at cursor %d is %d bytes, over %d: it can never be "
                    "sent; skipped (kiosk %s moves past it)",
                    entry.kind,
                    entry.key,
                    entry.cursor,
                    item_size,
                    MAX_ITEM_BYTES,
                    kiosk,
                )
                if not items:  # nothing before it in this page: move the cursor past it
                    return StateReply(
                        request=request, items=(), next_cursor=entry.cursor, more=True
                    )
                break
            if size + item_size > budget:
                break
            items.append(item)
            size += item_size
        if len(items) < len(logged):
            return StateReply(
                request=request, items=tuple(items), next_cursor=items[-1].cursor, more=True
            )
        return StateReply(request=request, items=tuple(items), next_cursor=next_cursor, more=more)

    # -- remote calls -------------------------------------------------------------------------
    def _start_rpc(self, kiosk: str, payload: bytes) -> None:
        self.counters.rpc_requests += 1
        try:
            req = decode_rpc_request(payload)
        except DownlinkError as exc:
            self.counters.invalid += 1
            log.warning("ignored an invalid rpc from %s: %s", kiosk, exc.reason)
            return
        if req.kiosk != kiosk:
            self.counters.invalid += 1
            log.warning("ignored an rpc on kiosk %s's topic naming kiosk %s", kiosk, req.kiosk)
            return
        with self._rpc_lock:
            running = self._rpc_running.get(kiosk, 0)
            if running >= self.settings.rpc_per_kiosk:
                busy = True
            else:
                busy = False
                self._rpc_running[kiosk] = running + 1
        if busy:
            self.counters.rpc_errors += 1
            self._reply_rpc(
                kiosk,
                RpcReply(
                    request=req.request,
                    ok=False,
                    error_code="busy",
                    error_message=f"{self.settings.rpc_per_kiosk} calls of this kiosk in progress",
                ),
            )
            return
        self._pool.submit(self._run_rpc, kiosk, req.request, req.method, req.params)

    def _run_rpc(self, kiosk: str, request: str, method: str, params: dict[str, Any]) -> None:
        try:
            reply = self.call_handler(kiosk, request, method, params)
            self._reply_rpc(kiosk, reply)
        except Exception:
            log.exception("rpc %s from %s: the reply could not be sent", method, kiosk)
        finally:
            with self._rpc_lock:
                left = self._rpc_running.get(kiosk, 1) - 1
                if left <= 0:
                    self._rpc_running.pop(kiosk, None)
                else:
                    self._rpc_running[kiosk] = left

    def call_handler(
        self, kiosk: str, request: str, method: str, params: dict[str, Any]
    ) -> RpcReply:
        handler = self._rpc.get(method)
        if handler is None:
            self.counters.rpc_errors += 1
            return RpcReply(
                request=request,
                ok=False,
                error_code="unknown-method",
                error_message=f"central has no method {method!r}",
            )
        try:
            result = handler(kiosk, params)
        except RpcFailure as exc:
            self.counters.rpc_errors += 1
            return RpcReply(
                request=request, ok=False, error_code=exc.code, error_message=exc.message
            )
        except Exception:
            self.counters.rpc_errors += 1
            log.exception("rpc handler %s failed for kiosk %s", method, kiosk)
            return RpcReply(
                request=request,
                ok=False,
                error_code="internal",
                error_message="central could not complete the call",
            )
        reply = RpcReply(request=request, ok=True, result=result)
        if len(reply.encode()) + SIGNATURE_BYTES > MAX_RPC_BYTES:
            self.counters.rpc_errors += 1
            log.error("rpc %s result over %d bytes; not sent", method, MAX_RPC_BYTES)
            return RpcReply(
                request=request,
                ok=False,
                error_code="internal",
                error_message="the result is too big to send",
            )
        return reply

    def _reply_rpc(self, kiosk: str, reply: RpcReply) -> None:
        self._publish(down_topic(kiosk, DOWN_RPC), reply.encode())

    # -- nudges ----------------------------------------------------------------------------------
    def nudge_changed(self, conn: sqlite3.Connection) -> int:
        """Nudge every kiosk whose audiences got items since the last look; how many."""
        after = self._nudged_up_to if self._nudged_up_to is not None else 0
        changed, newest = downlink_log.changed_audiences(conn, after)
        self._nudged_up_to = max(after, newest)
        if not changed:
            return 0
        kiosks = downlink_log.kiosks_of(conn, changed)
        payload = Nudge(cursor=newest).encode()
        for kiosk in sorted(kiosks):
            try:
                self._publish(down_topic(kiosk, DOWN_NUDGE), payload)
            except Exception:
                log.exception("could not nudge kiosk %s", kiosk)
        self.counters.nudges += len(kiosks)
        return len(kiosks)
