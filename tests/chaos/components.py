"""The chaos stack's parts: broker, central's store, two collectors, K kiosks behind proxies.

Every part is a real process started the way the tests start them (tests/stack.py):
mosquitto with the shipped configuration (:class:`central.mosquitto.MosquittoProcess`),
``python -m central.cli run`` per collector (its own identity and client id, the
``$share`` group, a persistent session), ``python -m tests.chaos.kiosk_proc`` per
kiosk (the real kiosk application), each kiosk connecting through its own
:class:`tests.tcp_proxy.TcpProxy` so the harness can cut it off.

With ``broker="rabbitmq"`` the broker is the private 3-node RabbitMQ cluster
(:mod:`tests.chaos.rabbit`), the collectors are ``[collector] source = "amqp"``
competing consumers of one quorum queue (each its own RabbitMQ user, each starting on a
different node), and the kiosks log in with their own RabbitMQ users, spread over the
three nodes' MQTT ports.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from central import backoffice_db
from central.mosquitto import MosquittoProcess
from sync.mqtt_link import MqttSettings
from tests import identity, stack
from tests.chaos.rabbit import QUEUE, RabbitBroker
from tests.tcp_proxy import TcpProxy

SHARED_GROUP = "aps-collectors"
COLLECTORS = ("aps-collector-1", "aps-collector-2")


@dataclass
class PgDatabase:
    """A database of its own on the machine's PostgreSQL, dropped at the end."""

    name: str = field(default_factory=lambda: f"aps_chaos_{secrets.token_hex(5)}")

    @property
    def dsn(self) -> str:
        from psycopg.conninfo import make_conninfo

        from tests.pg import ADMIN_DSN

        return make_conninfo(ADMIN_DSN, dbname=self.name)

    def _admin(self, statement: str) -> None:
        import psycopg
        from psycopg import sql

        from tests.pg import ADMIN_DSN

        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL(statement).format(sql.Identifier(self.name)))

    def create(self) -> None:
        self._admin("CREATE DATABASE {}")

    def drop(self) -> None:
        self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)")


@dataclass
class Proc:
    """A child process the harness may kill -9 and start again with the same command."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        fh = self.log.open("ab")
        self.popen = subprocess.Popen(self.argv, stdout=fh, stderr=fh)
        fh.close()
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def ensure_started(self) -> None:
        if not self.alive:
            self.start()

    def kill9(self) -> None:
        if self.popen is not None:
            stack.kill9(self.popen)

    def stop(self) -> None:
        if self.popen is not None:
            stack.stop(self.popen)


@dataclass
class Kiosk:
    id: str
    dir: Path
    proc: Proc
    proxy: TcpProxy

    @property
    def db(self) -> Path:
        return self.dir / "kiosk.db"

    @property
    def full_flag(self) -> Path:
        return self.dir / "disk-full"


class ChaosStack:
    """Everything the run needs, under ``workdir``; :meth:`close` stops all of it."""

    def __init__(
        self,
        workdir: Path,
        *,
        kiosks: int,
        store: str,
        seed: int,
        broker: str = "mosquitto",
        pace: tuple[float, float] = (0.15, 0.5),
    ) -> None:
        if broker not in ("mosquitto", "rabbitmq"):
            raise SystemExit(f"--broker {broker}: mosquitto or rabbitmq")
        self.broker_kind = broker
        self.pace = pace
        self.workdir = workdir
        self.store = store
        self.seed = seed
        self.kiosk_ids = tuple(f"k-chaos-{n:02d}" for n in range(1, kiosks + 1))
        self.central_db = workdir / "central" / "central.db"
        self.broker = MosquittoProcess(workdir / "broker")
        self.rabbit: RabbitBroker | None = (
            RabbitBroker(workdir / "rabbit") if broker == "rabbitmq" else None
        )
        self.pg: PgDatabase | None = PgDatabase() if store == "postgresql" else None
        self.collectors: list[Proc] = []
        self.kiosks: list[Kiosk] = []

    def start(self, rogue: str) -> None:
        """Start everything; ``rogue`` is enrolled at the broker only (central knows nothing)."""
        if self.rabbit is not None:
            self.rabbit.start()
            self.rabbit.kiosk(rogue)
        else:
            self.broker.start()
            self.broker.kiosk(rogue)
        if self.pg is not None:
            self.pg.create()
            # The registry is where the rest of central is: in PostgreSQL.
            identity.register(backoffice_db.PgTarget(self.pg.dsn), *self.kiosk_ids)
        central_dir = self.central_db.parent
        central_dir.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(COLLECTORS):
            cfg = stack.write_central_config(
                central_dir / f"{name}.toml",
                self.central_db,
                # On RabbitMQ [mqtt] is unused (source = "amqp"): only its client id counts.
                self.broker.collector(name)
                if self.rabbit is None
                else MqttSettings(port=1, username=name),
                kiosks=self.kiosk_ids if self.pg is None else (),
            )
            text = cfg.read_text(encoding="utf-8")
            if self.rabbit is None:
                extra = f'\nshared_group = "{SHARED_GROUP}"\n'
                text = text.replace(f'client_id = "{name}"\n', f'client_id = "{name}"{extra}')
            else:
                text = self._amqp_config(text, name, first_node=i + 1)
            if self.pg is not None:
                text = text.replace(
                    "[central]\n",
                    f"[central]\nstore = \"postgresql\"\npostgresql_dsn = '{self.pg.dsn}'\n",
                )
            cfg.write_text(text, encoding="utf-8")
            proc = Proc(
                name,
                [sys.executable, "-m", "central.cli", "run", "--config", str(cfg)],
                central_dir / f"{name}.log",
            )
            self.collectors.append(proc)
        for n, kiosk in enumerate(self.kiosk_ids):
            kdir = self.workdir / kiosk
            kdir.mkdir(parents=True, exist_ok=True)
            if self.rabbit is not None:
                home = self.rabbit.home(n)
                mqtt = self.rabbit.kiosk(kiosk, home)
                proxy = TcpProxy(mqtt.port)
                self.rabbit.add_proxy(proxy, home)
            else:
                mqtt = self.broker.kiosk(kiosk)
                proxy = TcpProxy(mqtt.port)
            cfg = stack.write_agent_config(
                kdir / "agent.toml",
                kdir / "kiosk.db",
                replace(mqtt, port=proxy.port),
                kiosk=kiosk,
                keepalive_s=10,
                inflight_window=16,
            )
            # Each kiosk its own (office, slot): dossier codes never collide.
            text = (
                cfg.read_text(encoding="utf-8")
                .replace("[agent]\n", f'[agent]\nreceipts_dir = "{kdir / "receipts"}"\n')
                .replace("slot = 1\n", f"slot = {n % 10}\n")
                .replace('agency = "000.00.14.H56"', f'agency = "000.00.{14 + n // 10}.H56"')
            )
            cfg.write_text(text, encoding="utf-8")
            argv = [sys.executable, "-m", "tests.chaos.kiosk_proc", "--config", str(cfg)]
            argv += ["--dir", str(kdir), "--seed", str(self.seed * 1000 + n)]
            argv += ["--pace", *(str(p) for p in self.pace)]
            self.kiosks.append(Kiosk(kiosk, kdir, Proc(kiosk, argv, kdir / "agent.log"), proxy))
        for c in self.collectors:
            c.start()
        if self.rabbit is not None:  # the uplink queue declared and bound before kiosks send
            deadline = time.monotonic() + 120
            while not all(self.rabbit.collector_node(c.log) for c in self.collectors):
                if time.monotonic() > deadline:
                    raise SystemExit(f"chaos: the AMQP collectors did not consume ({central_dir})")
                time.sleep(0.25)
        for k in self.kiosks:
            k.proc.start()

    def _amqp_config(self, text: str, name: str, first_node: int) -> str:
        """``text`` (a collector's central.toml) turned into an AMQP collector's: its own
        RabbitMQ user, the shared queue, every node's URL starting with ``first_node``."""
        assert self.rabbit is not None
        user, password = self.rabbit.collector(name)
        urls = ", ".join(f'"{u}"' for u in self.rabbit.amqp_urls(first_node))
        text = text.replace("[collector]\n", '[collector]\nsource = "amqp"\n')
        return (
            text + f'\n[amqp]\nurls = [{urls}]\nusername = "{user}"\npassword = "{password}"\n'
            f'queue = "{QUEUE}"\n'
        )

    def garbage_settings(self, sender: str) -> MqttSettings | None:
        """How ``sender`` (the rogue or a kiosk) reaches the broker now, None while down."""
        if self.rabbit is not None:
            if len(self.rabbit.down) >= 3:
                return None
            return self.rabbit.kiosk(sender)
        if self.broker.proc is None:
            return None
        return self.broker.kiosk(sender)

    def heal(self) -> None:
        """Every kiosk back online with room on its disk, every process running."""
        if self.rabbit is not None:
            self.rabbit.heal()
        elif self.broker.proc is None or self.broker.proc.poll() is not None:
            self.broker.start()
        for k in self.kiosks:
            k.full_flag.unlink(missing_ok=True)
            k.proxy.restore()
        for p in [*self.collectors, *(k.proc for k in self.kiosks)]:
            if not p.alive:
                p.start()

    def stop_kiosks(self) -> None:
        for k in self.kiosks:
            k.proc.stop()

    def close(self) -> None:
        for p in [*(k.proc for k in self.kiosks), *self.collectors]:
            p.stop()
        for k in self.kiosks:
            k.proxy.close()
        if self.rabbit is not None:
            self.rabbit.stop()
        else:
            self.broker.stop()
        if self.pg is not None:
            self.pg.drop()
