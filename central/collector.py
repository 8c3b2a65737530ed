"""The collector: MQTT in, one store transaction per batch, acks out.

Theory of operation
-------------------
The network thread (``sync.client.NetworkLoop``) keeps a paho client
connected with a stable client id and a persistent session, so the broker
keeps queueing records for a collector that is restarting. ``on_message``
only puts ``(topic, payload)`` on a bounded queue; when the queue is full the
network thread blocks, and the broker holds the rest (back-pressure, not
loss). The writer thread takes up to ``batch_max`` messages (waiting at most
``batch_wait_s`` for more), classifies each one (:mod:`central.ingest`),
commits the batch in one transaction, and only then publishes one ack
message per kiosk. If the commit fails nothing is acked, and the kiosks send
those records again after their ack timeout.

Several collectors can share the load: with ``shared_group`` set they
subscribe to ``$share/<group>/aps/v1/+/up/records``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from central.ingest import Accept, DeadLetter, FleetUpdate, classify, classify_fleet
from central.quotas import Quotas
from central.store import IngestOutcome, Store
from sync.envelope import MAX_RECORD_BYTES, TOPIC_ROOT, acks_topic, split_ack
from sync.mqtt_link import MqttSettings, NetworkLoop, make_paho_client

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
        quotas: Quotas | None = None,
    ) -> None:
        self.settings = settings
        self.quotas = quotas  # [quotas] hook: per-kiosk rate limits and storage quotas
        self._store_factory = store_factory
        self._mqtt_settings = mqtt_settings
        self.counters = CollectorCounters()
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=settings.queue_max)
        self._stop = threading.Event()
        self.network = NetworkLoop(
            self._new_client,
            mqtt_settings,
            backoff_min_s=settings.reconnect_min_s,
            backoff_max_s=settings.reconnect_max_s,
            stop=self._stop,
            name=f"mqtt-{settings.client_id}",
        )
        self._writer = threading.Thread(
            target=self._run_writer, name="collector-writer", daemon=True
        )
        self.idle = threading.Event()

    @property
    def subscriptions(self) -> list[str]:
        group = self.settings.shared_group
        out = []
        for name in ("records", "status", "heartbeat"):
            base = f"{TOPIC_ROOT}/+/up/{name}"
            out.append(f"$share/{group}/{base}" if group else base)
        return out

    def _new_client(self) -> mqtt.Client:
        client = make_paho_client(self.settings.client_id, self._mqtt_settings, clean_session=False)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        try:
            if rc.is_failure:
                log.error("broker refused the collector: %s", rc)
                return
            self.network.connected.set()
            client.subscribe([(t, 1) for t in self.subscriptions])
            log.info("collector connected; subscribed to %s", ", ".join(self.subscriptions))
        except Exception:
            log.exception("on_connect failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
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

    def _run_writer(self) -> None:
        store = self._store_factory()
        try:
            while not self._stop.is_set():
                batch = self._take_batch()
                if batch:
                    self._handle(store, batch)
        finally:
            store.close()

    def _handle(self, store: Store, batch: list[tuple[str, bytes]]) -> None:
        self.counters.received += len(batch)
        try:
            result = process_batch(
                store, batch, max_record_bytes=self.settings.max_record_bytes, quotas=self.quotas
            )
        except Exception:
            self.counters.store_errors += 1
            log.exception(
                "store commit failed; %d messages not acked (kiosks will resend)", len(batch)
            )
            self._stop.wait(1.0)
            return
        outcome = result.outcome
        self.counters.batches += 1
        self.counters.stored += outcome.stored
        self.counters.duplicates += outcome.duplicates
        self.counters.dead_letters += outcome.dead_letters
        for item in result.items:
            if isinstance(item, DeadLetter):
                log.warning("dead letter from %s: %s", item.topic, item.reason)
        # Only now, after the commit, do acks go out (invariant 3).
        for ack_topic, payload in result.acks:
            self.network.client.publish(ack_topic, payload, qos=1)
            self.counters.acks_sent += 1


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    items: list[Accept | DeadLetter | FleetUpdate]
    outcome: IngestOutcome
    acks: list[tuple[str, bytes]]


def classify_message(
    mqtt_topic: str, payload: bytes, *, max_record_bytes: int = MAX_RECORD_BYTES
) -> Accept | DeadLetter | FleetUpdate:
    if mqtt_topic.endswith("/up/records"):
        return classify(mqtt_topic, payload, max_bytes=max_record_bytes)
    return classify_fleet(mqtt_topic, payload)


def process_batch(
    store: Store,
    batch: list[tuple[str, bytes]],
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
    quotas: Quotas | None = None,
) -> BatchResult:
    """Classify a batch, commit it, and only then build the acks (the collector's step).

    Raises whatever the store raised if the commit failed: then nothing is
    acked. :class:`Collector` publishes the returned acks; the stateful test
    delivers them over its in-memory link, so both run this code.
    """
    items: list[Accept | DeadLetter | FleetUpdate] = []
    for mqtt_topic, payload in batch:
        try:
            items.append(classify_message(mqtt_topic, payload, max_record_bytes=max_record_bytes))
        except Exception:  # classify must not raise; if it does, keep going
            log.exception("classify raised on a message from %s", mqtt_topic)
    if quotas is not None:  # [quotas] hook: kiosks at their quota are left unacked
        items = quotas.screen(store, items)
    outcome = store.ingest(items)  # returns after COMMIT
    acks: list[tuple[str, bytes]] = []
    for kiosk in sorted(set(outcome.acked) | set(outcome.rejected)):
        for ack in split_ack(outcome.acked.get(kiosk, []), outcome.rejected.get(kiosk, [])):
            acks.append((acks_topic(kiosk), ack.encode()))
    return BatchResult(items=items, outcome=outcome, acks=acks)
