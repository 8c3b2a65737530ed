"""Downlink test helpers: central (collector + downlink service), a kiosk with its inbox."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from central import backoffice_db, downlink_log
from central.collector import Collector, CollectorSettings
from central.downlink import DownlinkService, DownlinkSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from edge_agent.inbox import Inbox
from sync.client import SyncClient, SyncSettings
from sync.mqtt_link import MqttSettings, make_paho_client
from sync.outbox import Outbox
from tests import identity as keyring

OFFICE = "000.00.14.H56"
OTHER_OFFICE = "000.00.14.H57"
AT = "2026-12-01T09:00:00+07:00"


def check_catalogue(body: dict[str, Any]) -> None:
    """A stand-in for helper A's catalogue validator: a version and a list of procedures."""
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError("body.version: expected a whole number >= 1")
    if not isinstance(body.get("procedures"), list):
        raise ValueError("body.procedures: expected a list")


def status_body(code: str, state: str, *, paid: bool = False) -> dict[str, Any]:
    return {"code": code, "state": state, "paid": paid, "changed_at": AT, "note": None}


def answer_body(code: str, text: str) -> dict[str, Any]:
    return {
        "lookup_code": code,
        "category": "question",
        "answer": text,
        "answered_at": AT,
        "answered_by": "Cán bộ Một cửa",
    }


def news_body(nid: str, title: str) -> dict[str, Any]:
    return {"id": nid, "title": title, "body": "Nội dung.", "published_at": AT, "withdrawn": False}


@dataclass
class Central:
    db: Path
    collector: Collector
    downlink: DownlinkService

    def append(self, audience: str, kind: str, key: str, body: dict[str, Any]) -> int:
        conn = backoffice_db.connect(self.db)
        try:
            with backoffice_db.transaction(conn):
                return downlink_log.append(conn, audience, kind, key, body)
        finally:
            conn.close()

    def latest(self) -> int:
        conn = backoffice_db.connect(self.db)
        try:
            return downlink_log.latest_cursor(conn)
        finally:
            conn.close()

    def stop(self) -> None:
        self.collector.stop()
        self.downlink.stop()


def start_central(
    broker: MosquittoProcess,
    db: Path,
    settings: DownlinkSettings | None = None,
    *,
    name: str = "aps-collector-1",
    shared_group: str | None = None,
) -> Central:
    collector = Collector(
        store_factory=lambda: SQLiteStore(db),
        mqtt_settings=broker.collector(name),
        settings=CollectorSettings(
            client_id=name, shared_group=shared_group, reconnect_min_s=0.1, reconnect_max_s=0.5
        ),
        **keyring.CENTRAL,
    )
    service = DownlinkService(
        database=db,
        publish=lambda t, p: collector.network.client.publish(t, p, qos=1),
        settings=settings or DownlinkSettings(nudge_interval_s=0.1),
        signing_key=keyring.CENTRAL_KEY,
    )
    collector.downlink = service
    service.start()
    collector.start()
    return Central(db=db, collector=collector, downlink=service)


@dataclass
class Kiosk:
    client: SyncClient
    inbox: Inbox
    app_outbox: Outbox

    def stop(self) -> None:
        self.client.stop()
        self.app_outbox.close()


def start_kiosk(
    broker: MosquittoProcess,
    db: Path,
    kiosk: str,
    *,
    office: str = OFFICE,
    mqtt_settings: MqttSettings | None = None,
    **settings: Any,
) -> Kiosk:
    app_outbox = Outbox(db, kiosk)
    inbox = Inbox(app_outbox)
    inbox.register_validator("catalogue", check_catalogue)
    defaults: dict[str, Any] = {
        "ack_timeout_s": 600,
        "tick_s": 0.05,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "state_reply_timeout_s": 5.0,
    }
    defaults.update(settings)
    client = SyncClient(
        database=db,
        kiosk=kiosk,
        mqtt_settings=mqtt_settings or broker.kiosk(kiosk),
        settings=SyncSettings(**defaults),
        office=office,
        on_state=inbox.apply,
        state_cursor=inbox.cursor,
        identity=keyring.kiosk_identity(),
    )
    client.start()
    return Kiosk(client=client, inbox=inbox, app_outbox=app_outbox)


class Listener:
    """A raw MQTT client (an observer or a collector identity) that records messages."""

    def __init__(self, settings: MqttSettings, client_id: str, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = make_paho_client(client_id, settings)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self._topics = topics
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        if self._topics:
            client.subscribe([(t, 1) for t in self._topics])
        else:
            self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def on(self, name_suffix: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t.endswith(name_suffix)]

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def when(cond: Callable[[], object]) -> Callable[[], bool]:
    return lambda: bool(cond())
