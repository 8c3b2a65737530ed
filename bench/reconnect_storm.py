"""A fleet reconnecting after a broker restart, each kiosk with a backlog to deliver.

Ours: ``--kiosks`` light kiosks (``--procs`` processes, each an asyncio loop holding its share
of raw MQTT 3.1.1 connections: bench/_kiosks.py, as in bench/fleet_heartbeats.py) are connected
to a private mosquitto on a loopback port (anonymous, persistence on, the shipped queue limits)
with central's collector (:class:`central.collector.Collector`, SQLite or PostgreSQL, in a
process of its own) subscribed on a persistent session. Each kiosk holds a backlog of
``--backlog`` dossier records, signed as a kiosk signs them (``sync.wire_signing.sign_record``;
central verifies every one against its key directory). The broker is stopped (SIGTERM: it saves
central's session) and started again after ``--outage`` seconds on the same port. Every kiosk
sees its connection drop and reconnects as the kiosk's network loop does: ``attempt`` set to 1
on the drop, a wait drawn by :func:`sync.mqtt_link.backoff_s` (full jitter, the kiosk's
``reconnect_min_s`` 1 s and ``reconnect_max_s`` 300 s) before each connect, ``attempt`` + 1
after each refused one. Once connected it publishes its backlog (QoS 1) and waits for the
PUBACKs.

Baseline, same run, same fleet: the same storm with a naive fixed retry (every kiosk
retries every ``reconnect_min_s``, no jitter, no growth).

Measured for each: the time from the broker's restart until central's store holds every
backlog (committed), the CONNACKs the kiosks received per second since the restart (the
broker's accepted-connection rate; refused attempts counted alike), and central's peak
resident memory (VmHWM).

Last line: {"bench", "value", "unit", "baseline", "ratio", ...} (seconds until drained with
the project's backoff; baseline: with the fixed retry; ratio = ours / baseline).
``--kiosks 50 --backlog 3`` is quick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench._kiosks import (
    Broker,
    KioskProcesses,
    ScriptProcess,
    kiosk_names,
    mqtt_open,
    mqtt_publish,
    raise_fd_limit,
    signed_backlog,
)

#: The kiosk's reconnect policy (sync.client.SyncSettings defaults).
KIOSK_RECONNECT_MIN_S = 1.0
KIOSK_RECONNECT_MAX_S = 300.0

# -- light kiosks: raw MQTT 3.1.1 over asyncio (bench/_kiosks.py) -------------------------


def wait_s(policy: str, attempt: int) -> float:
    if policy == "fixed":
        return KIOSK_RECONNECT_MIN_S
    from sync.mqtt_link import backoff_s

    return backoff_s(attempt, KIOSK_RECONNECT_MIN_S, KIOSK_RECONNECT_MAX_S)


async def _kiosk_proc(conf: dict[str, Any]) -> None:
    from sync.envelope import records_topic

    port, policy = conf["port"], conf["policy"]
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(conf["key"]))
    kiosks: list[str] = conf["kiosks"]
    backlogs = {k: signed_backlog(k, conf["backlog"], key) for k in kiosks}
    gate = asyncio.Semaphore(200)
    links: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def first(k: str) -> None:
        async with gate:
            links[k] = await mqtt_open(port, k)

    await asyncio.gather(*(first(k) for k in kiosks))
    print("ready", flush=True)
    connacks: list[float] = []
    refused: list[float] = []
    delivered: list[float] = []

    async def storm(k: str) -> None:
        reader, writer = links[k]
        await reader.read()  # the broker went away: EOF
        writer.close()
        attempt = 1  # the drop counts as a failure (NetworkLoop._run)
        while True:
            await asyncio.sleep(wait_s(policy, attempt))
            try:
                reader, writer = await mqtt_open(port, k)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                refused.append(time.time())
                attempt += 1
                continue
            connacks.append(time.time())
            break
        topic = records_topic(k)
        for pid, payload in enumerate(backlogs[k], start=1):
            writer.write(mqtt_publish(topic, payload, pid))
        await writer.drain()
        await reader.readexactly(4 * len(backlogs[k]))  # one PUBACK each
        delivered.append(time.time())
        links[k] = (reader, writer)

    await asyncio.wait_for(asyncio.gather(*(storm(k) for k in kiosks)), conf["timeout"])
    print(json.dumps({"connacks": connacks, "refused": refused, "delivered": delivered}))
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for _, writer in links.values():
        writer.close()


# -- central -----------------------------------------------------------------------------

CENTRAL = r"""
import json, sys, time
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from central.collector import Collector, CollectorSettings
from central.fleet.keys import StaticKeyDirectory
from central.store import SQLiteStore
from sync.mqtt_link import MqttSettings
conf = json.loads(sys.argv[1])
if conf["dsn"]:
    from central.store_pg import PostgresStore
    factory = lambda: PostgresStore(conf["dsn"])
else:
    factory = lambda: SQLiteStore(Path(conf["db"]))
factory().close()
keys = StaticKeyDirectory()
public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(conf["public"]))
for k in conf["kiosks"]:
    keys.add(k, public)
c = Collector(
    store_factory=factory,
    mqtt_settings=MqttSettings(port=conf["port"], keepalive_s=60),
    settings=CollectorSettings(client_id="aps-bench-central", queue_max=200_000),
    keys=keys,
    signing_key=Ed25519PrivateKey.generate(),
)
c.start()
while not c.online.is_set():
    time.sleep(0.05)
print(json.dumps({"ready": True}), flush=True)
for _ in sys.stdin:  # one sample per request
    vm = [line.split() for line in open("/proc/self/status") if line.startswith("Vm")]
    status = {f[0].rstrip(":"): f[1] for f in vm}
    print(json.dumps({"t": time.time(), "stored": c.counters.stored, "cpu": time.process_time(),
                      "rss_kib": int(status["VmRSS"]), "hwm_kib": int(status["VmHWM"]),
                      "dead": c.counters.dead_letters}), flush=True)
"""


# -- one storm ---------------------------------------------------------------------------


def per_second(times: list[float], since: float) -> list[int]:
    """How many of ``times`` fell in each second after ``since``."""
    counts = Counter(int(t - since) for t in times if t >= since)
    return [counts.get(s, 0) for s in range(max(counts, default=-1) + 1)]


def storm(args: argparse.Namespace, policy: str, dsn: str | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="aps-bench-storm-"))
    kiosks = kiosk_names(args.kiosks, "storm-k", 5)
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    private = key.private_bytes_raw().hex()
    total = args.kiosks * args.backlog
    broker = Broker(work, persistent=True)
    broker.start()
    central: ScriptProcess | None = None
    fleet: KioskProcesses | None = None
    try:
        central = ScriptProcess(
            CENTRAL,
            {
                "port": broker.port,
                "db": str(work / "central.db"),
                "dsn": dsn,
                "public": public,
                "kiosks": kiosks,
            },
            "central",
        )
        parts = [kiosks[i :: args.procs] for i in range(args.procs)]
        fleet = KioskProcesses(
            __file__,
            (
                {
                    "port": broker.port,
                    "kiosks": part,
                    "backlog": args.backlog,
                    "key": private,
                    "policy": policy,
                    "timeout": args.timeout,
                }
                for part in parts
                if part
            ),
        )
        before = central.ask()
        stopped = time.time()
        broker.stop()
        time.sleep(args.outage)
        restarted = broker.start()
        deadline = time.time() + args.timeout
        drained_at = None
        peak_rss = 0.0
        while time.time() < deadline:
            s = central.ask()
            peak_rss = max(peak_rss, s["rss_kib"])
            if s["stored"] - before["stored"] >= total:
                drained_at = s["t"]
                break
            time.sleep(0.05)
        if drained_at is None:
            raise SystemExit(
                f"{policy}: central did not drain within {args.timeout} s: stored "
                f"{s['stored'] - before['stored']} of {total}, {s['dead'] - before['dead']} dead"
            )
        end = central.ask()
        kiosk_out: dict[str, list[float]] = {"connacks": [], "refused": [], "delivered": []}
        for ch in fleet.procs:
            got = json.loads(fleet.readline(ch))
            for name in kiosk_out:
                kiosk_out[name] += got[name]
        fleet.tell("bye")
        fleet.wait(30)
    finally:
        if fleet is not None:
            fleet.kill()
        if central is not None:
            central.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    rate = per_second(kiosk_out["connacks"], restarted)
    return {
        "policy": policy,
        "drained_s": drained_at - restarted,
        "delivered_s": max(kiosk_out["delivered"]) - restarted,
        "connacks": len(kiosk_out["connacks"]),
        "refused": len(kiosk_out["refused"]),
        "connacks_per_s": rate,
        "peak_connacks_per_s": max(rate, default=0),
        "refused_per_s": per_second(kiosk_out["refused"], stopped),
        "central_peak_rss_mib": max(peak_rss, end["hwm_kib"]) / 1024,
        "central_cpu_s": end["cpu"] - before["cpu"],
        "dead_letters": end["dead"] - before["dead"],
    }


def show(run: dict[str, Any]) -> None:
    print(
        f"{run['policy']:>7}: drained at central in {run['drained_s']:.1f} s after the restart "
        f"(last PUBACK at a kiosk {run['delivered_s']:.1f} s); {run['connacks']} CONNACKs, "
        f"{run['refused']} refused attempts, peak {run['peak_connacks_per_s']} CONNACKs/s; "
        f"central CPU {run['central_cpu_s']:.1f} s, peak RSS {run['central_peak_rss_mib']:.0f} MiB"
    )
    print(f"         CONNACKs per second since the restart: {run['connacks_per_s']}")
    if run["refused"]:
        print(f"         refused connects per second since the stop: {run['refused_per_s']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kiosks", type=int, default=2000)
    ap.add_argument("--backlog", type=int, default=5, help="Records each kiosk holds.")
    ap.add_argument("--outage", type=float, default=2.0, help="Seconds the broker is down.")
    ap.add_argument("--procs", type=int, default=4, help="Kiosk processes.")
    ap.add_argument("--timeout", type=float, default=600.0, help="Bound on each storm.")
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--kiosk-proc", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kiosk_proc:
        asyncio.run(_kiosk_proc(json.loads(args.kiosk_proc)))
        return
    if args.seed is not None:
        random.seed(args.seed)
    raise_fd_limit(2 * args.kiosks + 2000)
    runs = []
    for policy in ("jitter", "fixed"):
        if args.store == "postgresql":
            from bench.central_ingest import PgDatabase

            with PgDatabase() as pg:
                runs.append(storm(args, policy, pg.dsn))
        else:
            runs.append(storm(args, policy, None))
        show(runs[-1])
    ours, base = runs
    print(
        json.dumps(
            {
                "bench": "reconnect_storm",
                "value": round(ours["drained_s"], 2),
                "unit": "s",
                "baseline": round(base["drained_s"], 2),
                "ratio": round(ours["drained_s"] / base["drained_s"], 3),
                "kiosks": args.kiosks,
                "backlog": args.backlog,
                "store": args.store,
                "peak_connacks_per_s": ours["peak_connacks_per_s"],
                "baseline_peak_connacks_per_s": base["peak_connacks_per_s"],
                "connacks": ours["connacks"],
                "baseline_connacks": base["connacks"],
                "records": args.kiosks * args.backlog,
                "refused": ours["refused"],
                "baseline_refused": base["refused"],
                "central_peak_rss_mib": round(ours["central_peak_rss_mib"], 1),
                "dead_letters": ours["dead_letters"],
            }
        )
    )


if __name__ == "__main__":
    main()
