"""``python -m tests.chaos``: start the stack, inject faults, heal, drain, audit.

The broker is a private mosquitto, or with ``--broker rabbitmq`` a private 3-node
RabbitMQ cluster (its own ports and epmd; node kills and clean restarts replace the
broker's) with two AMQP collectors.

The last line printed is JSON: ``{"committed": N, "at_central": N, "lost": 0,
"duplicated": 0, "faults_injected": N, ...}``; the exit status is 1 on any loss,
duplicate, gap, hash mismatch or a drain that did not finish (docs/chaos.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.chaos.audit import (
    Audit,
    StreamView,
    audit,
    dead_letter_count,
    read_central,
    read_kiosk,
)
from tests.chaos.components import ChaosStack
from tests.chaos.faults import KINDS, RABBITMQ_KINDS, ROGUE, FaultInjector

log = logging.getLogger("aps.chaos")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="aps-chaos", description=__doc__)
    p.add_argument("--seconds", type=float, default=300, help="how long faults go on")
    p.add_argument("--kiosks", type=int, default=5, help="real kiosk processes (>= 2)")
    p.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: from time)")
    p.add_argument(
        "--broker",
        choices=("mosquitto", "rabbitmq"),
        default="mosquitto",
        help="mosquitto and two MQTT collectors, or the private 3-node RabbitMQ cluster and "
        "two AMQP collectors (node kills and restarts instead of broker ones)",
    )
    p.add_argument("--drain-timeout", type=float, default=240, help="seconds to wait at the end")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new /tmp/aps-chaos-*")
    p.add_argument("--fault-every", type=float, nargs=2, default=(1.5, 4.0), metavar=("MIN", "MAX"))
    p.add_argument(
        "--pace",
        type=float,
        nargs=2,
        default=(0.15, 0.5),
        metavar=("MIN", "MAX"),
        help="seconds between a citizen's actions on each kiosk; a long run slows it down "
        "(e.g. 0.6 2.0) to stay under the dossier code's 999 a day per kiosk",
    )
    args = p.parse_args(argv)
    if not 0.01 <= args.pace[0] <= args.pace[1] <= 60:
        p.error("--pace: 0.01 <= MIN <= MAX <= 60 seconds")
    if not 2 <= args.kiosks <= 50:
        p.error("--kiosks: 2 to 50 (a kiosk's garbage names another kiosk)")
    return args


def _queued(db: Path) -> int:
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 1
    try:
        return int(c.execute("SELECT count(*) FROM outbox WHERE state = 'queued'").fetchone()[0])
    except sqlite3.OperationalError:
        return 1
    finally:
        c.close()


def _committed(db: Path) -> int:
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(c.execute("SELECT count(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.25)
    return False


def read_and_audit(stack: ChaosStack) -> tuple[Audit, int]:
    from central.store import SQLiteStore

    sides = [read_kiosk(k.db, k.id, k.dir / "actions.jsonl") for k in stack.kiosks]
    ids = [k.id for k in stack.kiosks]
    if stack.pg is not None:
        import psycopg

        from central.store_pg import PostgresStore

        with psycopg.connect(stack.pg.dsn) as pg:
            central, dead = read_central(pg, ids), dead_letter_count(pg)
        store: Any = PostgresStore(stack.pg.dsn)
    else:
        conn = sqlite3.connect(f"file:{stack.central_db}?mode=ro", uri=True, timeout=30)
        try:
            central, dead = read_central(conn, ids), dead_letter_count(conn)
        finally:
            conn.close()
        store = SQLiteStore(stack.central_db)
    try:
        streams = [
            StreamView(s.kiosk, s.stream, s.contiguous_seq, s.max_seq, tuple(s.gaps))
            for s in store.streams(max_ranges=100)
        ]
        # central's own verdict on each file it assembled (both stores assemble)
        assembled = {
            (a["kiosk"], a["att"]): (a["status"], a["sha256"]) for a in store.attachments()
        }
    finally:
        store.close()
    return audit(sides, central, streams, assembled), dead


def run(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else int(time.time())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="aps-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        handlers=[logging.FileHandler(workdir / "chaos.log"), logging.StreamHandler(sys.stderr)],
    )
    log.info("chaos run: %ss, %d kiosks, %s, %s, seed %d, in %s", args.seconds, args.kiosks,
             args.broker, args.store, seed, workdir)  # fmt: skip
    rng = random.Random(seed)
    stack = ChaosStack(
        workdir,
        kiosks=args.kiosks,
        store=args.store,
        seed=seed,
        broker=args.broker,
        pace=tuple(args.pace),
    )
    kinds = RABBITMQ_KINDS if args.broker == "rabbitmq" else KINDS
    faults = FaultInjector(stack, rng, kinds)
    drained = False
    try:
        stack.start(ROGUE)
        # Faults start once every kiosk files and central holds something of each.
        if not _wait(lambda: all(_committed(k.db) > 0 for k in stack.kiosks), 120):
            raise SystemExit("chaos: the kiosks did not start filing within 120 s (logs: "
                             f"{workdir}/k-chaos-*/agent.log)")  # fmt: skip
        started = time.monotonic()
        end = started + args.seconds
        next_fault = started + rng.uniform(*args.fault_every)
        quiet_from = end - min(5.0, args.seconds / 10)  # a last fault still takes effect
        while time.monotonic() < end:
            faults.tick()
            if next_fault <= time.monotonic() < quiet_from:
                faults.inject()
                next_fault = time.monotonic() + rng.uniform(*args.fault_every)
            time.sleep(0.05)
        log.info("faults over (%d injected): healing, then waiting for the drain", faults.total)
        faults.heal_all()
        for k in stack.kiosks:
            (k.dir / "stop-filing").touch()
        drain_started = time.monotonic()
        drained = _wait(lambda: all(_queued(k.db) == 0 for k in stack.kiosks), args.drain_timeout)
        drain_s = time.monotonic() - drain_started
        log.info("drain %s after %.1fs", "done" if drained else "NOT done", drain_s)
        if not drained:
            stuck = {k.id: _queued(k.db) for k in stack.kiosks if _queued(k.db)}
            log.info("still queued (kiosk: records): %s", stuck)
        stack.stop_kiosks()
        for c in stack.collectors:
            c.stop()
        result, dead = read_and_audit(stack)
    finally:
        stack.close()
    print(result.table())
    summary = result.summary()
    out: dict[str, Any] = {
        "committed": summary["committed"],
        "at_central": summary["at_central"],
        "lost": summary["lost"],
        "duplicated": summary["duplicated"],
        "faults_injected": faults.total,
        "faults": {k: faults.counts.get(k, 0) for k in kinds},
        **{
            k: v
            for k, v in summary.items()
            if k not in ("committed", "at_central", "lost", "duplicated")
        },
        "garbage_sent": sum(faults.garbage.values()),
        "dead_letters": dead,
        "drained": drained,
        "drain_s": round(drain_s, 1),
        "seconds": args.seconds,
        "kiosks": args.kiosks,
        "store": args.store,
        "broker": args.broker,
        "seed": seed,
        "workdir": str(workdir),
    }
    print(json.dumps(out))
    return 0 if result.ok and drained else 1


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(parse_args(argv)))
