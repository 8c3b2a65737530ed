"""Reconnects back off exponentially with full jitter, up to the maximum."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from central.mosquitto import free_port
from sync.mqtt_link import MqttSettings, NetworkLoop, make_paho_client


def test_reconnect_waits_are_random_growing_and_capped() -> None:
    stop = threading.Event()
    waits: list[float] = []
    port = free_port()  # nothing listens there: every connect is refused

    def factory() -> mqtt.Client:
        return make_paho_client("k-backoff", MqttSettings(port=port))

    loop = NetworkLoop(
        factory,
        MqttSettings(port=port),
        backoff_min_s=0.01,
        backoff_max_s=0.08,
        stop=stop,
        name="test-backoff",
    )

    def record(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 40:
            stop.set()

    loop._sleep = record  # type: ignore[method-assign]
    loop.start()
    loop.thread.join(30)
    assert not loop.thread.is_alive()
    assert len(waits) >= 40
    assert all(0 <= w <= 0.08 for w in waits)
    assert len({round(w, 6) for w in waits}) > 30  # jittered, not a fixed schedule
    early, late = waits[:3], waits[20:]
    assert max(early) <= 0.04 < max(late)  # the ceiling grows with the attempts
