"""Thin paho-mqtt adapter around :class:`sync.machine.SyncMachine`.

Two threads:

- the **network thread** (:class:`sync.mqtt_link.NetworkLoop`) owns the paho
  client: it connects with tenacity (exponential backoff with full jitter,
  interruptible on stop), runs ``client.loop()`` and turns callbacks into
  events on a queue. Callbacks
  never raise (an exception there can kill paho's loop); they log and go on.
- the **sync thread** owns the machine and the outbox connection: it takes
  events off the queue, feeds the machine, and carries out its actions
  (read the outbox, publish stored bytes, mark acked).

The kiosk connects with a clean session: its outbox, not paho's memory or the
broker's, is the only truth about what still has to go.

"Connected" means the SUBACK of *this session's* one SUBSCRIBE: its result
codes are checked (a refused subscription is logged as an ERROR, counted in
``subscribe_failures`` and reported in the heartbeat), and a SUBACK of any
other SUBSCRIBE (made later on the same connection) starts nothing, so the
in-flight window is sent once per session, not once per subscription.

"Connected and deaf" (docs/protocol.md, "Connected but deaf"): a session
that is up but hears nothing is ended by the client itself. A
:class:`sync.deaf_watch.DeafWatch` is told of every SUBACK, every message
on the kiosk's subscriptions, every collector's presence and every
retransmission; after ``deaf_after_ack_timeouts`` ack timeouts in a row of
one in-flight record with nothing at all heard meanwhile (and central not
known to be offline), the client logs a WARNING with what it saw, counts it
in ``deaf_reconnects`` (heartbeat field too) and asks the network loop for a
fresh connection (:meth:`sync.mqtt_link.NetworkLoop.reconnect`), whose
SUBSCRIBE starts a new session. Heals in a row with nothing heard in
between back off like failed connects.

Downstream (docs/protocol.md, "Downlink"): every message on ``down/`` goes
through one :class:`sync.downlink.DownlinkRouter`. With ``on_state`` and
``office`` given, :class:`sync.state_sync.StateSync` asks central for the
state after the stored cursor on every connect, pages while ``more``, asks
again on a nudge, and hands each page to ``on_state(items, next_cursor)``,
which must commit the items and the cursor in one transaction before the
next page is asked for. :meth:`SyncClient.call` is a blocking remote call
over ``up/rpc`` / ``down/rpc``, safe from any thread.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync import SyncError
from sync.deaf_watch import DeafWatch
from sync.downlink import (
    DOWN_ACKS,
    DOWN_NUDGE,
    DOWN_RPC,
    DOWN_STATE,
    MAX_RPC_BYTES,
    METHOD_RE_TEXT,
    UP_RPC,
    UP_STATE_REQUEST,
    DownlinkError,
    DownlinkRouter,
    Item,
    RpcReply,
    RpcRequest,
    decode_nudge,
    decode_rpc_reply,
    decode_state_reply,
    up_topic,
)
from sync.envelope import (
    CENTRAL_TOPICS,
    Ack,
    EnvelopeError,
    decode_object,
    encode_heartbeat,
    encode_status,
    heartbeat_topic,
    is_central_topic,
    new_instance,
    records_topic,
    status_topic,
    topic,
)
from sync.envelope_signing import EnvelopeSignatureError
from sync.ids import new_ulid
from sync.machine import Action, Fetch, MarkAcked, MarkRejected, Publish, SyncMachine
from sync.mqtt_link import MqttSettings, NetworkLoop, make_paho_client
from sync.outbox import Outbox
from sync.state_sync import ApplyPage, SendRequest, StateAction, StateSync
from sync.wire_signing import (
    KEYS_TOPIC,
    AckRefused,
    KioskIdentity,
    check_ack,
    sign_record,
    verify_downlink,
)

log = logging.getLogger("aps.sync")


@dataclass(frozen=True, kw_only=True)
class SyncSettings:
    inflight_window: int = 256
    inflight_bytes: int = 4 * 1024 * 1024
    ack_timeout_s: float = 30.0
    #: How often the idle sync looks for records committed by another process
    #: (PRAGMA data_version, no outbox read); commits in this process wake it
    #: at once through SyncClient.wake (Outbox.on_commit).
    tick_s: float = 2.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 300.0
    heartbeat_interval_s: float = 60.0
    #: A heartbeat asked for early (a device changed state: SyncClient.heartbeat_soon) is
    #: sent at once, but never sooner than this after the previous one.
    heartbeat_min_gap_s: float = 5.0
    retention_s: float = 7 * 86400.0
    purge_interval_s: float = 3600.0
    #: Downstream state (docs/protocol.md, "Downlink"): a state request not
    #: answered in this time is sent again, at most state_max_attempts times
    #: in a row; then the kiosk waits state_idle_retry_s (or a nudge).
    state_reply_timeout_s: float = 15.0
    state_max_attempts: int = 5
    state_idle_retry_s: float = 300.0
    state_page_limit: int = 100
    #: Remote calls waiting for a reply at once, at most (more raise RpcError "busy").
    rpc_max_outstanding: int = 8
    #: Connected and deaf: this many ack timeouts in a row of an in-flight record with
    #: nothing at all heard downlink meanwhile make the kiosk reconnect (sync.deaf_watch).
    deaf_after_ack_timeouts: int = 3


@dataclass
class SyncCounters:
    published: int = 0
    retransmitted: int = 0
    acked: int = 0
    rejected: int = 0
    connects: int = 0
    disconnects: int = 0
    central_restarts: int = 0
    last_ack_at: float | None = None
    #: Subscriptions the broker refused (SUBACK failure codes), since start.
    subscribe_failures: int = 0
    #: SUBACKs of other SUBSCRIBEs than the session's own (they start nothing).
    other_subacks: int = 0
    rpc_calls: int = 0
    rpc_timeouts: int = 0
    rpc_ignored_replies: int = 0
    #: Acks refused whole (not signed by central, another kiosk's, no digests, malformed).
    acks_refused: int = 0
    #: Acked ids left unmarked: central's digest is not this kiosk's record's.
    ack_mismatches: int = 0
    #: Downlink messages dropped unread: not signed by a key of central's.
    downlink_refused: int = 0
    #: Sessions ended because they were connected and deaf (sync.deaf_watch), since start.
    deaf_reconnects: int = 0


class RpcError(SyncError):
    """A remote call failed: central answered with an error, or it could not be sent."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcTimeout(RpcError):
    """No reply to a remote call within its timeout (the call may still have run)."""


@dataclass
class _RpcSlot:
    done: threading.Event = field(default_factory=threading.Event)
    reply: RpcReply | None = None


StateHandler = Callable[[Sequence[Item], int], object]


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


DownHandler = Callable[[str, bytes], None]


def execute_actions(
    actions: list[Action],
    *,
    machine: SyncMachine,
    outbox: Outbox,
    publish: Callable[[bytes], None],
    counters: SyncCounters,
    now: float,
    signing_key: Ed25519PrivateKey,
) -> None:
    """Carry out the machine's actions in order: the kiosk's one sync step.

    Records read from the outbox are signed with ``signing_key`` before the machine
    holds them (:func:`sync.wire_signing.sign_record`: a resend is the same bytes), and
    ``publish`` puts those signed bytes on the up-link (paho in :class:`SyncClient`, an
    in-memory link in the stateful test), so the test and the agent run the same code.
    """
    todo = list(actions)
    while todo:
        action = todo.pop(0)
        if isinstance(action, Fetch):
            pending = [
                replace(p, payload=sign_record(p.payload, signing_key))
                for p in outbox.pending(after_seq=action.after_seq, limit=action.limit)
            ]
            todo[:0] = machine.records(pending, now)
        elif isinstance(action, Publish):
            publish(action.payload)
            counters.published += 1
            if action.attempt > 1:
                counters.retransmitted += 1
        elif isinstance(action, MarkAcked):
            counters.acked += outbox.mark_acked(action.ids)
            counters.last_ack_at = time.time()
        elif isinstance(action, MarkRejected):
            counters.rejected += outbox.mark_rejected(action.rejections)
            for rid, reason in action.rejections:
                log.error("central rejected record %s: %s", rid, reason)


def accept_ack(
    payload: bytes,
    *,
    kiosk: str,
    identity: KioskIdentity,
    outbox: Outbox,
    counters: SyncCounters,
) -> Ack | None:
    """The ack central signed, holding only ids whose digest is this kiosk's record's.

    None (logged, counted) for an ack that must mark nothing; the records it named stay
    queued and are sent again. :class:`SyncClient` and the stateful test both use this.
    """
    try:
        checked = check_ack(
            payload,
            kiosk=kiosk,
            central_keys=identity.central_keys.keys,
            local_digests=outbox.record_digests,
        )
    except AckRefused as exc:
        counters.acks_refused += 1
        log.error("refused an ack (%s): it marks nothing synced; %s", exc.reason, exc)
        return None
    if checked.mismatched:
        counters.ack_mismatches += len(checked.mismatched)
        log.error(
            "central acked %d records with a digest that is not this kiosk's record (first %s);"
            " they stay unsynced and are sent again",
            len(checked.mismatched),
            checked.mismatched[0],
        )
    return checked.ack


class SyncClient:
    """Drains one kiosk's outbox to central over MQTT, until stopped."""

    def __init__(
        self,
        *,
        database: Path,
        kiosk: str,
        mqtt_settings: MqttSettings,
        settings: SyncSettings,
        identity: KioskIdentity,
        outbox_options: dict[str, Any] | None = None,
        heartbeat_fields: Callable[[], dict[str, Any]] | None = None,
        office: str | None = None,
        on_state: StateHandler | None = None,
        state_cursor: Callable[[], int] | None = None,
    ) -> None:
        """``on_state(items, next_cursor)`` commits a page of downlink items and the
        cursor in one transaction (``edge_agent.inbox.Inbox.apply``); ``state_cursor()``
        returns the stored cursor (``Inbox.cursor``). Without ``on_state`` and
        ``office`` the kiosk asks for no downstream state."""
        self.kiosk = kiosk
        self.settings = settings
        #: The kiosk's signing key and central's keys (docs/protocol.md, "Signed envelopes").
        self.identity = identity
        self.outbox = Outbox(database, kiosk, **(outbox_options or {}))
        # This connection only records acks and purges. Losing the last few ack
        # marks to a power cut costs a resend, which central answers with the same
        # ack (idempotent ingest), so it does not wait for fsync: WAL + NORMAL is
        # still atomic and consistent. Filing keeps synchronous=FULL (invariant 1).
        self.outbox.conn.execute("PRAGMA synchronous=NORMAL")
        self.machine = SyncMachine(
            window=settings.inflight_window,
            ack_timeout=settings.ack_timeout_s,
            window_bytes=settings.inflight_bytes,
        )
        self.counters = SyncCounters()
        self.deaf_watch = DeafWatch(
            ack_timeouts=settings.deaf_after_ack_timeouts, ack_timeout_s=settings.ack_timeout_s
        )
        #: Deaf reconnects since anything was last heard (their backoff grows with it).
        self._deaf_in_a_row = 0
        #: Extra ``down/<name>`` handlers (called in the sync thread).
        self.handlers: dict[str, DownHandler] = {}
        self.router = DownlinkRouter(kiosk)
        self.router.on_prefix(CENTRAL_TOPICS.removesuffix("+"), self._on_central)
        self.router.on(DOWN_ACKS, self._on_ack)
        self.router.on(DOWN_STATE, self._on_state_reply)
        self.router.on(DOWN_NUDGE, self._on_nudge)
        self.router.on(DOWN_RPC, self._on_rpc_reply)
        self.router.on_prefix(KEYS_TOPIC, self._on_central_keys)
        self._on_state: StateHandler | None = None
        self._state_cursor: Callable[[], int] | None = None
        self.state: StateSync | None = None
        self._rpc_lock = threading.Lock()
        self._rpc_waiting: dict[str, _RpcSlot] = {}
        self._session_sub: tuple[mqtt.Client, int | None] | None = None
        #: Set from this session's SUBACK to the disconnect: replies can reach us.
        self.session_up = threading.Event()
        # What the router's handlers see of the message being handled (sync thread).
        self._pending: list[Action] = []
        self._now = 0.0
        self._retained = False
        self.heartbeat_fields = heartbeat_fields
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._mqtt_settings = mqtt_settings
        self.instance = new_instance()  # run.box: central tells two boxes apart by it
        self.network = NetworkLoop(
            self._new_client,
            mqtt_settings,
            backoff_min_s=settings.reconnect_min_s,
            backoff_max_s=settings.reconnect_max_s,
            stop=self._stop,
            name=f"mqtt-{kiosk}",
            identity=f"kiosk id {kiosk}",
            farewell=lambda: (status_topic(kiosk), self._status("offline")),
        )
        self._database = Path(database)
        self._thread = threading.Thread(target=self._run, name=f"sync-{kiosk}", daemon=True)
        if on_state is not None and office is not None:
            self.attach_state(office=office, on_state=on_state, state_cursor=state_cursor)
        now = time.monotonic()
        self._next_poll = self._next_heartbeat = self._next_purge = now
        self._last_heartbeat = float("-inf")  # monotonic time of the last heartbeat sent

    def attach_state(
        self,
        *,
        office: str,
        on_state: StateHandler,
        state_cursor: Callable[[], int] | None = None,
    ) -> None:
        """Ask for downstream state for ``office`` (call before :meth:`start`).

        The same as passing ``office``, ``on_state`` and ``state_cursor`` to the
        constructor, for an application that builds its inbox after the client.
        """
        if self._thread.is_alive():
            raise SyncError("attach_state() must be called before start()")
        s = self.settings
        self._on_state = on_state
        self._state_cursor = state_cursor
        self.state = StateSync(
            kiosk=self.kiosk,
            office=office,
            page_limit=s.state_page_limit,
            reply_timeout_s=s.state_reply_timeout_s,
            max_attempts=s.state_max_attempts,
            idle_retry_s=s.state_idle_retry_s,
        )

    def _status(self, state: str) -> bytes:  # with this run's instance (duplicate boxes)
        return encode_status(self.kiosk, state, now_iso(), instance=self.instance)

    def _new_client(self) -> mqtt.Client:
        client = make_paho_client(self.kiosk, self._mqtt_settings)
        client.max_inflight_messages_set(self.settings.inflight_window)
        client.will_set(
            status_topic(self.kiosk),
            self._status("offline"),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -- paho callbacks (network thread; never raise) ------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if rc.is_failure:
                log.error("broker refused the connection: %s", rc)
                return
            self.network.connected.set()
            self.session_up.clear()
            # One SUBSCRIBE, so one SUBACK: only then does the sync start ("connected").
            rc_sub, mid = client.subscribe(
                [(topic(self.kiosk, "down", "#"), 1), (CENTRAL_TOPICS, 1), (KEYS_TOPIC, 1)]
            )
            if rc_sub != mqtt.MQTT_ERR_SUCCESS:
                log.error("could not send SUBSCRIBE: %s", mqtt.error_string(rc_sub))
            self._session_sub = (client, mid)
            client.publish(
                status_topic(self.kiosk),
                self._status("online"),
                qos=1,
                retain=True,
            )
        except Exception:
            log.exception("on_connect failed")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any
    ) -> None:
        try:
            if self._session_sub != (client, mid):
                # Another SUBSCRIBE on this connection: the session already started.
                self.counters.other_subacks += 1
                log.info("SUBACK %d is not this session's subscription; nothing restarts", mid)
                return
            self._session_sub = None
            refused = [str(rc) for rc in rcs if getattr(rc, "is_failure", False)]
            if refused:
                self.counters.subscribe_failures += len(refused)
                log.error(
                    "the broker refused %d of this kiosk's subscriptions (%s): downstream "
                    "messages on them will not arrive; check the kiosk's role (docs/broker.md)",
                    len(refused),
                    ", ".join(refused),
                )
            self.session_up.set()
            self._events.put(("connected", None))
        except Exception:
            log.exception("on_subscribe failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self.session_up.clear()
        self._events.put(("disconnected", None))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._events.put(("message", (msg.topic, bytes(msg.payload), bool(msg.retain))))

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self.network.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; a connected client first publishes its retained "offline" (a clean
        DISCONNECT sends no Last Will), then disconnects."""
        self._stop.set()
        self._events.put(("stop", None))
        self._thread.join(timeout)
        self.network.thread.join(timeout)
        self.outbox.close()

    def is_alive(self) -> bool:
        """True while the sync thread runs (the agent pings systemd's watchdog on it)."""
        return self._thread.is_alive()

    def wake(self) -> None:
        """Tell the sync thread that new records were committed."""
        self._events.put(("tick", None))

    def resync_state(self) -> None:
        """Ask for downstream state again from the application's stored cursor (a remote
        ``resync-catalogue`` job lowers it first), as on a new connection."""
        self._events.put(("resync-state", None))

    def heartbeat_soon(self) -> None:
        """Send a heartbeat now (a device changed state), or as soon as
        ``heartbeat_min_gap_s`` has passed since the last one: a flapping device costs at
        most one heartbeat per gap."""
        self._events.put(("heartbeat", None))

    # -- sync thread ---------------------------------------------------------------
    def _next_wake(self, now: float) -> float:
        """Seconds the idle sync thread may sleep: until its nearest deadline.

        The deadlines: a record due for retransmission, the next heartbeat or
        purge, and the next look for records committed by another process
        (``tick_s``). Everything else (a commit in this process through
        :meth:`wake`, an ack or message, a (dis)connect) is an event that ends
        the sleep at once. Nothing polls the outbox in between.
        """
        deadline = min(self._next_poll, self._next_heartbeat, self._next_purge)
        retransmit = self.machine.next_deadline()
        if retransmit is not None:
            deadline = min(deadline, retransmit)
        if self.state is not None:
            state_due = self.state.next_deadline()
            if state_due is not None:
                deadline = min(deadline, state_due)
        return max(0.0, deadline - now)

    def _run(self) -> None:
        now = time.monotonic()
        self._next_poll = self._next_heartbeat = self._next_purge = now
        seen_version: int | None = None
        while not self._stop.is_set():
            try:
                name, arg = self._events.get(timeout=self._next_wake(time.monotonic()))
            except queue.Empty:
                name, arg = "timer", None
            try:
                now = time.monotonic()
                if name == "heartbeat":  # heartbeat_soon(): early, rate-limited
                    soonest = self._last_heartbeat + self.settings.heartbeat_min_gap_s
                    self._next_heartbeat = min(self._next_heartbeat, max(now, soonest))
                actions = self._dispatch(name, arg, now)
                retransmit = self.machine.next_deadline()
                look = name == "tick"  # wake(): this process committed records
                if now >= self._next_poll:
                    # Records filed by another process: look only if something
                    # committed since the last look (no read of the outbox).
                    version = self.outbox.data_version()
                    look = look or version != seen_version
                    seen_version = version
                    self._next_poll = now + self.settings.tick_s
                if look or (retransmit is not None and now >= retransmit):
                    ticked = self.machine.tick(now)
                    self._watch_deafness(ticked, now)
                    actions += ticked
                self._execute(actions, now)
                if self.state is not None:
                    state_due = self.state.next_deadline()
                    if state_due is not None and now >= state_due:
                        self._run_state(self.state.tick(now), now)
                if now >= self._next_heartbeat:
                    if self.network.connected.is_set():
                        self._heartbeat()
                        self._next_heartbeat = now + self.settings.heartbeat_interval_s
                    else:  # due while offline: try again at the next look
                        self._next_heartbeat = now + self.settings.tick_s
                if now >= self._next_purge:
                    purged = self.outbox.purge(retention_s=self.settings.retention_s)
                    if purged:
                        log.info("purged %d synced records older than the retention", purged)
                    self._next_purge = now + self.settings.purge_interval_s
            except Exception:
                # The outbox is the truth; forget the window and start over from it.
                log.exception("sync step failed; resuming from the outbox")
                self.machine.disconnected()
                if self.network.connected.is_set():
                    self._execute(self.machine.connected(time.monotonic()), time.monotonic())
                self._stop.wait(1.0)

    def _dispatch(self, name: str, arg: Any, now: float) -> list[Action]:
        if name == "connected":
            self.counters.connects += 1
            self.deaf_watch.subscribed(now)
            log.info("connected to the broker; resuming from the outbox")
            actions = self.machine.connected(now)
            if self.state is not None:
                self._run_state(self.state.connected(now, self._stored_cursor()), now)
            return actions
        if name == "resync-state":
            if self.state is not None and self.state.online:
                self._run_state(self.state.connected(now, self._stored_cursor()), now)
            return []
        if name == "disconnected":
            self.counters.disconnects += 1
            self.deaf_watch.disconnected()
            if self.state is not None:
                self.state.disconnected()
            return self.machine.disconnected()
        if name == "message":
            mqtt_topic, payload, retained = arg
            self.deaf_watch.heard(now, mqtt_topic)  # even a refused one: the downlink works
            self._deaf_in_a_row = 0
            if not self._signed_by_central(mqtt_topic, payload):
                return []
            self._now, self._retained, self._pending = now, retained, []
            extra = self.handlers.get(mqtt_topic.rsplit("/", 1)[-1])
            if extra is not None and self.router.handler_for(mqtt_topic) is None:
                extra(mqtt_topic, payload)
            else:
                self.router.dispatch(mqtt_topic, payload)
            actions, self._pending = self._pending, []
            return actions
        return []

    def _watch_deafness(self, ticked: list[Action], now: float) -> None:
        """Reconnect when the watch finds this session connected and deaf."""
        again = [a.id for a in ticked if isinstance(a, Publish) and a.attempt > 1]
        if not again or not self.session_up.is_set():
            return
        deaf = self.deaf_watch.retransmitted(again, now)
        if deaf is None:
            return
        self.counters.deaf_reconnects += 1
        self._deaf_in_a_row += 1
        log.warning(
            "connected but deaf: %d in-flight records timed out again (%d ack timeouts in a "
            "row of %.0f s) and nothing at all arrived downlink (no ack, state, nudge or "
            "presence) in the %.0f s since %s; reconnecting for a fresh subscription "
            "(deaf reconnect %d, %d in a row)",
            deaf.in_flight,
            deaf.ack_timeouts,
            self.settings.ack_timeout_s,
            deaf.quiet_s,
            deaf.since,
            self.counters.deaf_reconnects,
            self._deaf_in_a_row,
        )
        self.session_up.clear()  # no remote call waits on this session any more
        self.network.reconnect(attempt=self._deaf_in_a_row)

    # -- downlink handlers (sync thread, through the router) ----------------------------

    def _signed_by_central(self, mqtt_topic: str, payload: bytes) -> bool:
        """The downlink's one check: everything central sends, retained or live, is signed
        by a key in [identity] central_keys (``aps-downlink-v1``) or is dropped, logged
        and counted. Acks carry their own domain and are checked by :func:`accept_ack`."""
        if mqtt_topic.endswith(f"/{DOWN_ACKS}") and not is_central_topic(mqtt_topic):
            return True
        try:
            verify_downlink(payload, self.identity.central_keys.keys)
        except (EnvelopeSignatureError, EnvelopeError) as exc:
            self.counters.downlink_refused += 1
            log.warning(
                "refused a message on %s: %s (not signed by central; nothing done)",
                mqtt_topic,
                getattr(exc, "reason", exc),
            )
            return False
        return True

    def _on_ack(self, mqtt_topic: str, payload: bytes) -> None:
        checked = accept_ack(
            payload,
            kiosk=self.kiosk,
            identity=self.identity,
            outbox=self.outbox,
            counters=self.counters,
        )
        if checked is not None:
            self._pending += self.machine.ack(checked, self._now)

    def _on_central_keys(self, mqtt_topic: str, payload: bytes) -> None:
        """Central's key set (rotation): signed by a key trusted now, newer than ours."""
        keys = self.identity.central_keys
        try:
            changed = keys.apply_announcement(payload)
        except (EnvelopeSignatureError, EnvelopeError) as exc:
            raise DownlinkError(f"central-keys: {getattr(exc, 'reason', exc)}") from None
        if changed:
            log.info(
                "central's signing keys are now %s (set %d)", ", ".join(keys.keys), keys.serial
            )

    def _on_central(self, mqtt_topic: str, payload: bytes) -> None:
        self._pending += self._central(payload, self._retained, now=self._now)

    def _on_state_reply(self, mqtt_topic: str, payload: bytes) -> None:
        reply = decode_state_reply(payload)
        if self.state is None:
            log.info("ignored a state reply: this kiosk asks for no downstream state")
            return
        self._run_state(self.state.reply(reply, self._now), self._now)

    def _on_nudge(self, mqtt_topic: str, payload: bytes) -> None:
        nudge = decode_nudge(payload)
        if self.state is not None:
            self._run_state(self.state.nudge(nudge.cursor, self._now), self._now)

    def _on_rpc_reply(self, mqtt_topic: str, payload: bytes) -> None:
        reply = decode_rpc_reply(payload)
        with self._rpc_lock:
            slot = self._rpc_waiting.get(reply.request)
        if slot is None or slot.done.is_set():
            self.counters.rpc_ignored_replies += 1
            log.info("ignored an rpc reply to %s: no call is waiting for it", reply.request)
            return
        slot.reply = reply
        slot.done.set()

    def _stored_cursor(self) -> int:
        """The cursor the application stored; the machine's copy if it cannot be read."""
        fallback = self.state.cursor if self.state is not None else 0
        if self._state_cursor is None:
            return fallback
        try:
            return int(self._state_cursor())
        except Exception:
            log.exception("could not read the stored downlink cursor; using %d", fallback)
            return fallback

    def _run_state(self, actions: list[StateAction], now: float) -> None:
        """Carry out the state machine's actions: publish requests, apply pages."""
        assert self.state is not None
        todo = list(actions)
        while todo:
            action = todo.pop(0)
            if isinstance(action, SendRequest):
                info = self.network.client.publish(
                    up_topic(self.kiosk, UP_STATE_REQUEST), action.request.encode(), qos=1
                )
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    log.debug("state request deferred: %s", info.rc)
            elif isinstance(action, ApplyPage):
                reply = action.reply
                try:
                    assert self._on_state is not None
                    self._on_state(reply.items, reply.next_cursor)
                except Exception:
                    log.exception(
                        "applying a downlink page (%d items, cursor %d) failed; asking again later",
                        len(reply.items),
                        reply.next_cursor,
                    )
                    todo += self.state.apply_failed(reply, now)
                    continue
                stored = reply.next_cursor if self._state_cursor is None else self._stored_cursor()
                todo += self.state.applied(reply, now, stored)

    # -- remote calls --------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        """Call ``method`` at central and wait for its result (any thread).

        Raises :class:`RpcTimeout` when no reply comes within ``timeout_s``
        (the call may still have run: methods are idempotent or say so), and
        :class:`RpcError` when central answers with an error, the kiosk is
        offline (``offline``), ``rpc_max_outstanding`` calls already wait
        (``busy``), or the request is malformed or too big (``bad-request``).
        """
        if not re.match(METHOD_RE_TEXT, method):
            raise RpcError("bad-request", f"method {method!r}: expected a name such as sign.start")
        request = RpcRequest(kiosk=self.kiosk, request=new_ulid(), method=method, params=params)
        try:
            payload = request.encode()
        except (TypeError, ValueError) as exc:
            raise RpcError("bad-request", f"params are not JSON: {exc}") from None
        if len(payload) > MAX_RPC_BYTES:
            raise RpcError(
                "bad-request", f"request is {len(payload)} bytes, the limit is {MAX_RPC_BYTES}"
            )
        slot = _RpcSlot()
        with self._rpc_lock:
            if len(self._rpc_waiting) >= self.settings.rpc_max_outstanding:
                raise RpcError(
                    "busy",
                    f"{len(self._rpc_waiting)} remote calls already wait for central "
                    f"(sync.rpc_max_outstanding); try again",
                )
            self._rpc_waiting[request.request] = slot
        try:
            if not (self.network.connected.is_set() and self.session_up.is_set()):
                raise RpcError("offline", "the kiosk is not connected to central")
            self.counters.rpc_calls += 1
            info = self.network.client.publish(up_topic(self.kiosk, UP_RPC), payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise RpcError("offline", f"could not publish: {mqtt.error_string(info.rc)}")
            if not slot.done.wait(timeout_s):
                self.counters.rpc_timeouts += 1
                raise RpcTimeout("timeout", f"no reply to {method} within {timeout_s:g} s")
            reply = slot.reply
            assert reply is not None
            if not reply.ok:
                raise RpcError(reply.error_code or "error", reply.error_message or "")
            return dict(reply.result or {})
        finally:
            with self._rpc_lock:
                self._rpc_waiting.pop(request.request, None)

    def _central(self, payload: bytes, retained: bool, *, now: float) -> list[Action]:
        """A collector said it is online. Live (not retained) means it has just
        (re)subscribed, so what this kiosk published meanwhile may have gone to
        nobody: start the window again from the outbox instead of waiting out
        ack_timeout. A retained one only replays the last state on subscribe."""
        try:
            msg = decode_object(payload)
        except EnvelopeError as exc:
            log.warning("ignored a malformed central presence message: %s", exc.reason)
            return []
        collector, state = msg.get("collector"), msg.get("state")
        if isinstance(collector, str) and isinstance(state, str):
            self.deaf_watch.presence(collector, state)
        if retained or state != "online" or not self.network.connected.is_set():
            return []
        self.counters.central_restarts += 1
        log.info(
            "collector %s is online (session %s); resending the window from the outbox",
            msg.get("collector"),
            msg.get("session"),
        )
        if self.state is not None:  # its downlink service may have missed our request
            self._run_state(self.state.poke(now), now)
        self.machine.disconnected()
        return self.machine.connected(now)

    def _execute(self, actions: list[Action], now: float) -> None:
        execute_actions(
            actions,
            machine=self.machine,
            outbox=self.outbox,
            publish=self._publish_record,
            counters=self.counters,
            now=now,
            signing_key=self.identity.signing_key,
        )

    def _publish_record(self, payload: bytes) -> None:
        info = self.network.client.publish(records_topic(self.kiosk), payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.debug("publish deferred: %s", info.rc)

    def _heartbeat(self) -> None:
        stats = self.outbox.stats()
        oldest_s = None
        if stats.oldest_queued_created is not None:
            try:
                created = datetime.fromisoformat(stats.oldest_queued_created)
                oldest_s = max(0, int(time.time() - created.timestamp()))
            except ValueError:
                oldest_s = None
        try:
            disk_free: int | None = shutil.disk_usage(self._database.parent).free
        except OSError:
            disk_free = None
        fields: dict[str, Any] = {
            "queued": stats.queued,
            "rejected": stats.rejected,
            "oldest_queued": stats.oldest_queued_created,
            "oldest_queued_s": oldest_s,
            "disk_free_bytes": disk_free,
            "db_bytes": stats.db_bytes,
            "reconnects": self.network.connects,
            "identity_conflicts": self.network.identity_conflicts,
            "subscribe_failures": self.counters.subscribe_failures,
            "deaf_reconnects": self.counters.deaf_reconnects,
        }
        if self.state is not None:
            fields["downlink_cursor"] = self.state.cursor
        if self.heartbeat_fields is not None:
            fields.update(self.heartbeat_fields())
        # ts to the millisecond: central measures the kiosk's clock offset from it.
        ts = datetime.now().astimezone().isoformat(timespec="milliseconds")
        self.network.client.publish(
            heartbeat_topic(self.kiosk), encode_heartbeat(self.kiosk, ts, **fields), qos=0
        )
        self._last_heartbeat = time.monotonic()
