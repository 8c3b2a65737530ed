"""A bare paho client that records what the broker answers (SUBACK codes, messages)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from sync.mqtt_link import MqttSettings, make_paho_client
from tests.waiting import wait_until


@dataclass
class Probe:
    """A bare paho client that records what the broker says to it."""

    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    refused: list[str] = field(default_factory=list)
    subacks: dict[int, list[int]] = field(default_factory=dict)
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    disconnects: int = 0

    def subscribe(self, *topics: str) -> list[int]:
        """Subscribe and wait for the SUBACK; returns the granted QoS or 128 per topic."""
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        wait_until(lambda: mid in self.subacks, 10, "SUBACK")
        return self.subacks[mid]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def probe(settings: MqttSettings, client_id: str, *, clean: bool = True) -> Probe:
    p = Probe(make_paho_client(client_id, settings, clean_session=clean))

    def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            p.refused.append(str(rc))
        else:
            p.connected.set()

    def on_subscribe(c: Any, u: Any, mid: int, rcs: Any, props: Any) -> None:
        p.subacks[mid] = [int(rc.value) for rc in rcs]

    def on_disconnect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        p.disconnects += 1

    p.client.on_connect = on_connect
    p.client.on_subscribe = on_subscribe
    p.client.on_disconnect = on_disconnect
    p.client.on_message = lambda c, u, m: p.messages.append((m.topic, bytes(m.payload)))
    p.client.connect(settings.host, settings.port, 30)
    p.client.loop_start()
    wait_until(lambda: p.connected.is_set() or p.refused or p.disconnects, 10, "CONNACK")
    return p
