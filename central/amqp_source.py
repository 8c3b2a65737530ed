"""The collector over AMQP: competing consumers of one quorum queue on a RabbitMQ cluster.

Theory of operation
-------------------
Kiosks keep speaking MQTT 3.1.1. RabbitMQ's MQTT plugin publishes what they send to the
``amq.topic`` exchange, the MQTT topic turned into a routing key (``/`` becomes ``.``,
``+`` becomes ``*``; kiosk ids hold no dot, so the way back is exact). RabbitMQ 3.10 has
no MQTT shared subscriptions, so the collectors share the uplink differently: each one
declares the same durable **quorum** queue (``[amqp] queue``, replicated on the cluster's
nodes), binds it to ``amq.topic`` for the kiosks' uplink routing keys, and consumes from it
with a bounded prefetch; the broker hands each message to one of them.

One thread per collector owns the pika connection (pika is not thread-safe). It gathers
deliveries into a batch (up to ``batch_max``, waiting at most ``batch_wait_s`` for more),
runs the same :class:`central.collector.IngestStep` as the MQTT collector (classify, one
store transaction, then the signed acks, published to ``amq.topic`` with the routing key
of the kiosk's MQTT ack topic so the plugin delivers them to the kiosk), and only then
acks the AMQP deliveries: one ``basic.ack`` with ``multiple`` up to the batch's last
delivery tag. If the store fails, nothing is acked to the kiosks and the deliveries are
requeued (``basic.nack``): they come back, to this collector or another. A collector that
dies between its commit and its ``basic.ack`` has its deliveries redelivered; the store
absorbs the duplicates (idempotent ingest) and the acks go out again.

Rate limits (``[quotas]``) apply as on MQTT: a kiosk over its rate has its messages held
back in the collector's memory and handed on at the rate (``Quotas.pace``), or dropped when
its pacing room is full; either way the delivery is acked to the broker at once (as
mosquitto has PUBACKed it), and what is lost with the process the kiosk resends, since
central never acked it. Storage quotas run in the store step, as on MQTT.

When the node it is connected to dies, the collector reconnects to the next URL of
``[amqp] urls`` after a jittered, doubling backoff; its unacked deliveries go back to the
queue, which keeps going on the surviving nodes (quorum).

With a downlink service attached, state requests and remote calls are consumed from the
same queue and handed to it; its replies (published from its own thread) are passed to
the connection's thread (``add_callback_threadsafe``). Central's presence and key
announcement are published on every (re)connect. RabbitMQ 3.10 keeps retained messages
only for what arrives over MQTT, so these are not retained here: a kiosk that connects
later hears the next announcement, and meanwhile resends after its ack timeout as usual.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pika
import pika.exceptions
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.collector import BatchResult, CollectorCounters, IngestStep
from central.downlink import DownlinkService, is_downlink_topic
from central.downlink import subscriptions as downlink_subscriptions
from central.fleet.duplicates import DuplicateWatch
from central.fleet.keys import KeyDirectory
from central.quotas import Quotas
from central.store import Store
from sync.envelope import MAX_RECORD_BYTES, TOPIC_ROOT, central_topic, encode_central
from sync.wire_signing import KEYS_TOPIC, sign_downlink

log = logging.getLogger("aps.collector.amqp")

EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes, and what it delivers from
UPLINK_NAMES = ("records", "status", "heartbeat")


def routing_key(mqtt_topic: str) -> str:
    """The routing key RabbitMQ's MQTT plugin (3.10) uses for an MQTT topic or filter."""
    return mqtt_topic.replace("/", ".").replace("+", "*")


def mqtt_topic(key: str) -> str:
    """The MQTT topic of a routing key (exact for ours: no kiosk id holds a dot)."""
    return key.replace("*", "+").replace(".", "/")


@dataclass(frozen=True, kw_only=True)
class AmqpSettings:
    urls: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    queue: str = "aps.uplink"
    prefetch: int = 1000
    #: Names this collector in its presence message and its AMQP connection.
    name: str = "aps-collector-1"
    batch_max: int = 500
    batch_wait_s: float = 0.05
    max_record_bytes: int = MAX_RECORD_BYTES
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    heartbeat_s: int = 20

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("amqp: at least one URL")
        if self.prefetch < self.batch_max:
            raise ValueError(
                f"amqp: prefetch ({self.prefetch}) below batch_max ({self.batch_max}): "
                "a batch could never fill"
            )


@dataclass
class _Delivery:
    tag: int | None  # None: held back by the rate limits, already acked to the broker
    topic: str
    body: bytes
    downlink: bool


class AmqpCollector:
    """Same surface as :class:`central.collector.Collector` for the service."""

    def __init__(
        self,
        *,
        store_factory: Callable[[], Store],
        settings: AmqpSettings,
        keys: KeyDirectory,
        signing_key: Ed25519PrivateKey,
        quotas: Quotas | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.signing_key = signing_key
        self.quotas = quotas
        self.step = IngestStep(
            keys=keys,
            signing_key=signing_key,
            max_record_bytes=settings.max_record_bytes,
            quotas=quotas,
        )
        self.counters: CollectorCounters = self.step.counters
        self.duplicates: DuplicateWatch = self.step.duplicates
        self.downlink: DownlinkService | None = None
        self.key_announcement: bytes | None = None
        self.online = threading.Event()  # consuming and announced (tests wait for it)
        self.session = ""
        #: The URL of the node this collector is connected to now (None between sessions).
        self.connected_url: str | None = None
        self.connections = 0  # sessions opened (a test sees the reconnect)
        #: The last batch committed (a test looks at it).
        self.last_result: BatchResult | None = None
        self._store_factory = store_factory
        self._stop = threading.Event()
        self._conn: pika.BlockingConnection | None = None
        self._channel: Any = None
        self._pending: list[_Delivery] = []
        self._consumed_in_session = False
        self._progress_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"amqp-{settings.name}", daemon=True)

    # -- the service's surface ------------------------------------------------------------

    @property
    def on_verified(self) -> Callable[[str], None] | None:
        return self.step.on_verified

    @on_verified.setter
    def on_verified(self, fn: Callable[[str], None] | None) -> None:
        self.step.on_verified = fn

    @property
    def bindings(self) -> list[str]:
        topics = [f"{TOPIC_ROOT}/+/up/{name}" for name in UPLINK_NAMES]
        if self.downlink is not None:
            topics += downlink_subscriptions(None)
        return [routing_key(t) for t in topics]

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def writer_alive(self) -> bool:
        return self._thread.is_alive()

    def writer_stalled_for(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self._progress_at

    def publish(self, topic: str, payload: bytes) -> None:
        """To a kiosk's MQTT topic through ``amq.topic``; from any thread."""
        if threading.current_thread() is self._thread:
            self._publish_now(topic, payload)
            return
        conn = self._conn
        if conn is None or not conn.is_open:
            log.warning("not connected: a message to %s dropped (its sender retries)", topic)
            return
        try:
            conn.add_callback_threadsafe(lambda: self._publish_now(topic, payload))
        except pika.exceptions.AMQPError:
            log.warning("connection closing: a message to %s dropped", topic)

    # -- the connection's thread ----------------------------------------------------------

    def _publish_now(self, topic: str, payload: bytes) -> None:
        self._channel.basic_publish(
            EXCHANGE,
            routing_key(topic),
            payload,
            pika.BasicProperties(delivery_mode=2),
        )

    def _run(self) -> None:
        store = self._store_factory()
        urls = self.settings.urls
        attempt, cap = 0, self.settings.reconnect_min_s
        try:
            while not self._stop.is_set():
                url = urls[attempt % len(urls)]
                attempt += 1
                try:
                    self._session(store, url)
                except (pika.exceptions.AMQPError, OSError) as exc:
                    log.warning("AMQP session on %s ended: %r", _redacted(url), exc)
                finally:
                    self.online.clear()
                    self.connected_url = None
                    self._pending = []  # unacked: the broker requeues them
                    self._close()
                if self._stop.is_set():
                    break
                if self.connections and self._consumed_in_session:
                    cap = self.settings.reconnect_min_s  # it worked: start the backoff over
                delay = random.uniform(self.settings.reconnect_min_s, cap)  # full jitter
                cap = min(self.settings.reconnect_max_s, cap * 2)
                self._progress_at = time.monotonic() + delay
                self._stop.wait(delay)
        finally:
            store.close()

    def _session(self, store: Store, url: str) -> None:
        params = pika.URLParameters(url)
        if self.settings.username is not None:
            params.credentials = pika.PlainCredentials(
                self.settings.username, self.settings.password or ""
            )
        params.heartbeat = self.settings.heartbeat_s
        params.blocked_connection_timeout = 60
        params.client_properties = {"connection_name": self.settings.name}
        self._consumed_in_session = False
        self._conn = pika.BlockingConnection(params)
        ch = self._conn.channel()
        self._channel = ch
        ch.basic_qos(prefetch_count=self.settings.prefetch)
        q = self.settings.queue
        ch.queue_declare(q, durable=True, arguments={"x-queue-type": "quorum"})
        for key in self.bindings:
            ch.queue_bind(q, EXCHANGE, routing_key=key)
        ch.basic_consume(q, self._on_delivery, auto_ack=False)
        self.connections += 1
        self.connected_url = url
        self.session = secrets.token_hex(8)
        if self.key_announcement is not None:
            self._publish_now(KEYS_TOPIC, self.key_announcement)
        self._publish_now(central_topic(self.settings.name), self._presence("online"))
        self.online.set()
        log.info("AMQP collector %s consuming %s on %s", self.settings.name, q, _redacted(url))
        try:
            while not self._stop.is_set():
                self._progress_at = time.monotonic()
                self._conn.process_data_events(time_limit=0.2)
                if self.quotas is not None:  # held-back messages whose time has come
                    self._pending += [_Delivery(None, t, b, False) for t, b in self.quotas.pace()]
                if self._pending:
                    self._fill_batch()
                    self._handle(store)
        finally:
            if self._stop.is_set() and self._conn.is_open:
                self._publish_now(central_topic(self.settings.name), self._presence("offline"))

    def _on_delivery(self, ch: Any, method: Any, properties: Any, body: bytes) -> None:
        topic = mqtt_topic(method.routing_key)
        service = self.downlink
        downlink = service is not None and is_downlink_topic(topic)
        if service is not None and downlink:
            service.submit(topic, bytes(body))  # never blocks (throttled, bounded)
        elif self.quotas is not None and not self.quotas.admit(topic, bytes(body)):
            # [quotas] over its rate: held back in memory (pace() hands it on) or dropped,
            # as on MQTT, where the broker took it already; the kiosk resends what central
            # does not ack. Acked here so the queue never redelivers it in a loop.
            ch.basic_ack(method.delivery_tag)
            self._consumed_in_session = True
            return
        self._pending.append(_Delivery(method.delivery_tag, topic, bytes(body), downlink))
        self._consumed_in_session = True

    def _fill_batch(self) -> None:
        assert self._conn is not None
        deadline = time.monotonic() + self.settings.batch_wait_s
        while len(self._pending) < self.settings.batch_max:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._conn.process_data_events(time_limit=remaining)

    def _handle(self, store: Store) -> None:
        batch, self._pending = (
            self._pending[: self.settings.batch_max],
            self._pending[self.settings.batch_max :],
        )
        records = [(d.topic, d.body) for d in batch if not d.downlink]
        ch = self._channel
        if records:
            result = self.step.run(store, records, self._publish_now)
            if result is None:  # the store failed: nothing acked, all back to the queue
                for d in batch:
                    if d.tag is None:  # held back earlier: gone, the kiosk resends it
                        continue
                    if d.downlink:
                        ch.basic_ack(d.tag)
                    else:
                        ch.basic_nack(d.tag, requeue=True)
                assert self._conn is not None
                self._conn.sleep(1.0)
                return
            self.last_result = result
        # Only after the commit (and the kiosks' acks handed to the broker).
        tags = [d.tag for d in batch if d.tag is not None]
        if tags:
            ch.basic_ack(max(tags), multiple=True)

    def _presence(self, state: str) -> bytes:
        ts = datetime.now().astimezone().isoformat(timespec="seconds")
        payload = encode_central(self.settings.name, state, self.session, ts)
        return sign_downlink(payload, self.signing_key)

    def _close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except Exception:  # a dead node's connection: nothing to close cleanly
                log.debug("closing the AMQP connection failed", exc_info=True)


def _redacted(url: str) -> str:
    """The URL without a password in it (for logs)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
