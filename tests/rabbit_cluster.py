"""A private 3-node RabbitMQ cluster on loopback, for the clustered-broker tests (issue 11).

Theory of operation: Debian's ``rabbitmq-server`` (3.10, with its MQTT plugin) is started
three times from ``/usr/lib/rabbitmq/bin`` (the ``/usr/sbin`` wrapper switches to the
``rabbitmq`` user, which cannot write a test's directory), each node with its own name
(``apsN-<tag>@localhost``), data and log directories, AMQP, MQTT and distribution ports, all
picked free on 127.0.0.1, and an Erlang port mapper of the cluster's own (``ERL_EPMD_PORT``):
started in the foreground by :meth:`RabbitCluster.start` and killed by :meth:`~RabbitCluster.stop`;
the RabbitMQ this machine already runs on 5672, with its epmd on 4369, is never touched. The
nodes share a cookie in their own ``HOME`` and find each other through
``cluster_formation.classic_config``; MQTT sessions are quorum queues
(``mqtt.durable_queue_type = quorum``), so a subscriber's queue lives on all three nodes.

:meth:`RabbitCluster.kill` is ``kill -9`` of a node's whole process group (beam and its
children); :meth:`RabbitCluster.start_node` brings it back with its data.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path("/usr/lib/rabbitmq/bin")
NODES = 3


def available() -> bool:
    return (BIN / "rabbitmq-server").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    n: int
    name: str
    home: Path
    amqp_port: int
    mqtt_port: int
    dist_port: int
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class RabbitCluster:
    base: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    epmd_port: int = field(default_factory=_free_port)
    nodes: list[Node] = field(default_factory=list)
    epmd: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        names = [f"aps{n}-{self.tag}@localhost" for n in range(1, NODES + 1)]
        for n, name in enumerate(names, start=1):
            d = self.base / f"n{n}"
            (d / "home").mkdir(parents=True)
            cookie = d / "home" / ".erlang.cookie"
            cookie.write_text(f"APS{self.tag.upper()}COOKIE")
            cookie.chmod(0o400)
            node = Node(n, name, d / "home", _free_port(), _free_port(), _free_port())
            peers = "\n".join(
                f"cluster_formation.classic_config.nodes.{i} = {p}" for i, p in enumerate(names, 1)
            )
            (d / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
                f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}\n"
                "mqtt.durable_queue_type = quorum\n"
                "mqtt.allow_anonymous = false\n"
                "loopback_users = none\n"
                "cluster_formation.peer_discovery_backend = classic_config\n"
                f"{peers}\n"
            )
            (d / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
            self.nodes.append(node)

    def _env(self, node: Node) -> dict[str, str]:
        d = node.home.parent
        return {
            "PATH": "/usr/sbin:/usr/bin:/bin",
            "HOME": str(node.home),
            "LANG": "C.UTF-8",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(d / "plugins-expand"),
        }

    def start_node(self, n: int) -> None:
        node = self.nodes[n - 1]
        out = open(node.home.parent / "stdout", "ab")  # noqa: SIM115 - the node keeps it
        node.proc = subprocess.Popen(
            [str(BIN / "rabbitmq-server")],
            env=self._env(node),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def ctl(self, n: int, *args: str, timeout: float = 120, stdin: str | None = None) -> str:
        node = self.nodes[n - 1]
        done = subprocess.run(
            [str(BIN / "rabbitmqctl"), "-n", node.name, *args],
            input=stdin,
            env=self._env(node),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on node {n}: {done.stderr[-800:]}")
        return done.stdout

    def wait_node(self, n: int, timeout: float = 180) -> None:
        """Until the node's broker application runs and its MQTT port answers."""
        node = self.nodes[n - 1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                log = (node.home.parent / "stdout").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"node {n} exited: {log}")
            try:
                self.ctl(n, "await_startup", "--timeout", "10", timeout=30)
                with socket.create_connection(("127.0.0.1", node.mqtt_port), timeout=1):
                    return
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                time.sleep(0.5)
        raise RuntimeError(f"node {n} did not start within {timeout}s")

    def start(self) -> None:
        # The port mapper in the foreground, ours to kill (a node would start a daemon one).
        self.epmd = subprocess.Popen(
            ["epmd", "-port", str(self.epmd_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.epmd_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("epmd did not start") from None
                time.sleep(0.1)
        for n in range(1, NODES + 1):
            self.start_node(n)
        for n in range(1, NODES + 1):
            self.wait_node(n)

    def running_nodes(self, n: int = 1) -> set[str]:
        out = self.ctl(n, "eval", "rabbit_nodes:all_running().")
        return {node.name for node in self.nodes if node.name in out}

    def add_user(self, name: str, password: str) -> None:
        self.ctl(1, "add_user", name, stdin=password + "\n")
        self.ctl(1, "set_permissions", "-p", "/", name, ".*", ".*", ".*")

    def kill(self, n: int) -> None:
        node = self.nodes[n - 1]
        if node.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.proc.pid, signal.SIGKILL)
        node.proc.wait(timeout=30)
        node.proc = None

    def stop(self) -> None:
        for n in range(1, NODES + 1):
            self.kill(n)
        if self.epmd is not None:  # the cluster's own port mapper, never the machine's
            self.epmd.kill()
            self.epmd.wait(timeout=30)
            self.epmd = None


def cluster(base: Path) -> Iterator[RabbitCluster]:
    """A started cluster, stopped (every node killed, its epmd too) afterwards.

    A cluster that fails to start is stopped and made once more on new ports: a port
    picked free can be taken by another process before the node binds it (seen once,
    ``eaddrinuse``). A second failure is raised with the node's log.
    """
    for attempt in (1, 2):
        c = RabbitCluster(base / f"try{attempt}")
        try:
            c.start()
        except RuntimeError:
            c.stop()
            if attempt == 2:
                raise
            continue
        try:
            yield c
        finally:
            c.stop()
            shutil.rmtree(base, ignore_errors=True)
        return
