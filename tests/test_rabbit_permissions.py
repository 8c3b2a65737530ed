"""Per-kiosk permissions on the RabbitMQ cluster, and the client-id takeover (issue 11).

Kiosks A and B each have a user made by :func:`central.rabbitmq_identities.provision_kiosk`.
What RabbitMQ 3.10 is seen to do here, and what these tests hold it to:

* B publishing on A's uplink: the broker closes B's connection; nothing reaches amq.topic.
* B subscribing to A's downlink: the broker closes B's connection; B gets none of A's acks.
* B connecting with A's client id (B's own password): RabbitMQ registers the client id
  before any permission is checked, so **A is disconnected** (3.10 cannot bind a client id
  to a user). That is all B gains: it cannot subscribe to A's topics, and when A has a
  persistent session B's CONNECT is refused (the plugin must declare or delete A's session
  queue, and B may not configure it), so A's queued messages wait for A.
* Without the per-kiosk permissions (every kiosk allowed ``.*``, RabbitMQ's usual setup)
  the same takeover hands B the messages queued for A: the last test shows it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pika
import pytest

from central.amqp_source import routing_key
from central.rabbitmq_identities import provision_collector, provision_kiosk
from sync.envelope import acks_topic, records_topic, topic
from tests import rabbit_cluster
from tests.rabbit_cluster import RabbitCluster
from tests.rabbit_mqtt_ready import mqtt_ready
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

A, B = "k-perm-a", "k-perm-b"
OBSERVER = ("observer", "observer-pw")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    assert rabbit_cluster.available(), "rabbitmq-server missing: apt-get install -y rabbitmq-server"
    for c in rabbit_cluster.cluster(tmp_path_factory.mktemp("rabbit")):
        ctl = functools.partial(c.ctl, 1)
        for kiosk in (A, B):
            provision_kiosk(ctl, kiosk, f"{kiosk}-pw")
        provision_kiosk(ctl, A, f"{A}-pw")  # twice: harmless
        provision_collector(ctl, "aps-collector", "collector-pw")
        c.add_user(*OBSERVER)  # the test's own eyes on amq.topic
        mqtt_ready(c, *OBSERVER)  # the client-id tracker answers on every node
        yield c


@dataclass
class Mqtt:
    """A raw paho client and what happened to it."""

    client: mqtt.Client
    connack: threading.Event = field(default_factory=threading.Event)
    rc: Any = None
    disconnected: threading.Event = field(default_factory=threading.Event)
    subacks: list[list[Any]] = field(default_factory=list)
    got: list[tuple[str, bytes]] = field(default_factory=list)

    def stop(self) -> None:
        self.client.disconnect()  # DISCONNECT sent by the loop, then the loop stops
        self.client.loop_stop()


def connect(
    cluster: RabbitCluster, node: int, user: str, client_id: str, *, clean: bool = True
) -> Mqtt:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
        reconnect_on_failure=False,
    )
    c.username_pw_set(user, f"{user}-pw")
    m = Mqtt(c)

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        m.rc = rc
        m.connack.set()

    def on_disconnect(*_a: Any) -> None:
        m.disconnected.set()

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, rcs: Any, _p: Any) -> None:
        m.subacks.append(list(rcs))

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        m.got.append((msg.topic, bytes(msg.payload)))

    c.on_connect, c.on_disconnect = on_connect, on_disconnect
    c.on_subscribe, c.on_message = on_subscribe, on_message
    c.connect("127.0.0.1", cluster.nodes[node - 1].mqtt_port, keepalive=10)
    c.loop_start()
    wait_until(lambda: m.connack.is_set() or m.disconnected.is_set(), 30, f"CONNACK {client_id}")
    return m


def connect_ok(
    cluster: RabbitCluster,
    node: int,
    user: str,
    client_id: str,
    *,
    clean: bool = True,
    timeout_s: float = 90,
) -> Mqtt:
    """A legitimate CONNECT, retried while the node answers "Server unavailable" (its
    client-id tracker not ready yet after the cluster formed or a node came back)."""
    deadline = time.monotonic() + timeout_s
    while True:
        m = connect(cluster, node, user, client_id, clean=clean)
        if m.rc == 0 and not m.disconnected.is_set():
            return m
        m.stop()
        if time.monotonic() > deadline:
            raise AssertionError(f"{user} as {client_id} on node {node}: CONNACK {m.rc}")
        time.sleep(1)


def subscribed(m: Mqtt, mqtt_topic: str) -> None:
    n = len(m.subacks)
    m.client.subscribe(mqtt_topic, qos=1)
    wait_until(lambda: len(m.subacks) > n, 30, f"SUBACK {mqtt_topic}")


class Observer:
    """An AMQP queue of the test's own, bound to amq.topic: what the broker let through."""

    def __init__(self, cluster: RabbitCluster, key: str) -> None:
        params = pika.ConnectionParameters(
            "127.0.0.1",
            cluster.nodes[0].amqp_port,
            credentials=pika.PlainCredentials(*OBSERVER),
        )
        self.conn = pika.BlockingConnection(params)
        self.ch = self.conn.channel()
        self.queue = self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.queue_bind(self.queue, "amq.topic", routing_key=key)
        self.got: list[tuple[str, bytes]] = []

    def drain(self) -> list[tuple[str, bytes]]:
        while True:
            method, _props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.got
            self.got.append((method.routing_key, body))

    def publish(self, mqtt_topic: str, body: bytes) -> None:
        self.ch.basic_publish("amq.topic", routing_key(mqtt_topic), body)

    def close(self) -> None:
        self.conn.close()


def test_a_kiosk_cannot_publish_on_another_kiosks_uplink(cluster: RabbitCluster) -> None:
    obs = Observer(cluster, "aps.v1.*.up.#")
    b = connect_ok(cluster, 2, B, B)
    a = connect_ok(cluster, 3, A, A)
    try:
        b.client.publish(records_topic(A), b"forged by B", qos=1)
        wait_until(b.disconnected.is_set, 30, "the broker closing B's connection")
        a.client.publish(records_topic(A), b"sent by A", qos=1)
        wait_until(lambda: (routing_key(records_topic(A)), b"sent by A") in obs.drain(), 30, "A's")
        b2 = connect_ok(cluster, 2, B, B)
        b2.client.publish(records_topic(B), b"B on its own", qos=1)
        wait_until(lambda: (routing_key(records_topic(B)), b"B on its own") in obs.drain(), 30, "B")
        b2.stop()
    finally:
        a.stop()
        b.stop()
    assert b"forged by B" not in [body for _, body in obs.drain()]
    obs.close()


def test_a_kiosk_cannot_subscribe_to_another_kiosks_downlink(cluster: RabbitCluster) -> None:
    obs = Observer(cluster, "nothing.here")
    a = connect_ok(cluster, 1, A, A)
    b = connect_ok(cluster, 2, B, B)
    try:
        subscribed(a, topic(A, "down", "#"))
        b.client.subscribe(topic(A, "down", "#"), qos=1)
        wait_until(lambda: b.disconnected.is_set() or bool(b.subacks), 30, "B refused or answered")
        obs.publish(acks_topic(A), b"ack for A")
        wait_until(lambda: (acks_topic(A), b"ack for A") in a.got, 30, "A's ack at A")
    finally:
        a.stop()
        b.stop()
        obs.close()
    assert b.got == []
    refused_in_suback = bool(b.subacks) and all(rc.is_failure for rc in b.subacks[0])
    assert b.disconnected.is_set() or refused_in_suback
    print(
        f"B subscribing to A's downlink: disconnected={b.disconnected.is_set()} subacks={b.subacks}"
    )


def test_takeover_of_a_clean_session_kicks_a_but_gives_b_nothing(cluster: RabbitCluster) -> None:
    obs = Observer(cluster, "nothing.here")
    a = connect_ok(cluster, 1, A, A)
    subscribed(a, topic(A, "down", "#"))
    b = connect(cluster, 2, B, A)  # B's password, A's client id
    deadline = time.monotonic() + 90
    # Retried (as an attacker would) while node 2's client-id tracker is not ready, which
    # also answers "Server unavailable" and kicks no one.
    while not a.disconnected.wait(10) and time.monotonic() < deadline:
        b.stop()
        b = connect(cluster, 2, B, A)
    try:
        assert a.disconnected.is_set(), "A was not kicked off by the takeover"
        print(f"takeover of a clean session: B's CONNACK {b.rc}, A disconnected")
        if b.rc == 0 and not b.disconnected.is_set():
            b.client.subscribe(topic(A, "down", "#"), qos=1)
            wait_until(lambda: b.disconnected.is_set() or bool(b.subacks), 30, "B's SUBSCRIBE")
        obs.publish(acks_topic(A), b"meant for A")
        a2 = connect_ok(cluster, 1, A, A)  # A back: the same client id kicks B in turn
        subscribed(a2, topic(A, "down", "#"))
        wait_until(b.disconnected.is_set, 30, "B kicked off by A's return")
        obs.publish(acks_topic(A), b"after A's return")
        wait_until(lambda: (acks_topic(A), b"after A's return") in a2.got, 30, "A's message")
        a2.stop()
    finally:
        a.stop()
        b.stop()
        obs.close()
    assert b.got == [], "B read a message meant for A"


def _queue_for_a(cluster: RabbitCluster, messages: list[bytes]) -> None:
    """A's persistent session, then A offline with ``messages`` queued for it."""
    a = connect_ok(cluster, 1, A, A, clean=False)
    subscribed(a, acks_topic(A))
    a.stop()
    wait_until(a.disconnected.is_set, 30, "A offline")
    obs = Observer(cluster, "nothing.here")
    for body in messages:
        obs.publish(acks_topic(A), body)
    obs.close()


def test_takeover_of_a_persistent_session_is_refused_and_a_keeps_its_messages(
    cluster: RabbitCluster,
) -> None:
    queued = [b"queued-1", b"queued-2", b"queued-3"]
    _queue_for_a(cluster, queued)
    attempts = [connect(cluster, 2, B, A, clean=False), connect(cluster, 3, B, A, clean=True)]
    for b in attempts:
        wait_until(b.disconnected.is_set, 30, "B's CONNECT with A's client id ended")
        b.stop()
    print("takeover of a persistent session: B's CONNACKs", [b.rc for b in attempts])
    assert all(b.rc is not None and b.rc != 0 for b in attempts), [b.rc for b in attempts]
    assert [m for b in attempts for m in b.got] == []
    a = connect_ok(cluster, 2, A, A, clean=False)  # A back, on another node
    try:
        wait_until(
            lambda: set(queued) <= {body for _, body in a.got}, 60, f"A's queued messages {a.got}"
        )
    finally:
        a.stop()
    wait_until(a.disconnected.is_set, 30, "A offline")
    clean = connect_ok(cluster, 2, A, A, clean=True)  # A ends its persistent session
    clean.stop()


def test_without_per_kiosk_permissions_the_takeover_reads_a_s_queue(
    cluster: RabbitCluster,
) -> None:
    """The control: B allowed ``.*`` (RabbitMQ's usual per-user setup) takes A's messages."""
    loose = "k-perm-loose"
    cluster.add_user(loose, f"{loose}-pw")  # configure/write/read .*, no topic permission
    queued = [b"for-a-1", b"for-a-2"]
    _queue_for_a(cluster, queued)
    b = connect_ok(cluster, 3, loose, A, clean=False)
    try:
        wait_until(lambda: len(b.got) >= len(queued), 60, "the loose user reading A's queue")
    finally:
        b.stop()
    assert b.rc == 0 and [body for _, body in b.got] == queued
    clean = connect_ok(cluster, 3, A, A, clean=True)
    clean.stop()
