"""Invariant 7 at the broker: the shipped ACL file confines each kiosk to its namespace."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import acks_topic, records_topic
from sync.mqtt_link import MqttSettings
from sync.outbox import Outbox
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
USERS = {"aps-collector": "c-secret", "k-acl-01": "k1-secret", "k-acl-02": "k2-secret"}


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    pw = tmp_path / "passwd"
    for n, (user, password) in enumerate(USERS.items()):
        flags = ["-c"] if n == 0 else []
        subprocess.run(["mosquitto_passwd", "-b", *flags, str(pw), user, password], check=True)
    pw.chmod(0o600)
    extra = (
        "allow_anonymous false\n"
        f"password_file {pw}\n"
        f"acl_file {ROOT / 'config' / 'mosquitto-acl.conf'}\n"
    )
    with MosquittoProcess(tmp_path / "broker", extra_config=extra) as b:
        yield b


def _settings(port: int, user: str) -> MqttSettings:
    return MqttSettings(port=port, username=user, password=USERS[user])


def test_a_kiosk_cannot_write_or_read_another_kiosks_topics(
    acl_broker: MosquittoProcess, tmp_path: Path
) -> None:
    central_db = tmp_path / "central.db"
    collector = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=_settings(acl_broker.port, "aps-collector"),
        settings=CollectorSettings(client_id="aps-collector"),
    )
    collector.start()
    wait_until(collector.network.connected.is_set, 30, "collector connected")

    # k-acl-01 forges a record from k-acl-02 (envelope and topic both say k-acl-02)
    # and listens on k-acl-02's acks.
    forged_db = tmp_path / "forged.db"
    forged = Outbox(forged_db, "k-acl-02").add("rating", {"level": "hai_long"})
    seen: list[str] = []
    evil = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="k-acl-01")
    evil.username_pw_set("k-acl-01", USERS["k-acl-01"])
    evil.on_message = lambda c, u, m: seen.append(m.topic)
    evil.connect("127.0.0.1", acl_broker.port)
    evil.loop_start()
    evil.subscribe(acks_topic("k-acl-02"), qos=1)
    evil.publish(records_topic("k-acl-02"), forged.encode(), qos=1).wait_for_publish(10)

    # The real k-acl-02 files and syncs normally; its acks reach it, not k-acl-01.
    real_db = tmp_path / "real.db"
    Outbox(real_db, "k-acl-02").add("rating", {"level": "rat_hai_long"})
    client = SyncClient(
        database=real_db,
        kiosk="k-acl-02",
        mqtt_settings=_settings(acl_broker.port, "k-acl-02"),
        settings=SyncSettings(ack_timeout_s=5, tick_s=0.05),
    )
    client.start()
    store = SQLiteStore(central_db)
    try:
        wait_until(lambda: client.counters.acked == 1, 30, "k-acl-02 acked")
        wait_until(collector.idle.is_set, 10, "collector idle")
        ids = store.record_ids("k-acl-02")
        assert forged.id not in ids and len(ids) == 1  # the forgery never reached central
        assert seen == []  # and k-acl-01 read none of k-acl-02's acks
    finally:
        client.stop()
        evil.loop_stop()
        collector.stop()
        store.close()
