"""The collector: MQTT in, one store transaction per batch, acks out.

Theory of operation
-------------------
The network thread (``sync.client.NetworkLoop``) keeps a paho client
connected with a stable client id and a persistent session, so the broker
keeps queueing records for a collector that is restarting. ``on_message``
only puts ``(topic, payload)`` on a bounded queue; when the queue is full the
network thread blocks, and the broker holds the rest (back-pressure, not
loss). The writer thread takes up to ``batch_max`` messages (waiting at
most ``batch_wait_s`` for more), classifies each one (:mod:`central.ingest`:
decoded, its sender looked up in the registry, its signature verified),
commits the batch in one transaction, and only then publishes one ack
message per kiosk, signed by central (:func:`sync.wire_signing.sign_ack`)
and naming the digest of each stored envelope.

Verifying on paho's network thread instead, to overlap the writer's commit,
was measured and lost (docs/benchmarks.md, "Signed ingest"): the writer then
outran the verifier, batches shrank to a few records, and each batch's
commit and per-kiosk signed acks cost more than the overlap saved.

If the commit fails because of one message, the batch is committed in
halves down to that message, which is dead-lettered with its sender
(:mod:`central.isolation`); everyone else is acked. If the store is down
(disk full, I/O error) nothing is acked, and the kiosks send those
records again after their ack timeout. The service feeds systemd's watchdog
only while the writer loop comes round (:meth:`Collector.writer_stalled_for`).

Several collectors can share the load: with ``shared_group`` set they
subscribe to ``$share/<group>/aps/v1/+/up/records``.

With a downlink service attached (:attr:`Collector.downlink`), the collector
also subscribes to the kiosks' state requests and remote calls and hands
them to it, on this one connection (central/downlink.py).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.downlink import DownlinkService, is_downlink_topic
from central.downlink import subscriptions as downlink_subscriptions
from central.fleet.duplicates import DuplicateWatch
from central.fleet.keys import KeyDirectory
from central.ingest import Accept, DeadLetter, FleetUpdate, classify, classify_fleet
from central.isolation import Message, commit_isolating
from central.quotas import Quotas
from central.store import IngestOutcome, Store
from sync.envelope import (
    MAX_RECORD_BYTES,
    TOPIC_ROOT,
    acks_topic,
    central_topic,
    encode_central,
    split_ack,
)
from sync.mqtt_link import MqttSettings, NetworkLoop, make_paho_client
from sync.wire_signing import KEYS_TOPIC, sign_ack, sign_downlink

log = logging.getLogger("aps.collector")


@dataclass(frozen=True, kw_only=True)
class CollectorSettings:
    client_id: str = "aps-collector-1"
    shared_group: str | None = None
    batch_max: int = 500
    batch_wait_s: float = 0.0
    queue_max: int = 20_000
    max_record_bytes: int = MAX_RECORD_BYTES
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


@dataclass
class CollectorCounters:
    received: int = 0
    #: Messages whose batch was committed (stored, duplicate, dead-lettered, fleet rows).
    handled: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    acks_sent: int = 0
    store_errors: int = 0


class Collector:
    def __init__(
        self,
        *,
        store_factory: Callable[[], Store],
        mqtt_settings: MqttSettings,
        settings: CollectorSettings,
        keys: KeyDirectory,
        signing_key: Ed25519PrivateKey,
        quotas: Quotas | None = None,
    ) -> None:
        """``keys`` is the registry (who may send, with which keys); ``signing_key`` is
        central's own (``[security] signing_key``): acks and presence are signed with it."""
        self.settings = settings
        self.keys = keys
        self.signing_key = signing_key
        self.quotas = quotas  # [quotas] hook: per-kiosk rate limits and storage quotas
        self._store_factory = store_factory
        self._mqtt_settings = mqtt_settings
        self.step = IngestStep(
            keys=keys,
            signing_key=signing_key,
            max_record_bytes=settings.max_record_bytes,
            quotas=quotas,
        )
        self.counters = self.step.counters
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=settings.queue_max)
        self._stop = threading.Event()
        self.online = threading.Event()  # subscribed and announced (tests wait for it)
        self.session = ""
        self.network = NetworkLoop(
            self._new_client,
            mqtt_settings,
            backoff_min_s=settings.reconnect_min_s,
            backoff_max_s=settings.reconnect_max_s,
            stop=self._stop,
            name=f"mqtt-{settings.client_id}",
            identity=f"collector id {settings.client_id}",
            farewell=lambda: (central_topic(settings.client_id), self._presence("offline")),
        )
        self._writer = threading.Thread(
            target=self._run_writer, name="collector-writer", daemon=True
        )
        self.idle = threading.Event()
        self._writer_progress_at = time.monotonic()
        #: central.downlink.DownlinkService (set before start): it answers state
        #: requests and remote calls on this connection.
        self.downlink: DownlinkService | None = None
        self.duplicates = self.step.duplicates
        #: Central's key set, signed (sync.wire_signing.key_announcement), published
        #: retained on KEYS_TOPIC at every (re)subscribe (set before start; rotation).
        self.key_announcement: bytes | None = None

    @property
    def on_verified(self) -> Callable[[str], None] | None:
        """Called (writer thread) once per kiosk after its first verified, committed record
        in this process: the service marks it active in the registry."""
        return self.step.on_verified

    @on_verified.setter
    def on_verified(self, fn: Callable[[str], None] | None) -> None:
        self.step.on_verified = fn

    @property
    def subscriptions(self) -> list[str]:
        group = self.settings.shared_group
        out = []
        for name in ("records", "status", "heartbeat"):
            base = f"{TOPIC_ROOT}/+/up/{name}"
            out.append(f"$share/{group}/{base}" if group else base)
        if self.downlink is not None:
            out += downlink_subscriptions(group)
        return out

    def _new_client(self) -> mqtt.Client:
        client = make_paho_client(self.settings.client_id, self._mqtt_settings, clean_session=False)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        # A new session id per connection: kiosks resend their window when a
        # collector comes (back) online (docs/protocol.md, "Central's presence").
        self.session = secrets.token_hex(8)
        client.will_set(
            central_topic(self.settings.client_id),
            self._presence("offline"),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _presence(self, state: str) -> bytes:
        ts = datetime.now().astimezone().isoformat(timespec="seconds")
        payload = encode_central(self.settings.client_id, state, self.session, ts)
        return sign_downlink(payload, self.signing_key)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if rc.is_failure:
                log.error("broker refused the collector: %s", rc)
                return
            self.online.clear()
            self.network.connected.set()
            client.subscribe([(t, 1) for t in self.subscriptions])
            log.info("collector connected; subscribing to %s", ", ".join(self.subscriptions))
        except Exception:
            log.exception("on_connect failed")

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any
    ) -> None:
        # Only now are the subscriptions in place: tell the kiosks to resend.
        try:
            refused = [str(rc) for rc in rcs if rc.is_failure]
            if refused:
                log.error(
                    "broker refused the collector's subscriptions (%s): check its role "
                    "(docs/broker.md)",
                    ", ".join(refused),
                )
            if self.key_announcement is not None:
                client.publish(KEYS_TOPIC, self.key_announcement, qos=1, retain=True)
            client.publish(
                central_topic(self.settings.client_id), self._presence("online"), qos=1, retain=True
            )
            self.online.set()
        except Exception:
            log.exception("on_subscribe failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.downlink is not None and is_downlink_topic(msg.topic):
            # Never blocks: throttled per kiosk, bounded queue (central/downlink.py).
            self.downlink.submit(msg.topic, bytes(msg.payload))
            return
        # [quotas] hook: over its rate, a kiosk's message is held back or dropped unparsed.
        if self.quotas is not None and not self.quotas.admit(msg.topic, bytes(msg.payload)):
            return
        # Blocking here when the queue is full is the back-pressure we want.
        self._queue.put((msg.topic, bytes(msg.payload)))

    def start(self) -> None:
        if self.quotas is not None:  # [quotas] hook: passes held-back messages on at the rate
            self.quotas.start_pacer(self._queue.put, self._stop)
        self._writer.start()
        self.network.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._writer.join(timeout)
        self.network.thread.join(timeout)

    def _take_batch(self) -> list[tuple[str, bytes]]:
        """Group commit: whatever is queued now, up to batch_max.

        Under load the queue fills while the previous batch commits, so batches
        grow by themselves; ``batch_wait_s`` (0 by default) waits for more
        before committing a small batch, trading latency for fewer fsyncs.
        """
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            self.idle.set()
            return []
        self.idle.clear()
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_wait_s
        while len(batch) < self.settings.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
        return batch

    def writer_alive(self) -> bool:
        return self._writer.is_alive()

    def writer_stalled_for(self, now: float | None = None) -> float:
        """Seconds since the writer loop last came round (idle, it does every 0.2 s)."""
        return (time.monotonic() if now is None else now) - self._writer_progress_at

    def _run_writer(self) -> None:
        store = self._store_factory()
        try:
            while not self._stop.is_set():
                self._writer_progress_at = time.monotonic()
                batch = self._take_batch()
                if batch:
                    self._handle(store, batch)
        finally:
            store.close()

    def _handle(self, store: Store, batch: list[tuple[str, bytes]]) -> None:
        if self.step.run(store, batch, self.publish) is None:
            self._stop.wait(1.0)

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1 on the collector's connection (acks, and the downlink's messages)."""
        self.network.client.publish(topic, payload, qos=1)


Publish = Callable[[str, bytes], None]


class IngestStep:
    """The transport-free step every collector source runs on a batch of ``(topic, payload)``.

    :func:`process_batch` (classify, one store transaction), then the counters, the
    warnings, and only after the commit the signed acks through ``publish`` (invariant 3),
    the duplicate-identity watch and the first-verified-record hook. The MQTT
    :class:`Collector` and the AMQP one (central/amqp_source.py) both run this, so what a
    record goes through at central does not depend on the broker it came from.
    """

    def __init__(
        self,
        *,
        keys: KeyDirectory,
        signing_key: Ed25519PrivateKey,
        max_record_bytes: int = MAX_RECORD_BYTES,
        quotas: Quotas | None = None,
    ) -> None:
        self.keys = keys
        self.signing_key = signing_key
        self.max_record_bytes = max_record_bytes
        self.quotas = quotas
        self.counters = CollectorCounters()
        self.duplicates = DuplicateWatch()  # two boxes, one identity (central/fleet/duplicates.py)
        #: Called once per kiosk after its first verified, committed record in this process.
        self.on_verified: Callable[[str], None] | None = None
        self._verified: set[str] = set()

    def run(
        self, store: Store, batch: list[tuple[str, bytes]], publish: Publish
    ) -> BatchResult | None:
        """The batch's result once committed and its acks handed to ``publish``; None
        (logged, counted, nothing acked) when the store failed."""
        self.counters.received += len(batch)
        try:
            result = process_batch(
                store,
                batch,
                keys=self.keys,
                signing_key=self.signing_key,
                max_record_bytes=self.max_record_bytes,
                quotas=self.quotas,
            )
        except Exception:
            self.counters.store_errors += 1
            log.exception(
                "store commit failed; %d messages not acked (kiosks will resend)", len(batch)
            )
            return None
        outcome = result.outcome
        self.counters.batches += 1
        self.counters.handled += len(batch)
        self.counters.stored += outcome.stored
        self.counters.duplicates += outcome.duplicates
        self.counters.dead_letters += outcome.dead_letters
        for item in result.items:
            if isinstance(item, DeadLetter):
                log.warning("dead letter from %s: %s", item.topic, item.reason)
        for kiosk, rejections in outcome.rejected.items():
            for r in rejections:
                if r.reason.startswith("seq-jump"):
                    log.warning("kiosk %s record %s parked: %s", kiosk, r.id, r.reason)
        # Only now, after the commit, do acks go out (invariant 3).
        for ack_topic, payload in result.acks:
            publish(ack_topic, payload)
            self.counters.acks_sent += 1
        self.duplicates.observe_batch(store, result.items, time.time())
        if self.on_verified is not None:
            for kiosk in outcome.acked:
                if kiosk not in self._verified:
                    try:
                        self.on_verified(kiosk)
                        self._verified.add(kiosk)
                    except Exception:
                        log.exception("marking kiosk %s connected failed", kiosk)
        return result


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    items: list[Accept | DeadLetter | FleetUpdate]
    outcome: IngestOutcome
    acks: list[tuple[str, bytes]]
    poisoned: list[DeadLetter] = field(default_factory=list)


def classify_message(
    mqtt_topic: str,
    payload: bytes,
    keys: KeyDirectory,
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> Accept | DeadLetter | FleetUpdate:
    if mqtt_topic.endswith("/up/records"):
        return classify(mqtt_topic, payload, keys, max_bytes=max_record_bytes)
    return classify_fleet(mqtt_topic, payload)


def classify_batch(
    batch: list[tuple[str, bytes]], keys: KeyDirectory, max_record_bytes: int = MAX_RECORD_BYTES
) -> list[Message]:
    """Classify each message (decode, sender, signature); one that raises is logged, skipped."""
    messages: list[Message] = []
    for mqtt_topic, payload in batch:
        try:
            item = classify_message(mqtt_topic, payload, keys, max_record_bytes=max_record_bytes)
        except Exception:  # classify must not raise; if it does, keep going
            log.exception("classify raised on a message from %s", mqtt_topic)
            continue
        messages.append(Message(topic=mqtt_topic, payload=payload, item=item))
    return messages


def process_batch(
    store: Store,
    batch: list[tuple[str, bytes]],
    *,
    keys: KeyDirectory,
    signing_key: Ed25519PrivateKey,
    max_record_bytes: int = MAX_RECORD_BYTES,
    quotas: Quotas | None = None,
) -> BatchResult:
    """:func:`classify_batch` then :func:`commit_batch`: the collector's whole step."""
    messages = classify_batch(batch, keys, max_record_bytes)
    return commit_batch(store, messages, signing_key=signing_key, quotas=quotas)


def commit_batch(
    store: Store,
    messages: list[Message],
    *,
    signing_key: Ed25519PrivateKey,
    quotas: Quotas | None = None,
) -> BatchResult:
    """Classify a batch, commit it, and only then build the acks (the collector's step).

    A batch whose commit fails for a reason that may belong to one message is
    committed in halves, down to single messages (:func:`commit_isolating`):
    the culprits are dead-lettered with their reason and sender, the rest is
    committed and acked. If the store is down (disk full, I/O error) or fails
    for everyone, this raises whatever the store raised and nothing is
    acked. :class:`Collector` publishes the returned acks; the stateful test
    delivers them over its in-memory link, so both run this code. Each ack is
    signed with ``signing_key`` and names the digest of every acked id's stored
    envelope.
    """
    if quotas is not None:  # [quotas] hook: kiosks at their quota are left unacked
        kept = {id(i) for i in quotas.screen(store, [m.item for m in messages])}
        messages = [m for m in messages if id(m.item) in kept]
    outcome, poisoned = commit_isolating(store, messages)  # returns after COMMIT
    _log_refusals(outcome)
    acks: list[tuple[str, bytes]] = []
    for kiosk in sorted(set(outcome.acked) | set(outcome.rejected)):
        acked = outcome.acked.get(kiosk, [])
        digests = {rid: outcome.digests[(kiosk, rid)] for rid in acked}
        for ack in split_ack(acked, outcome.rejected.get(kiosk, []), kiosk=kiosk, digests=digests):
            acks.append((acks_topic(kiosk), sign_ack(ack, signing_key)))
    return BatchResult(
        items=[m.item for m in messages], outcome=outcome, acks=acks, poisoned=poisoned
    )


MAX_LOGGED_PER_BATCH = 10


def _log_refusals(outcome: IngestOutcome) -> None:
    """Warn about id conflicts (first kept, still acked), at most a few lines per batch."""
    for kiosk, rid in outcome.conflicts[:MAX_LOGGED_PER_BATCH]:
        log.warning(
            "id-conflict: kiosk %s sent record %s again with another body; the first one is "
            "kept, the replay dead-lettered and acked",
            kiosk,
            rid,
        )
    if len(outcome.conflicts) > MAX_LOGGED_PER_BATCH:
        log.warning(
            "id-conflict: and %d more in this batch", len(outcome.conflicts) - MAX_LOGGED_PER_BATCH
        )
