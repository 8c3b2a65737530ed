"""Faults at random (seeded): kill -9 and restart, broker restarts, cuts, full disks, garbage.

Kinds are dealt from a shuffled deck holding each kind once, so that every kind comes
up within the first len(KINDS) faults of any run, then in random order again. Each
fault that needs healing (a restart, a restore) is scheduled at a random delay; the
harness calls :meth:`FaultInjector.tick` often and :meth:`FaultInjector.heal_all` at
the end.

The deck depends on the broker: mosquitto's restart and kill become, on the RabbitMQ
cluster, ``kill-node`` (kill -9 of a random node, started again after 3-10 s),
``restart-node`` (SIGTERM: the node stops cleanly, then starts again) and
``kill-collector-node`` (kill -9 of the node a collector consumes on, from its log). A
node fault needs all three nodes up (one down at a time: the queues are Raft clusters of
three); otherwise it goes back into the deck for later.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.chaos.components import ChaosStack
from tests.chaos.garbage import publish_garbage

log = logging.getLogger("aps.chaos")

KINDS = (
    "kill-collector",
    "kill-agent",
    "restart-broker",
    "kill-broker",
    "cut-kiosk",
    "fill-disk",
    "garbage-rogue",
    "garbage-kiosk",
)
RABBITMQ_KINDS = (
    "kill-collector",
    "kill-agent",
    "kill-node",
    "restart-node",
    "kill-collector-node",
    "cut-kiosk",
    "fill-disk",
    "garbage-rogue",
    "garbage-kiosk",
)
ROGUE = "k-rogue-01"  # enrolled at the broker, unknown to central's registry


@dataclass
class FaultInjector:
    stack: ChaosStack
    rng: random.Random
    kinds: tuple[str, ...] = KINDS
    counts: Counter[str] = field(default_factory=Counter)
    garbage: Counter[str] = field(default_factory=Counter)  # messages the broker took, by kind
    _deck: list[str] = field(default_factory=list)
    _heals: list[tuple[float, str, Callable[[], None]]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _later(self, low: float, high: float, what: str, fn: Callable[[], None]) -> None:
        self._heals.append((time.monotonic() + self.rng.uniform(low, high), what, fn))

    def tick(self) -> None:
        """Run the heals that are due."""
        now = time.monotonic()
        due = [h for h in self._heals if h[0] <= now]
        self._heals = [h for h in self._heals if h[0] > now]
        for _, what, fn in due:
            log.info("heal: %s", what)
            started = time.monotonic()
            fn()
            if time.monotonic() - started > 1:
                log.info("heal: %s took %.1fs", what, time.monotonic() - started)

    def heal_all(self) -> None:
        heals, self._heals = self._heals, []
        for _, _, fn in heals:
            fn()
        self.stack.heal()

    def inject(self) -> str:
        """One fault; returns its kind ("" when it could not be injected right now)."""
        for _ in self.kinds:
            if not self._deck:
                self._deck = list(self.kinds)
                self.rng.shuffle(self._deck)
            kind = self._deck.pop()
            started = time.monotonic()
            done = getattr(self, "_" + kind.replace("-", "_"))() is not False
            if time.monotonic() - started > 1:
                log.info("%s took %.1fs", kind, time.monotonic() - started)
            if done:
                break
            # Not now (the broker or a node down): the end of the line, try the next.
            self._deck.insert(0, kind)
        else:
            return ""
        self.counts[kind] += 1
        log.info("fault %d: %s", self.total, kind)
        return kind

    # -- the faults ---------------------------------------------------------------------
    def _kill_collector(self) -> None:
        proc = self.rng.choice(self.stack.collectors)
        proc.kill9()
        self._later(0.5, 3, f"start {proc.name}", proc.ensure_started)

    def _kill_agent(self) -> None:
        proc = self.rng.choice(self.stack.kiosks).proc
        proc.kill9()
        self._later(0.5, 3, f"start {proc.name}", proc.ensure_started)

    def _restart_broker(self) -> None:
        self.stack.broker.restart()  # SIGTERM: persistence saves sessions, then start

    def _kill_broker(self) -> None:
        self.stack.broker.kill()  # SIGKILL: what was queued since the last autosave is gone
        self._later(0.5, 2, "start the broker", self._broker_up)

    def _broker_up(self) -> None:
        if self.stack.broker.proc is None:
            self.stack.broker.start()

    # -- RabbitMQ node faults (one node down at a time) ----------------------------------
    def _kill_node(self) -> bool:
        rabbit = self.stack.rabbit
        assert rabbit is not None
        if not rabbit.all_up():
            return False
        self._node_down(self.rng.randint(1, 3), graceful=False)
        return True

    def _restart_node(self) -> bool:
        rabbit = self.stack.rabbit
        assert rabbit is not None
        if not rabbit.all_up():
            return False
        self._node_down(self.rng.randint(1, 3), graceful=True)
        return True

    def _kill_collector_node(self) -> bool:
        rabbit = self.stack.rabbit
        assert rabbit is not None
        if not rabbit.all_up():
            return False
        collector = self.rng.choice(self.stack.collectors)
        node = rabbit.collector_node(collector.log)
        if node is None:
            return False
        log.info("%s consumes on node %d", collector.name, node)
        self._node_down(node, graceful=False)
        return True

    def _node_down(self, n: int, graceful: bool) -> None:
        rabbit = self.stack.rabbit
        assert rabbit is not None
        log.info("node %d: %s", n, "SIGTERM (clean stop)" if graceful else "kill -9")
        if graceful:
            rabbit.terminate(n)
            self._later(0.5, 1, f"node {n} stopped?", lambda: self._start_when_stopped(n))
        else:
            rabbit.kill(n)
            self._later(3, 10, f"start node {n}", lambda: self._start_node(n))

    def _start_when_stopped(self, n: int) -> None:
        rabbit = self.stack.rabbit
        assert rabbit is not None
        if rabbit.stopped(n):
            self._start_node(n)
        else:
            self._later(0.5, 1, f"node {n} stopped?", lambda: self._start_when_stopped(n))

    def _start_node(self, n: int) -> None:
        rabbit = self.stack.rabbit
        assert rabbit is not None
        rabbit.start_node(n)
        self._later(2, 3, f"node {n} back?", lambda: self._node_back(n))

    def _node_back(self, n: int) -> None:
        rabbit = self.stack.rabbit
        assert rabbit is not None
        if rabbit.back(n):
            log.info("node %d takes MQTT CONNECTs again", n)
        else:
            self._later(2, 3, f"node {n} back?", lambda: self._node_back(n))

    def _cut_kiosk(self) -> None:
        kiosk = self.rng.choice(self.stack.kiosks)
        kiosk.proxy.cut()
        self._later(2, 8, f"reconnect {kiosk.id}", kiosk.proxy.restore)

    def _fill_disk(self) -> None:
        kiosk = self.rng.choice(self.stack.kiosks)
        kiosk.full_flag.touch()
        self._later(3, 8, f"free {kiosk.id}'s disk", lambda: kiosk.full_flag.unlink(True))

    def _garbage_rogue(self) -> bool:
        other = self.rng.choice(self.stack.kiosks).id
        return self._garbage(ROGUE, other)

    def _garbage_kiosk(self) -> bool:
        kiosk, other = self.rng.sample([k.id for k in self.stack.kiosks], 2)
        return self._garbage(kiosk, other)

    def _garbage(self, sender: str, other: str) -> bool:
        settings = self.stack.garbage_settings(sender)
        if settings is None:
            return False
        sent = publish_garbage(settings, sender, other, self.rng)
        self.garbage.update(sent)
        return bool(sent)
