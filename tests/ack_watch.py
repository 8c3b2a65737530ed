"""Watch the acks central sends a kiosk, from outside, with a subscriber of our own.

:class:`AckWatch` subscribes to one kiosk's ack topic on the test broker and
calls ``check(ack)`` in paho's thread as each ack arrives; whatever the check
returns is kept, in arrival order. A test uses it to look at central's store at
the moment an ack is delivered (ack means committed, invariant 3).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import paho.mqtt.client as mqtt

from sync.envelope import Ack, acks_topic, decode_ack
from sync.ids import new_ulid
from sync.mqtt_link import MqttSettings, make_paho_client
from tests.waiting import wait_until

T = TypeVar("T")


class AckWatch(Generic[T]):
    def __init__(self, mqtt_settings: MqttSettings, kiosk: str, check: Callable[[Ack], T]) -> None:
        self.topic = acks_topic(kiosk)
        self.check = check
        self.seen: list[tuple[Ack, T]] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = make_paho_client(f"ack-watch-{new_ulid()}", mqtt_settings)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._settings = mqtt_settings

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = decode_ack(bytes(msg.payload))
            result = self.check(ack)
        except BaseException as exc:  # kept, and raised by the test's own thread
            with self._lock:
                self.errors.append(exc)
            return
        with self._lock:
            self.seen.append((ack, result))

    def start(self) -> AckWatch[T]:
        self.client.connect(self._settings.host, self._settings.port, keepalive=30)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, 30, f"subscribed to {self.topic}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def acked_ids(self) -> list[str]:
        with self._lock:
            return [rid for ack, _ in self.seen for rid in ack.acked]

    def results(self) -> list[tuple[Ack, T]]:
        with self._lock:
            if self.errors:
                raise self.errors[0]
            return list(self.seen)
