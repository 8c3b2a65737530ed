"""Central's heartbeat path for a whole fleet, against a bare paho subscriber in the same run.

Ours: a real :class:`central.collector.Collector` with its :class:`central.store.SQLiteStore`
(status row per kiosk, bounded history, one transaction per batch), in a process of its own,
subscribed to status and heartbeats. Baseline, same run, same broker, same messages: a bare
paho subscriber (its own process, QoS 0) that only counts what it receives.

The kiosks are light: ``--procs`` processes, each an asyncio loop holding its share of raw
MQTT 3.1.1 connections (CONNECT, then QoS 0 PUBLISHes: what a kiosk's heartbeat is), not
10,000 paho threads. Each kiosk says ``online`` once, then sends real heartbeat envelopes
(``sync.envelope.encode_heartbeat``, devices and catalogue included, ~500 bytes). The broker
is a private mosquitto on a loopback port, open to anyone on it (the bench measures central,
not TLS handshakes), with ``max_connections`` unlimited; ``ulimit -n`` is raised to the hard
limit and checked against what the kiosks need.

Two phases, each run once with central subscribed and once with the bare subscriber:

* **steady**: every kiosk sends one heartbeat per ``--period`` (60 s) seconds at a random
  phase, for ``--seconds``; measured: central's CPU (its own ``process_time``) over the
  window, as cores per 1,000 kiosks, and heartbeats handled per second;
* **saturating**: every kiosk sends ``--burst`` heartbeats as fast as it can; measured: the
  rate each subscriber handled from 10% to 90% of what it got.

Last line: {"bench", "value", "unit", "baseline", "ratio", ...} (saturating heartbeats/s;
ratio = central / bare). ``--kiosks 200 --seconds 10`` is quick (the smoke test in tests/).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._kiosks import (
    Broker,
    KioskProcesses,
    ScriptProcess,
    kiosk_names,
    mqtt_open,
    mqtt_publish,
    raise_fd_limit,
)

# -- light kiosks: raw MQTT 3.1.1 over asyncio (bench/_kiosks.py) -------------------------


def heartbeat(kiosk: str, n: int) -> bytes:
    from sync.envelope import encode_heartbeat

    ts = datetime.now().astimezone().isoformat(timespec="milliseconds")
    return encode_heartbeat(
        kiosk,
        ts,
        queued=n % 5,
        rejected=0,
        oldest_queued_s=(n % 5) * 7,
        disk_free_bytes=7_000_000_000,
        db_bytes=3_000_000,
        uptime_s=3600 + n,
        agent_version="0.9.0",
        reconnects=1,
        identity_conflicts=0,
        subscribe_failures=0,
        catalogue={"version": "2026.12.01-3"},
        last_error=None,
        devices={
            "printer": {"state": "paper_near_end" if n % 97 == 0 else "ok", "since": ts},
            "card_reader": {"state": "ok"},
            "qr_scanner": {"state": "ok"},
            "document_camera": {"state": "ok"},
        },
    )


async def _kiosk_proc(port: int, kiosks: list[str], mode: str, arg: float, seconds: float) -> int:
    from sync.envelope import encode_status, heartbeat_topic, status_topic

    writers: list[asyncio.StreamWriter] = []
    gate = asyncio.Semaphore(200)

    async def connect(k: str) -> asyncio.StreamWriter:
        async with gate:
            _, writer = await mqtt_open(port, k)
            ts = datetime.now().astimezone().isoformat(timespec="seconds")
            writer.write(mqtt_publish(status_topic(k), encode_status(k, "online", ts)))
            return writer

    writers = list(await asyncio.gather(*(connect(k) for k in kiosks)))
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says go once every process is connected
    sent = 0
    if mode == "burst":
        for n in range(int(arg)):
            for k, w in zip(kiosks, writers, strict=True):
                w.write(mqtt_publish(heartbeat_topic(k), heartbeat(k, n)))
                sent += 1
            await asyncio.gather(*(w.drain() for w in writers))
    else:  # steady: one heartbeat per `arg` seconds per kiosk, random phase
        start = time.monotonic()
        due = [(start + random.uniform(0, arg), i) for i in range(len(kiosks))]
        heapq.heapify(due)
        end = start + seconds
        while due[0][0] < end:
            at, i = heapq.heappop(due)
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writers[i].write(mqtt_publish(heartbeat_topic(kiosks[i]), heartbeat(kiosks[i], sent)))
            sent += 1
            heapq.heappush(due, (at + arg, i))
        await asyncio.gather(*(w.drain() for w in writers))
    print(f"sent {sent}", flush=True)
    sys.stdin.readline()  # hold the connections until the parent has counted
    for w in writers:
        w.close()
    return sent


# -- the subscribers ---------------------------------------------------------------------

CENTRAL = r"""
import json, sys, time
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from central.collector import Collector, CollectorSettings
from central.fleet.keys import StaticKeyDirectory
from central.store import SQLiteStore
from sync.mqtt_link import MqttSettings
conf = json.loads(sys.argv[1])
db = Path(conf["db"])
if conf["create"]:
    SQLiteStore(db).close()
c = Collector(
    store_factory=lambda: SQLiteStore(db),
    mqtt_settings=MqttSettings(port=conf["port"], keepalive_s=60),
    settings=CollectorSettings(
        client_id=conf["client_id"], shared_group=conf["group"], queue_max=200_000
    ),
    keys=StaticKeyDirectory(),
    signing_key=Ed25519PrivateKey.generate(),
)
c.start()
while not c.online.is_set():
    time.sleep(0.05)
print(json.dumps({"ready": True}), flush=True)
for _ in sys.stdin:  # one sample per request
    handled = c.counters.handled  # committed, not merely taken from the queue
    print(json.dumps({"t": time.time(), "n": handled, "cpu": time.process_time(),
                      "dead": c.counters.dead_letters}), flush=True)
"""

BARE = r"""
import json, sys, time
import paho.mqtt.client as mqtt
conf = json.loads(sys.argv[1])
n = 0
def on_message(client, userdata, msg):
    global n
    n += 1
ready = []
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="aps-bench-bare")
c.on_message = on_message
c.on_subscribe = lambda *a: ready.append(1)
c.connect("127.0.0.1", conf["port"], keepalive=60)
c.subscribe([("aps/v1/+/up/status", 0), ("aps/v1/+/up/heartbeat", 0)])
c.loop_start()
while not ready:
    time.sleep(0.05)
print(json.dumps({"ready": True}), flush=True)
for _ in sys.stdin:  # one sample per request
    print(json.dumps({"t": time.time(), "n": n, "cpu": time.process_time(), "dead": 0}),
          flush=True)
"""


class Subscribers:
    """One subscriber process, or N collectors on a shared subscription: their counts and
    CPU summed, the latest of their clocks. Each answers a sample per line on its stdin."""

    def __init__(self, script: str, conf: dict[str, Any], n: int = 1) -> None:
        self.subs = []
        for i in range(n):
            c = {**conf, "client_id": f"aps-bench-central-{i}", "create": i == 0}
            c["group"] = "aps-bench" if n > 1 else None
            self.subs.append(ScriptProcess(script, c, "a subscriber"))
        self.samples: list[dict[str, float]] = []

    def sample(self, pause: float = 0.02) -> dict[str, float]:
        time.sleep(pause)
        got = [s.ask() for s in self.subs]
        one = {
            "t": max(g["t"] for g in got),
            "n": sum(g["n"] for g in got),
            "cpu": sum(g["cpu"] for g in got),
            "dead": sum(g["dead"] for g in got),
        }
        self.samples.append(one)
        return one

    def latest(self) -> dict[str, float]:
        self.samples.clear()
        return self.sample(0)

    def stop(self) -> None:
        for s in self.subs:
            s.stop()


def run_phase(
    port: int,
    kiosks: list[str],
    procs: int,
    mode: str,
    arg: float,
    seconds: float,
    sub: Subscribers,
) -> dict[str, float]:
    parts = [kiosks[i::procs] for i in range(procs)]
    base = sub.latest()  # before the kiosks connect: their "online" statuses come first
    fleet = KioskProcesses(
        __file__,
        ({"port": port, "kiosks": p, "mode": mode, "arg": arg, "s": seconds} for p in parts if p),
    )
    try:
        while sub.sample()["n"] < base["n"] + len(kiosks):
            if sub.samples[-1]["t"] - base["t"] > 60:
                break
        start = sub.latest()
        fleet.tell("go")
        sent = sum(int(fleet.readline(ch).split()[1]) for ch in fleet.procs)
        # wait for the subscriber to catch up (or stall for 5 s: QoS 0 may have dropped some)
        last_n, still = -1.0, time.monotonic()
        while True:
            s = sub.sample()
            got = s["n"] - start["n"]
            if got >= sent:
                break
            if s["n"] != last_n:
                last_n, still = s["n"], time.monotonic()
            elif time.monotonic() - still > 5:
                break
        samples = [x for x in sub.samples if x["t"] >= start["t"]]
        fleet.tell("done")
        fleet.wait()
    finally:
        fleet.kill()
    got = samples[-1]["n"] - start["n"]
    out = {"sent": float(sent), "handled": got}
    if mode == "burst":
        lo = next(x for x in samples if x["n"] - start["n"] >= 0.1 * got)
        hi = next(x for x in samples if x["n"] - start["n"] >= 0.9 * got)
        if hi is lo:  # a burst too small to sample inside: first to last instead
            lo, hi = samples[0], samples[-1]
        span = max(hi["t"] - lo["t"], 1e-3)
        out["rate"] = (hi["n"] - lo["n"]) / span
        out["cpu_per_msg_us"] = (hi["cpu"] - lo["cpu"]) / max(hi["n"] - lo["n"], 1) * 1e6
    else:
        end = samples[-1]
        wall = max(end["t"] - start["t"], 1e-3)
        out["rate"] = got / wall
        out["cores"] = (end["cpu"] - start["cpu"]) / wall
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kiosks", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=60.0, help="Length of the steady phase.")
    ap.add_argument("--period", type=float, default=60.0, help="Seconds between heartbeats.")
    ap.add_argument("--burst", type=int, default=10, help="Heartbeats per kiosk, saturating.")
    ap.add_argument("--rounds", type=int, default=3, help="Saturating rounds, order alternated.")
    ap.add_argument("--procs", type=int, default=4, help="Kiosk processes.")
    ap.add_argument("--collectors", type=int, default=1, help="Central's collector processes.")
    ap.add_argument("--kiosk-proc", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.kiosk_proc:
        c = json.loads(args.kiosk_proc)
        asyncio.run(_kiosk_proc(c["port"], c["kiosks"], c["mode"], c["arg"], c["s"]))
        return
    fds = raise_fd_limit(args.kiosks + 2000)
    kiosks = kiosk_names(args.kiosks, digits=5)
    work = Path(tempfile.mkdtemp(prefix="aps-bench-hb-"))
    broker = Broker(work)
    broker.start()
    port = broker.port
    conf = {"port": port, "db": str(work / "central.db")}
    scripts = {"bare": (BARE, 1), "central": (CENTRAL, args.collectors)}

    def phase(name: str, mode: str, arg: float, seconds: float) -> dict[str, float]:
        script, n = scripts[name]
        sub = Subscribers(script, conf, n)
        try:
            return run_phase(port, kiosks, args.procs, mode, arg, seconds, sub)
        finally:
            sub.stop()

    steady: dict[str, dict[str, float]] = {}
    bursts: dict[str, list[dict[str, float]]] = {"bare": [], "central": []}
    try:
        for name in ("bare", "central"):
            steady[name] = phase(name, "steady", args.period, args.seconds)
        # One subscriber at a time; the order alternates so neither always runs first
        # (a cold page cache, another user's job) and each round's ratio pairs neighbours.
        for r in range(args.rounds):
            for name in ("bare", "central") if r % 2 == 0 else ("central", "bare"):
                bursts[name].append(phase(name, "burst", args.burst, 0))
        import sqlite3

        with sqlite3.connect(work / "central.db") as conn:
            rows = conn.execute("SELECT count(*) FROM kiosks").fetchone()[0]
            history = conn.execute("SELECT count(*) FROM kiosk_health_history").fetchone()[0]
            records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    cs, bs = steady["central"], steady["bare"]
    ratios = [c["rate"] / b["rate"] for c, b in zip(bursts["central"], bursts["bare"], strict=True)]
    c_rate = statistics.median(x["rate"] for x in bursts["central"])
    b_rate = statistics.median(x["rate"] for x in bursts["bare"])
    c_cpu = statistics.median(x["cpu_per_msg_us"] for x in bursts["central"])
    per_1000 = cs["cores"] / (args.kiosks / 1000)
    print(f"kiosks {args.kiosks} in {args.procs} processes, ulimit -n {fds}")
    print(
        f"steady, one per {args.period:.0f} s for {args.seconds:.0f} s: central"
        f" ({args.collectors} collector(s)) handled {cs['handled']:.0f}/{cs['sent']:.0f}"
        f" ({cs['rate']:.1f}/s) using {cs['cores']:.3f} cores ({per_1000:.4f} per 1,000"
        f" kiosks); bare {bs['handled']:.0f}/{bs['sent']:.0f} using {bs['cores']:.3f} cores"
    )
    for i, (c, b) in enumerate(zip(bursts["central"], bursts["bare"], strict=True)):
        print(
            f"saturating round {i + 1}, {args.burst} each: central {c['rate']:,.0f}/s"
            f" ({c['cpu_per_msg_us']:.0f} us CPU each, {c['handled']:.0f}/{c['sent']:.0f}),"
            f" bare {b['rate']:,.0f}/s ({b['handled']:.0f}/{b['sent']:.0f}),"
            f" ratio {ratios[i]:.2f}"
        )
    print(f"central store: {rows} status rows, {history} history rows, {records} records")
    print(
        json.dumps(
            {
                "bench": "fleet_heartbeats",
                "value": round(c_rate, 1),
                "unit": "heartbeats/s",
                "baseline": round(b_rate, 1),
                "ratio": round(statistics.median(ratios), 3),
                "ratio_min": round(min(ratios), 3),
                "ratio_max": round(max(ratios), 3),
                "rounds": args.rounds,
                "collectors": args.collectors,
                "kiosks": args.kiosks,
                "cpu_us_per_heartbeat": round(c_cpu, 1),
                "steady_cores": round(cs["cores"], 4),
                "steady_cores_per_1000_kiosks": round(per_1000, 5),
                "steady_projected_cores_10000": round(per_1000 * 10, 4),
                "steady_handled": cs["handled"],
                "steady_sent": cs["sent"],
                "status_rows": rows,
                "history_rows": history,
                "records": records,
            }
        )
    )


if __name__ == "__main__":
    main()
