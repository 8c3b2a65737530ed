"""Reconnects back off exponentially with full jitter, after refusals and after drops."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from central.mosquitto import MosquittoProcess, refused_port
from sync.client import SyncClient, SyncSettings
from sync.envelope import heartbeat_topic
from sync.mqtt_link import MqttSettings, NetworkLoop, make_paho_client
from tests import identity as keyring
from tests import stack
from tests.waiting import wait_until


def test_reconnect_waits_are_random_growing_and_capped() -> None:
    stop = threading.Event()
    waits: list[float] = []
    held, port = refused_port()  # bound, never listening: every connect is refused

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
    try:
        loop.start()
        loop.thread.join(30)
    finally:
        held.close()
    assert not loop.thread.is_alive()
    assert len(waits) >= 40
    assert all(0 <= w <= 0.08 for w in waits)
    assert len({round(w, 6) for w in waits}) > 30  # jittered, not a fixed schedule
    early, late = waits[:3], waits[20:]
    assert max(early) <= 0.04 < max(late)  # the ceiling grows with the attempts


def _connections_as(broker: MosquittoProcess, client_id: str) -> int:
    return broker.log.read_text(errors="replace").count(f" as {client_id} ")


def test_two_boxes_with_one_kiosk_id_back_off_and_report_it(
    broker: MosquittoProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cloned SD card: two agents, one kiosk id, one certificate."""
    kiosk = "k-clone"
    heartbeats: list[dict[str, object]] = []
    watcher_settings = broker.collector("aps-watcher")
    watcher = make_paho_client("aps-watcher", watcher_settings)
    watcher.on_message = lambda c, u, m: heartbeats.append(json.loads(m.payload))
    watcher.connect("127.0.0.1", watcher_settings.port)
    watcher.subscribe(heartbeat_topic(kiosk), qos=0)
    watcher.loop_start()
    boxes = []
    for n in (1, 2):
        stack.fill_outbox(tmp_path / f"box{n}.db", 1, kiosk=kiosk)
        boxes.append(
            SyncClient(
                database=tmp_path / f"box{n}.db",
                kiosk=kiosk,
                mqtt_settings=broker.kiosk(kiosk),
                settings=SyncSettings(
                    reconnect_min_s=0.1,
                    reconnect_max_s=2.0,
                    heartbeat_interval_s=0.2,
                    tick_s=0.05,
                ),
                identity=keyring.kiosk_identity(),
            )
        )
    caplog.set_level(logging.ERROR, logger="aps.mqtt")
    started = time.monotonic()
    for box in boxes:
        box.start()
    try:
        wait_until(lambda: _connections_as(broker, kiosk) >= 16, 60, "16 connections")
        elapsed = time.monotonic() - started
        rate = _connections_as(broker, kiosk) / elapsed
        # Without backoff after a drop the two boxes connected ~620 times a second.
        assert rate <= 8, f"{rate:.0f} connections/s"
        wait_until(
            lambda: all(b.network.identity_conflicts >= 1 for b in boxes), 60, "both detect it"
        )
        assert "another box is using kiosk id k-clone" in caplog.text
        wait_until(
            lambda: any(int(str(h.get("identity_conflicts", 0))) >= 1 for h in heartbeats),
            60,
            "a heartbeat reporting the conflict upward",
        )
    finally:
        for box in boxes:
            box.stop()
        watcher.loop_stop()
