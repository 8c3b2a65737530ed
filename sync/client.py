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
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from sync.envelope import (
    CENTRAL_TOPICS,
    EnvelopeError,
    acks_topic,
    decode_ack,
    decode_object,
    encode_heartbeat,
    encode_status,
    heartbeat_topic,
    is_central_topic,
    records_topic,
    status_topic,
    topic,
)
from sync.machine import Action, Fetch, MarkAcked, MarkRejected, Publish, SyncMachine
from sync.mqtt_link import MqttSettings, NetworkLoop, make_paho_client
from sync.outbox import Outbox

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
    retention_s: float = 7 * 86400.0
    purge_interval_s: float = 3600.0


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
) -> None:
    """Carry out the machine's actions in order: the kiosk's one sync step.

    ``publish`` puts stored envelope bytes on the up-link (paho in
    :class:`SyncClient`, an in-memory link in the stateful test), so the test
    and the agent run the same code.
    """
    todo = list(actions)
    while todo:
        action = todo.pop(0)
        if isinstance(action, Fetch):
            pending = outbox.pending(after_seq=action.after_seq, limit=action.limit)
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


class SyncClient:
    """Drains one kiosk's outbox to central over MQTT, until stopped."""

    def __init__(
        self,
        *,
        database: Path,
        kiosk: str,
        mqtt_settings: MqttSettings,
        settings: SyncSettings,
        outbox_options: dict[str, Any] | None = None,
        heartbeat_fields: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.kiosk = kiosk
        self.settings = settings
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
        self.handlers: dict[str, DownHandler] = {}
        self.heartbeat_fields = heartbeat_fields
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._mqtt_settings = mqtt_settings
        self.network = NetworkLoop(
            self._new_client,
            mqtt_settings,
            backoff_min_s=settings.reconnect_min_s,
            backoff_max_s=settings.reconnect_max_s,
            stop=self._stop,
            name=f"mqtt-{kiosk}",
            identity=f"kiosk id {kiosk}",
            farewell=lambda: (status_topic(kiosk), encode_status(kiosk, "offline", now_iso())),
        )
        self._database = Path(database)
        self._thread = threading.Thread(target=self._run, name=f"sync-{kiosk}", daemon=True)
        now = time.monotonic()
        self._next_poll = self._next_heartbeat = self._next_purge = now

    def _new_client(self) -> mqtt.Client:
        client = make_paho_client(self.kiosk, self._mqtt_settings)
        client.max_inflight_messages_set(self.settings.inflight_window)
        client.will_set(
            status_topic(self.kiosk),
            encode_status(self.kiosk, "offline", now_iso()),
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
            # One SUBSCRIBE, so one SUBACK: only then does the sync start ("connected").
            client.subscribe([(topic(self.kiosk, "down", "#"), 1), (CENTRAL_TOPICS, 1)])
            client.publish(
                status_topic(self.kiosk),
                encode_status(self.kiosk, "online", now_iso()),
                qos=1,
                retain=True,
            )
        except Exception:
            log.exception("on_connect failed")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any
    ) -> None:
        self._events.put(("connected", None))

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self._events.put(("disconnected", None))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if is_central_topic(msg.topic):
            self._events.put(("central", (bytes(msg.payload), bool(msg.retain))))
            return
        self._events.put(("message", (msg.topic, bytes(msg.payload))))

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
                    actions += self.machine.tick(now)
                self._execute(actions, now)
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
            log.info("connected to the broker; resuming from the outbox")
            return self.machine.connected(now)
        if name == "disconnected":
            self.counters.disconnects += 1
            return self.machine.disconnected()
        if name == "central":
            return self._central(*arg, now=now)
        if name == "message":
            mqtt_topic, payload = arg
            if mqtt_topic == acks_topic(self.kiosk):
                try:
                    ack = decode_ack(payload)
                except EnvelopeError as exc:
                    log.warning("ignored a malformed ack: %s", exc.reason)
                    return []
                return self.machine.ack(ack, now)
            handler = self.handlers.get(mqtt_topic.rsplit("/", 1)[-1])
            if handler is not None:
                handler(mqtt_topic, payload)
            return []
        return []

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
        if retained or msg.get("state") != "online" or not self.network.connected.is_set():
            return []
        self.counters.central_restarts += 1
        log.info(
            "collector %s is online (session %s); resending the window from the outbox",
            msg.get("collector"),
            msg.get("session"),
        )
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
        }
        if self.heartbeat_fields is not None:
            fields.update(self.heartbeat_fields())
        self.network.client.publish(
            heartbeat_topic(self.kiosk), encode_heartbeat(self.kiosk, now_iso(), **fields), qos=0
        )
