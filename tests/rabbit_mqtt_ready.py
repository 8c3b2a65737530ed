"""Wait until every node of the private RabbitMQ cluster accepts MQTT connections.

A node can be up, its MQTT port open, and still answer every CONNECT with "Server
unavailable": RabbitMQ 3.10's MQTT client-id tracker (a Raft cluster of its own) has not
taken the node in (``rabbit_mqtt_processor``: "client ID tracker is unavailable"). Seen
here for minutes on one node of three started at once. :func:`mqtt_ready` probes each node
with a real CONNECT and restarts a node that keeps refusing, which brings it into the
tracker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from tests.rabbit_cluster import RabbitCluster


def accepts(cluster: RabbitCluster, node: int, user: str, password: str) -> bool:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"probe-{node}",
        protocol=mqtt.MQTTv311,
        reconnect_on_failure=False,
    )
    c.username_pw_set(user, password)
    result: list[Any] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result.append(rc)
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = lambda *_a: done.set()
    try:
        c.connect("127.0.0.1", cluster.nodes[node - 1].mqtt_port, keepalive=10)
    except OSError:
        return False
    c.loop_start()
    try:
        done.wait(15)
        return bool(result) and result[0] == 0
    finally:
        c.loop_stop()
        c.disconnect()


def mqtt_ready(
    cluster: RabbitCluster, user: str, password: str, per_try_s: float = 45, restarts: int = 2
) -> None:
    """Every node accepts a CONNECT from ``user`` (a node that will not is restarted)."""
    for node in (1, 2, 3):
        for attempt in range(restarts + 1):
            deadline = time.monotonic() + per_try_s
            while time.monotonic() < deadline:
                if accepts(cluster, node, user, password):
                    break
                time.sleep(1)
            else:
                if attempt == restarts:
                    raise AssertionError(f"node {node} refuses MQTT CONNECTs after restarts")
                cluster.kill(node)
                cluster.start_node(node)
                cluster.wait_node(node)
                continue
            break
