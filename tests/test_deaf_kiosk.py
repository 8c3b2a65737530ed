"""A kiosk that is connected but hears nothing heals itself (sync.deaf_watch).

End to end on a real mosquitto, a real collector and a real SyncClient. The
kiosk reaches the broker through tests/deaf_proxy.py, which can drop the
broker's PUBLISH packets to it while PINGRESP, SUBACK and PUBACK still flow:
the connection stays up and the kiosk hears nothing, as k-chaos-05 did on the
RabbitMQ cluster (docs/chaos.md). The proxy reads plain MQTT, so the kiosk
logs in with a password on the broker's local listener (its own dynsec client
and role, as enrolled, plus a password) instead of its certificate.

The unit tests at the bottom drive the watch itself.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from central.broker_identities import DynsecAdmin
from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.deaf_watch import DeafWatch, DeafWatchError
from sync.mqtt_link import MqttSettings
from tests import identity as keyring
from tests import stack
from tests.deaf_proxy import PUBLISH, DeafeningProxy
from tests.waiting import wait_until

KIOSK = stack.KIOSK
ACK_TIMEOUT_S = 1.0
PASSWORD = "deaf-kiosk-test-password"


def _kiosk_over_password(broker: MosquittoProcess) -> MqttSettings:
    broker.kiosk(KIOSK)  # enrol: the kiosk's client, client id and role
    DynsecAdmin(broker.admin()).run(
        [{"command": "setClientPassword", "username": KIOSK, "password": PASSWORD}]
    )
    return MqttSettings(port=broker.local_port, username=KIOSK, password=PASSWORD)


def _collector(broker: MosquittoProcess, central_db: Path, name: str) -> Collector:
    return Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector(name),
        settings=CollectorSettings(client_id=name, reconnect_min_s=0.1, reconnect_max_s=1),
        **keyring.CENTRAL,
    )


def _kiosk(kiosk_db: Path, mqtt_settings: MqttSettings) -> SyncClient:
    return SyncClient(
        database=kiosk_db,
        kiosk=KIOSK,
        mqtt_settings=mqtt_settings,
        settings=SyncSettings(
            inflight_window=16,
            ack_timeout_s=ACK_TIMEOUT_S,
            deaf_after_ack_timeouts=3,
            tick_s=0.05,
            reconnect_min_s=0.2,
            reconnect_max_s=1,
        ),
        identity=keyring.kiosk_identity(),
    )


def _assert_exactly_once(central_db: Path, kiosk_db: Path, ids: list[str]) -> None:
    held = stack.central_ids(central_db)
    assert sorted(held) == sorted(ids), "central must hold every record exactly once"
    assert stack.kiosk_states(kiosk_db) == dict.fromkeys(ids, "acked")


def test_a_deafened_kiosk_reconnects_by_itself_and_every_record_is_acked_once(
    broker: MosquittoProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    proxy = DeafeningProxy(broker.local_port)
    collector = _collector(broker, central_db, "aps-c-deaf")
    client = _kiosk(kiosk_db, replace(_kiosk_over_password(broker), port=proxy.port))
    collector.start()
    wait_until(collector.online.is_set, 30, "collector online")
    first = stack.fill_outbox(kiosk_db, 10)
    client.start()
    try:
        wait_until(lambda: stack.kiosk_acked(kiosk_db) == 10, 30, "first records acked")
        assert client.counters.deaf_reconnects == 0 and proxy.connections == 1
        proxy.deafen()
        caplog.set_level(logging.WARNING, logger="aps.sync")
        more = stack.fill_outbox(kiosk_db, 40, start=11)  # 16 in flight, 24 waiting
        # Central stores what arrives, but its acks never reach the kiosk...
        wait_until(lambda: stack.central_count(central_db) >= 16, 30, "window stored")
        assert stack.kiosk_acked(kiosk_db) == 10
        # ...until the kiosk, hearing nothing for 3 ack timeouts, reconnects by itself.
        wait_until(lambda: stack.kiosk_acked(kiosk_db) == 50, 60, "all acked after healing")
        assert client.counters.deaf_reconnects == 1
        assert proxy.connections == 2
        assert proxy.dropped_publishes >= 1  # the acks of the deaf session
        assert PUBLISH not in proxy.passed_while_deaf
        assert client.network.connected.is_set()
        [warning] = [r for r in caplog.records if "connected but deaf" in r.getMessage()]
        assert warning.levelno == logging.WARNING
        assert "3 ack timeouts in a row" in warning.getMessage()
        assert "nothing at all arrived downlink" in warning.getMessage()
    finally:
        client.stop()
        collector.stop()
        proxy.close()
    _assert_exactly_once(central_db, kiosk_db, first + more)


def test_a_kiosk_whose_central_is_stopped_does_not_flap(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    """No collector: no acks, and nothing else either, but the kiosk heard the collector
    say "offline" (its farewell; a fresh session would hear it again, retained), so it
    waits on the same connection instead of reconnecting every three ack timeouts."""
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    proxy = DeafeningProxy(broker.local_port)  # never deafened: a healthy link
    collector = _collector(broker, central_db, "aps-c-stopped")
    client = _kiosk(kiosk_db, replace(_kiosk_over_password(broker), port=proxy.port))
    collector.start()
    wait_until(collector.online.is_set, 30, "collector online")
    first = stack.fill_outbox(kiosk_db, 5)
    client.start()
    try:
        wait_until(lambda: stack.kiosk_acked(kiosk_db) == 5, 30, "first records acked")
        collector.stop()
        more = stack.fill_outbox(kiosk_db, 20, start=6)
        wait_until(lambda: client.counters.retransmitted >= 16 * 8, 30, "8 ack timeouts")
        assert client.counters.deaf_reconnects == 0
        assert proxy.connections == 1 and client.counters.connects == 1
        assert stack.kiosk_acked(kiosk_db) == 5
        # Central comes back: its live "online" restarts the window on the same link.
        collector = _collector(broker, central_db, "aps-c-stopped")
        collector.start()
        wait_until(lambda: stack.kiosk_acked(kiosk_db) == 25, 30, "all acked")
        assert client.counters.deaf_reconnects == 0 and proxy.connections == 1
    finally:
        client.stop()
        collector.stop()
        proxy.close()
    _assert_exactly_once(central_db, kiosk_db, first + more)


# -- the watch on its own -------------------------------------------------------------


def _watch(n: int = 3) -> DeafWatch:
    watch = DeafWatch(ack_timeouts=n, ack_timeout_s=30.0)
    watch.subscribed(0.0)
    return watch


def test_three_silent_ack_timeouts_of_one_record_are_deaf_once() -> None:
    watch = _watch()
    assert watch.retransmitted(["a", "b"], 30.0) is None
    assert watch.retransmitted(["a", "b"], 60.0) is None
    deaf = watch.retransmitted(["a", "b"], 90.0)
    assert deaf is not None
    assert (deaf.ack_timeouts, deaf.in_flight, deaf.quiet_s) == (3, 2, 90.0)
    assert deaf.since == "the SUBACK"
    assert watch.retransmitted(["a"], 120.0) is None  # once per quiet period


def test_any_message_starts_the_count_again() -> None:
    watch = _watch()
    watch.retransmitted(["a"], 30.0)
    watch.retransmitted(["a"], 60.0)
    watch.heard(61.0, "aps/v1/k/down/nudge")
    assert watch.retransmitted(["a"], 90.0) is None  # this timeout was not silent throughout
    assert watch.retransmitted(["a"], 120.0) is None
    assert watch.retransmitted(["a"], 150.0) is None
    deaf = watch.retransmitted(["a"], 180.0)
    assert deaf is not None and deaf.since == "the last message (aps/v1/k/down/nudge)"


def test_nothing_in_flight_or_offline_is_never_deaf() -> None:
    watch = _watch(1)
    assert watch.retransmitted([], 300.0) is None
    watch.disconnected()
    assert watch.retransmitted(["a"], 300.0) is None
    watch.subscribed(300.0)
    watch.presence("c1", "online")
    watch.presence("c2", "offline")
    assert not watch.central_offline
    watch.presence("c1", "offline")
    assert watch.central_offline
    assert watch.retransmitted(["a"], 400.0) is None  # central is down: nobody to ack
    watch.presence("c2", "online")
    assert watch.retransmitted(["a"], 500.0) is not None


def test_the_watch_refuses_settings_out_of_range() -> None:
    with pytest.raises(DeafWatchError):
        DeafWatch(ack_timeouts=0, ack_timeout_s=30.0)
    with pytest.raises(DeafWatchError):
        DeafWatch(ack_timeouts=3, ack_timeout_s=0)
