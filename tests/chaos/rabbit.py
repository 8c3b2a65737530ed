"""The chaos stack's broker with ``--broker rabbitmq``: the private 3-node RabbitMQ cluster.

The cluster is :class:`tests.rabbit_cluster.RabbitCluster` (own ports, own epmd; never the
RabbitMQ on 5672). Identities are made the production way
(:mod:`central.rabbitmq_identities`): one RabbitMQ user per collector, both consuming
the same quorum queue; one user per kiosk with its own topics only; the rogue identity
gets a kiosk's permissions but central's registry does not know it.

Kiosk ``i`` has node ``i % 3 + 1`` as its home: its proxy forwards there. While a node
is down (killed, or stopping and starting again) the proxies of its kiosks forward to a
node that is up, as a TCP load balancer with health checks in front of the cluster would;
a kiosk already connected is dropped by the dying node and reconnects through its
proxy. The proxies go home once the node takes MQTT CONNECTs again.

At most one node is down at a time: the uplink queue and the MQTT client-id tracker are
Raft clusters of three, a majority keeps them going; two nodes down is an outage, not
chaos the stack is meant to ride out.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from central.rabbitmq_identities import provision_collector, provision_kiosk
from sync.mqtt_link import MqttSettings
from tests.rabbit_cluster import NODES, RabbitCluster
from tests.rabbit_mqtt_ready import accepts, mqtt_ready
from tests.tcp_proxy import TcpProxy

log = logging.getLogger("aps.chaos")

QUEUE = "aps.uplink"
PROBE = "chaos-probe"  # the harness's own MQTT login, for readiness probes only
_CONSUMING = re.compile(rb"AMQP collector \S+ consuming \S+ on amqp://127\.0\.0\.1:(\d+)/")


@dataclass
class RabbitBroker:
    base: Path
    cluster: RabbitCluster | None = None
    passwords: dict[str, str] = field(default_factory=dict)
    #: Nodes not (yet) back: killed, stopping, or started and not taking CONNECTs yet.
    down: set[int] = field(default_factory=set)
    #: Each kiosk's proxy and home node.
    homes: list[tuple[TcpProxy, int]] = field(default_factory=list)

    @property
    def c(self) -> RabbitCluster:
        assert self.cluster is not None
        return self.cluster

    def start(self) -> None:
        """The cluster up (made once more on new ports if it fails to start, as
        :func:`tests.rabbit_cluster.cluster` does), the probe user on every node."""
        for attempt in (1, 2):
            c = RabbitCluster(self.base / f"try{attempt}")
            try:
                c.start()
            except RuntimeError:
                c.stop()
                if attempt == 2:
                    raise
                continue
            self.cluster = c
            break
        self.passwords[PROBE] = secrets.token_hex(12)
        self.c.add_user(PROBE, self.passwords[PROBE])
        mqtt_ready(self.c, PROBE, self.passwords[PROBE])

    def _ctl(self) -> functools.partial[str]:
        up = next(n for n in range(1, NODES + 1) if n not in self.down)
        return functools.partial(self.c.ctl, up)

    def collector(self, name: str) -> tuple[str, str]:
        """A collector's RabbitMQ user (its name) and password, on the shared queue."""
        password = secrets.token_hex(12)
        provision_collector(self._ctl(), name, password, QUEUE)
        self.passwords[name] = password
        return name, password

    def amqp_urls(self, first: int) -> list[str]:
        """Every node's AMQP URL, starting with node ``first``."""
        order = [(first - 1 + i) % NODES + 1 for i in range(NODES)]
        return [f"amqp://127.0.0.1:{self.c.nodes[n - 1].amqp_port}/%2F" for n in order]

    def kiosk(self, kiosk: str, node: int | None = None) -> MqttSettings:
        """MQTT settings for ``kiosk`` on ``node`` (default: one that is up); the user
        is made on first use."""
        if kiosk not in self.passwords:
            password = secrets.token_hex(12)
            provision_kiosk(self._ctl(), kiosk, password)
            self.passwords[kiosk] = password
        if node is None:
            node = self.up_node()
        return MqttSettings(
            port=self.c.nodes[node - 1].mqtt_port,
            username=kiosk,
            password=self.passwords[kiosk],
        )

    def up_node(self, avoid: int = 0) -> int:
        return next(n for n in range(1, NODES + 1) if n not in self.down and n != avoid)

    def home(self, kiosk_index: int) -> int:
        return kiosk_index % NODES + 1

    def add_proxy(self, proxy: TcpProxy, home: int) -> None:
        self.homes.append((proxy, home))

    def _point(self, node: int, to: int) -> None:
        port = self.c.nodes[to - 1].mqtt_port
        for proxy, home in self.homes:
            if home == node:
                proxy.target = ("127.0.0.1", port)

    # -- node faults ------------------------------------------------------------------
    def all_up(self) -> bool:
        return not self.down

    def kill(self, n: int) -> None:
        """kill -9 of node ``n``'s process group; its kiosks' proxies to another node."""
        self.down.add(n)
        self._point(n, self.up_node(avoid=n))
        self.c.kill(n)

    def terminate(self, n: int) -> None:
        """SIGTERM to node ``n``'s ``rabbitmq-server``: it stops the node cleanly
        (``rabbitmqctl stop``) and exits; :meth:`stopped` says when."""
        self.down.add(n)
        self._point(n, self.up_node(avoid=n))
        proc = self.c.nodes[n - 1].proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def stopped(self, n: int) -> bool:
        node = self.c.nodes[n - 1]
        if node.proc is not None and node.proc.poll() is None:
            return False
        node.proc = None
        return True

    def start_node(self, n: int) -> None:
        if self.c.nodes[n - 1].proc is None:
            self.c.start_node(n)

    def back(self, n: int) -> bool:
        """Node ``n`` takes MQTT CONNECTs again: its kiosks' proxies go home."""
        node = self.c.nodes[n - 1]
        if node.proc is None or node.proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", node.mqtt_port), timeout=0.5).close()
        except OSError:
            return False
        if not accepts(self.c, n, PROBE, self.passwords[PROBE]):
            return False
        self._point(n, n)
        self.down.discard(n)
        return True

    def collector_node(self, log_path: Path) -> int | None:
        """The node a collector last said it consumes on (its log), if any."""
        try:
            text = log_path.read_bytes()[-200_000:]
        except OSError:
            return None
        found = _CONSUMING.findall(text)
        if not found:
            return None
        port = int(found[-1])
        return next((nd.n for nd in self.c.nodes if nd.amqp_port == port), None)

    # -- the end ----------------------------------------------------------------------
    def heal(self) -> None:
        """Every node running and taking CONNECTs (a node that will not is restarted),
        every proxy forwarding home."""
        for n in range(1, NODES + 1):
            node = self.c.nodes[n - 1]
            if node.proc is not None and node.proc.poll() is None:
                continue
            deadline = time.monotonic() + 60
            while not self.stopped(n) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not self.stopped(n):
                self.c.kill(n)
            self.c.start_node(n)
        for n in range(1, NODES + 1):
            self.c.wait_node(n)
        mqtt_ready(self.c, PROBE, self.passwords[PROBE])
        for n in range(1, NODES + 1):
            self._point(n, n)
        self.down.clear()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
