"""The idle kiosk agent's footprint, and its start to first record synced, against bare paho.

Idle: an ``aps-agent`` process (nothing queued, connected to a private
mosquitto, ``aps-central`` running) and a bare paho client process connected
to the same broker (subscribed, ``loop_forever()``) sit side by side for
``--idle-s`` seconds (60 by default). For each: resident memory (VmRSS), CPU
time (the sum of /proc/<pid>/task/*/schedstat, in ns) and context switches
(voluntary and involuntary, summed over /proc/<pid>/task/*/status; a
voluntary switch is a thread going to sleep, so they count wake-ups).

Start to first record synced: one record is queued in a kiosk database of
``--db-mb`` MB (acked records: what a kiosk holds within its retention, so
the start-up integrity check has real work), then ``aps-agent run`` starts;
the clock stops when the record is marked acked on the kiosk, which happens
only after central has committed it. Baseline: a bare paho process that
connects, subscribes to its acks topic, publishes one record envelope and
exits when central's ack for it arrives. Alternated ``--starts`` times; medians.

Last line: {"bench", "value", "unit", "baseline", "ratio"} for idle wake-ups
(voluntary context switches per second, ratio = agent/bare), plus the CPU,
RSS and start figures.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from central.mosquitto import MosquittoProcess, mqtt_toml
from sync.envelope import Record
from sync.ids import new_stream_id, new_ulid
from sync.mqtt_link import MqttSettings
from sync.outbox import Outbox

KIOSK = "bench-agent"
BARE = "bench-bare"

# The bare clients connect as an enrolled kiosk of their own, over the same mutual
# TLS as the agent (the shipped broker configuration admits nobody else there).
BARE_IDLE = """
import json, sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
conf = json.loads(sys.argv[1])
c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=conf["kiosk"])
c.tls_set(ca_certs=conf["ca"], certfile=conf["cert"], keyfile=conf["key"])
def on_connect(client, userdata, flags, rc, props):
    client.subscribe("aps/v1/bench-bare/down/#", qos=1)
    print("connected", flush=True)
c.on_connect = on_connect
c.connect("127.0.0.1", conf["port"], 30)
c.loop_forever()
"""

BARE_ONCE = """
import json, sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
conf = json.loads(sys.argv[1])
c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=conf["kiosk"])
c.tls_set(ca_certs=conf["ca"], certfile=conf["cert"], keyfile=conf["key"])
rid, payload = sys.argv[2], bytes.fromhex(sys.argv[3])
def on_connect(client, userdata, flags, rc, props):
    client.subscribe("aps/v1/bench-bare/down/acks", qos=1)
def on_subscribe(client, userdata, mid, rcs, props):
    client.publish("aps/v1/bench-bare/up/records", payload, qos=1)
def on_message(client, userdata, msg):
    if rid.encode() in msg.payload:
        client.disconnect()
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect("127.0.0.1", conf["port"], 30)
c.loop_forever()
"""


@dataclass(frozen=True)
class Sample:
    cpu_ns: int
    voluntary: int
    involuntary: int
    rss_kb: int


def sample(pid: int) -> Sample:
    cpu = vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol += int(line.split()[1])
        except FileNotFoundError:  # a thread ended while we looked
            continue
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return Sample(cpu, vol, invol, rss)


def agent_config(path: Path, db: Path, mqtt_settings: MqttSettings) -> Path:
    path.write_text(
        f'[kiosk]\nid = "{KIOSK}"\nagency = "000.00.14.H56"\nslot = 1\n\n'
        f'[agent]\ndatabase = "{db}"\n\n{mqtt_toml(mqtt_settings)}\n',
        encoding="utf-8",
    )
    return path


def bare_conf(s: MqttSettings) -> str:
    """The bare client's connection, as its one JSON argument."""
    return json.dumps(
        {
            "kiosk": BARE,
            "port": s.port,
            "ca": str(s.tls_ca),
            "cert": str(s.tls_cert),
            "key": str(s.tls_key),
        }
    )


def spawn_agent(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)],
        stdout=out,
        stderr=out,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def state_of(db: Path, rid: str) -> str | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT state FROM outbox WHERE id = ?", (rid,)).fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


def support(i: int) -> dict[str, object]:
    return {"topic": "máy in", "message": f"kẹt giấy {i}", "contact": "", "channel": "kiosk"}


def pad_database(db: Path, mb: int) -> None:
    """Acked records up to about ``mb`` MB: a kiosk's database within its retention."""
    ob = Outbox(db, KIOSK, min_free_disk_bytes=0)
    body = {**support(0), "message": "x" * 1500}
    while db.stat().st_size < mb * 1024 * 1024:
        with ob.transaction() as tx:
            for _ in range(500):
                tx.add("support", body)
        ob.mark_acked([r.id for r in ob.pending(limit=500)])
    ob.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ob.close()


def idle(conf: str, cfg: Path, d: Path, seconds: float) -> dict[str, dict[str, float]]:
    agent = spawn_agent(cfg, d / "agent-idle.log")
    bare = subprocess.Popen(
        [sys.executable, "-c", BARE_IDLE, conf], stdout=subprocess.PIPE, text=True
    )
    try:
        assert bare.stdout is not None
        if bare.stdout.readline().strip() != "connected":
            raise SystemExit("bare paho client did not connect")
        time.sleep(5.0)  # settle: the agent's first heartbeat, purge and look are done
        pids = {"agent": agent.pid, "bare": bare.pid}
        before = {k: sample(p) for k, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        after = {k: sample(p) for k, p in pids.items()}
        if agent.poll() is not None:
            raise SystemExit(f"the agent exited: see {d / 'agent-idle.log'}")
    finally:
        stop(agent)
        bare.terminate()
        bare.wait(10)
    return {
        k: {
            "cpu_ms_per_min": (after[k].cpu_ns - before[k].cpu_ns) / 1e6 / elapsed * 60,
            "wakeups_per_s": (after[k].voluntary - before[k].voluntary) / elapsed,
            "involuntary_per_s": (after[k].involuntary - before[k].involuntary) / elapsed,
            "rss_mib": after[k].rss_kb / 1024,
        }
        for k in pids
    }


def start_ours(cfg: Path, db: Path, d: Path, i: int) -> float:
    ob = Outbox(db, KIOSK, min_free_disk_bytes=0)
    rid = ob.add("support", support(i)).id
    ob.close()
    t0 = time.perf_counter()
    agent = spawn_agent(cfg, d / "agent-start.log")
    try:
        while state_of(db, rid) != "acked":
            if agent.poll() is not None:
                raise SystemExit(f"the agent exited: see {d / 'agent-start.log'}")
            if time.perf_counter() - t0 > 60:
                raise SystemExit("the agent did not sync its record within 60 s")
            time.sleep(0.002)
        return time.perf_counter() - t0
    finally:
        stop(agent)


def start_bare(conf: str, stream: str, seq: int) -> float:
    rid = new_ulid()
    payload = Record(
        kind="support",
        kiosk=BARE,
        stream=stream,
        seq=seq,
        id=rid,
        created="2026-12-01T09:00:00.000+07:00",
        body=support(seq),
    ).encode()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", BARE_ONCE, conf, rid, payload.hex()], timeout=60, check=True
    )
    del proc
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--idle-s", type=float, default=60.0, help="idle measurement (seconds)")
    ap.add_argument("--starts", type=int, default=5, help="starts of each, alternated")
    ap.add_argument("--db-mb", type=int, default=20, help="size of the kiosk database (MB)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        db, central_db = d / "kiosk.db", d / "central.db"
        pad_database(db, args.db_mb)
        with MosquittoProcess(d / "broker") as broker:
            ccfg = d / "central.toml"
            ccfg.write_text(
                f'[central]\ndatabase = "{central_db}"\n{mqtt_toml(broker.collector())}\n'
            )
            central = subprocess.Popen(
                [sys.executable, "-m", "central.cli", "run", "--config", str(ccfg)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while not central_db.exists():
                    time.sleep(0.05)
                time.sleep(1.0)  # let the collector subscribe
                cfg = agent_config(d / "agent.toml", db, broker.kiosk(KIOSK))
                conf = bare_conf(broker.kiosk(BARE))
                stream = new_stream_id()
                ours: list[float] = []
                bare: list[float] = []
                start_bare(conf, stream, 1)  # warm the page cache for python + paho
                for i in range(args.starts):
                    bare.append(start_bare(conf, stream, i + 2))
                    ours.append(start_ours(cfg, db, d, i))
                figures = idle(conf, cfg, d, args.idle_s)
            finally:
                central.terminate()
                central.wait(10)
    a, b = figures["agent"], figures["bare"]
    start_a, start_b = statistics.median(ours), statistics.median(bare)
    print(f"idle {args.idle_s:.0f} s, connected, nothing queued; kiosk database {args.db_mb} MB")
    for name, f in figures.items():
        print(
            f"{name:<6}: wake-ups {f['wakeups_per_s']:.2f}/s  involuntary "
            f"{f['involuntary_per_s']:.2f}/s  CPU {f['cpu_ms_per_min']:.1f} ms/min  "
            f"RSS {f['rss_mib']:.1f} MiB"
        )
    cpu_ratio = a["cpu_ms_per_min"] / b["cpu_ms_per_min"] if b["cpu_ms_per_min"] else float("inf")
    wake_ratio = a["wakeups_per_s"] / b["wakeups_per_s"] if b["wakeups_per_s"] else float("inf")
    print(f"ratio agent / bare: wake-ups {wake_ratio:.2f}  CPU {cpu_ratio:.2f}")
    print(
        f"start to first record synced (median of {args.starts}): agent {start_a * 1000:.0f} ms"
        f"  bare paho process {start_b * 1000:.0f} ms  ratio {start_a / start_b:.2f}"
    )
    print(f"  agent runs: {', '.join(f'{x * 1000:.0f}' for x in ours)} ms")
    print(f"  bare runs : {', '.join(f'{x * 1000:.0f}' for x in bare)} ms")
    print(
        json.dumps(
            {
                "bench": "agent_footprint",
                "value": round(a["wakeups_per_s"], 3),
                "unit": "wake-ups/s idle",
                "baseline": round(b["wakeups_per_s"], 3),
                "ratio": round(wake_ratio, 3),
                "cpu_ms_per_min": round(a["cpu_ms_per_min"], 2),
                "cpu_ms_per_min_bare": round(b["cpu_ms_per_min"], 2),
                "cpu_ratio": round(cpu_ratio, 3),
                "rss_mib": round(a["rss_mib"], 1),
                "rss_mib_bare": round(b["rss_mib"], 1),
                "start_to_synced_ms": round(start_a * 1000, 1),
                "start_to_synced_ms_bare": round(start_b * 1000, 1),
                "start_ratio": round(start_a / start_b, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
