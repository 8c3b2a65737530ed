"""The AMQP collectors' ingest rate on a 3-node RabbitMQ cluster, against a bare pika consumer.

A sibling of bench/central_ingest.py, not a ``--broker`` flag on it: nearly everything
there is mosquitto's (dynsec enrolment, TLS kiosk certificates, persistent MQTT sessions,
a probe record per collector), and nearly everything here is RabbitMQ's (a cluster of
three, per-kiosk users with passwords, a quorum queue). What both share (the signed
records, central's registry and key, the PostgreSQL database) is imported from there.

The cluster is tests/rabbit_cluster.py's (own loopback ports, own epmd; never the
machine's RabbitMQ on 5672). Users the production way (central/rabbitmq_identities.py:
the same permissions), written in one ``rabbitmqctl eval`` for the whole fleet since one
``rabbitmqctl`` call per user and permission would take minutes: one user per kiosk
(its own up/ topics only), one per collector and one for the bare consumer.

1. Two durable quorum queues are declared and bound as the collectors bind theirs
   (``amq.topic``, the kiosks' uplink routing keys), leaders on node 1: the collectors'
   queue (``aps.bench``) and the bare consumer's twin (``aps.bench.bare``); nobody consumes.
2. ``--kiosks`` kiosks publish ``--records`` signed record envelopes over MQTT 3.1.1 at
   QoS 1 (paho, clean sessions, password login), kiosk ``i`` on node ``i % 3 + 1``, round
   robin; a PUBACK means both queues hold the message (quorum-committed). Both queues are
   then checked to hold every record.
3. One or two ``aps-central run`` (``[collector] source = "amqp"``, the first consuming
   from node 1, the second from node 2) and the bare consumer (pika, node 1,
   ``basic_consume`` with the same prefetch, one ``basic.ack`` with ``multiple`` per batch
   of ``batch_max`` or after ``batch_wait`` idle, as the collector acks) start at once and
   drain. Central's rate is counted from its store (10% to 90% of the records), the bare
   consumer's from its own deliveries over the same span; CPU per record over the span
   (``/proc`` for the collectors, plus their PostgreSQL backends; the consumer's own
   ``process_time``). RabbitMQ's CPU is not counted on either side.

Last line: {"bench", "value", "unit", "baseline", "ratio"} (records/s; ratio = ours/bare).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pika

from bench._kiosks import ROOT, kiosk_names
from bench.central_ingest import (
    PgDatabase,
    _cpu_total,
    _open_store,
    backend_pids,
    central_keys,
    fleet_payloads,
)
from central.amqp_source import EXCHANGE, UPLINK_NAMES, routing_key
from central.rabbitmq_identities import Permissions, collector_permissions, kiosk_permissions
from central.store_pg import PostgresStore
from sync.envelope import TOPIC_ROOT
from tests import rabbit_cluster
from tests.rabbit_cluster import RabbitCluster
from tests.rabbit_mqtt_ready import mqtt_ready

QUEUE = "aps.bench"
BARE_QUEUE = "aps.bench.bare"
COLLECTOR_USER = "aps-bench-central"
BARE_USER = "aps-bench-bare"
PROBE_USER = "aps-bench-probe"  # readiness probes only (tests/rabbit_mqtt_ready.py)
BATCH_MAX = 500  # [collector] batch_max's default, and the bare consumer's ack batch
PREFETCH = 1000  # [amqp] prefetch's default

# Plain pika, nothing of ours: the same prefetch, a batch acked at once (``multiple``)
# when it reaches batch_max or nothing more came for batch_wait seconds, as the
# collector acks after its commit. Marks at 10% and 90% of what it is to receive.
BARE_CONSUMER = """
import json, sys, time
import pika
conf = json.loads(sys.argv[1])
n = conf["records"]
marks = {n // 10: "from", n - n // 10: "to"}
params = pika.URLParameters(conf["url"])
params.credentials = pika.PlainCredentials(conf["username"], conf["password"])
conn = pika.BlockingConnection(params)
ch = conn.channel()
ch.basic_qos(prefetch_count=conf["prefetch"])
got, last_tag, unacked = [0], [0], [0]
def on_message(ch, method, props, body):
    got[0] += 1
    last_tag[0], unacked[0] = method.delivery_tag, unacked[0] + 1
    if got[0] in marks:
        print(marks[got[0]], repr(time.time()), repr(time.process_time()), flush=True)
ch.basic_consume(conf["queue"], on_message, auto_ack=False)
print("ready", flush=True)
while got[0] < n:
    deadline = time.monotonic() + conf["batch_wait_s"]
    while unacked[0] < conf["batch_max"] and got[0] < n and time.monotonic() < deadline:
        conn.process_data_events(time_limit=max(0.0, deadline - time.monotonic()))
    if unacked[0]:
        ch.basic_ack(last_tag[0], multiple=True)
        unacked[0] = 0
conn.close()
"""

# The fleet: one paho client per kiosk (MQTT 3.1.1, clean session, its RabbitMQ user and
# password), on its home node; QoS 1, at most 1000 PUBLISHes awaiting their PUBACK.
# JSON argument: {"kiosks": {id: [port, password]}}; then the messages file.
PUBLISHER = """
import sys, json, threading, time
from sync.mqtt_link import MqttSettings, make_paho_client
conf, path = json.loads(sys.argv[1]), sys.argv[2]
msgs = [(t, bytes.fromhex(p)) for t, p in json.load(open(path))]
clients, connected = {}, threading.Semaphore(0)
window = threading.Semaphore(1000)
t_connect = time.time()
for kiosk, (port, password) in conf["kiosks"].items():
    s = MqttSettings(port=port, username=kiosk, password=password)
    c = make_paho_client(kiosk, s)
    c.max_inflight_messages_set(1000)
    c.on_publish = lambda *a: window.release()
    c.on_connect = lambda c, u, f, rc, p: connected.release() if rc == 0 else None
    c.connect("127.0.0.1", port)
    c.loop_start()
    clients[f"aps/v1/{kiosk}/up/records"] = c
for _ in clients:
    if not connected.acquire(timeout=120):
        sys.exit("a publishing kiosk did not connect within 120 s")
print(f"connected {time.time() - t_connect!r} {len(clients)}", flush=True)
print(f"start {time.time()!r}", flush=True)
for t, p in msgs:
    window.acquire()
    clients[t].publish(t, p, qos=1)
for _ in range(1000):
    window.acquire()
print(f"published {time.time()!r}", flush=True)
for c in clients.values():
    c.disconnect()
    c.loop_stop()
"""


def _erl(s: str) -> str:
    """``s`` as an Erlang binary literal (ASCII: names, regexes, hex passwords)."""
    return '<<"' + s.replace("\\", "\\\\").replace('"', '\\"') + '">>'


def provision_users(cluster: RabbitCluster, users: dict[str, tuple[str, Permissions]]) -> float:
    """Every user with its password and permissions, in one ``rabbitmqctl eval`` (the
    expression, passwords included, on its standard input, never in the arguments);
    the seconds it took."""
    acting, vhost, lines = _erl("aps-bench"), _erl("/"), []
    for user, (password, p) in users.items():
        u = _erl(user)
        lines += [
            f"ok = rabbit_auth_backend_internal:add_user({u}, {_erl(password)}, {acting}),",
            f"ok = rabbit_auth_backend_internal:set_permissions({u}, {vhost}, "
            f"{_erl(p.configure)}, {_erl(p.write)}, {_erl(p.read)}, {acting}),",
            f"ok = rabbit_auth_backend_internal:set_topic_permissions({u}, {vhost}, "
            f"{_erl(EXCHANGE)}, {_erl(p.topic_write)}, {_erl(p.topic_read)}, {acting}),",
        ]
    t = time.perf_counter()
    cluster.ctl(1, "eval", stdin="\n".join(lines) + "\nok.\n", timeout=600)
    return time.perf_counter() - t


def amqp_url(cluster: RabbitCluster, n: int) -> str:
    return f"amqp://127.0.0.1:{cluster.nodes[n - 1].amqp_port}/%2F"


def declare_queues(cluster: RabbitCluster, logins: dict[str, str]) -> None:
    """Both quorum queues as the collector declares its own, bound to the uplink keys;
    declared on node 1, so their leaders are there (client-local placement)."""
    keys = [routing_key(f"{TOPIC_ROOT}/+/up/{name}") for name in UPLINK_NAMES]
    for user, queue in ((COLLECTOR_USER, QUEUE), (BARE_USER, BARE_QUEUE)):
        params = pika.URLParameters(amqp_url(cluster, 1))
        params.credentials = pika.PlainCredentials(user, logins[user])
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for key in keys:
            ch.queue_bind(queue, EXCHANGE, routing_key=key)
        conn.close()


def delete_queues(cluster: RabbitCluster, logins: dict[str, str]) -> None:
    for user, queue in ((COLLECTOR_USER, QUEUE), (BARE_USER, BARE_QUEUE)):
        params = pika.URLParameters(amqp_url(cluster, 1))
        params.credentials = pika.PlainCredentials(user, logins[user])
        conn = pika.BlockingConnection(params)
        conn.channel().queue_delete(queue)
        conn.close()


def queue_depths(cluster: RabbitCluster) -> dict[str, int]:
    out = cluster.ctl(1, "list_queues", "-q", "name", "messages")
    depths = {}
    for line in out.splitlines():
        name, _, count = line.strip().partition("\t")
        with contextlib.suppress(ValueError):
            depths[name] = int(count)
    return depths


def settled_depths(cluster: RabbitCluster, want: int, timeout_s: float = 60) -> dict[str, int]:
    """Both queues' depths once they read ``want`` (or at the timeout): a quorum queue's
    count in ``list_queues`` comes from metrics emitted every few seconds, so it lags."""
    deadline = time.monotonic() + timeout_s
    while True:
        depths = queue_depths(cluster)
        if depths.get(QUEUE) == depths.get(BARE_QUEUE) == want or time.monotonic() > deadline:
            return depths
        time.sleep(1.0)


def _run_central(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "central.cli", "run", "--config", str(cfg)],
        stdout=fh,
        stderr=fh,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


#: tests/rabbit_cluster.py's cluster, stopped (nodes and epmd killed) however the bench ends.
_started_cluster = contextlib.contextmanager(rabbit_cluster.cluster)


def ingest_rate(
    cluster: RabbitCluster,
    work: Path,
    kiosks: int,
    records: int,
    *,
    collectors: int = 1,
    pg: PgDatabase | None = None,
) -> dict[str, float]:
    """One round on a fresh pair of queues (the cluster is shared between rounds)."""
    names = kiosk_names(kiosks)
    payloads = fleet_payloads(kiosks, records)
    msgs_file = work / "msgs.json"
    msgs_file.write_text(json.dumps([(t, p.hex()) for t, p in payloads]))
    central_db = work / "central.db"
    dsn = None if pg is None else pg.dsn
    security = central_keys(work, central_db, names, dsn)
    fleet = {
        k: [cluster.nodes[i % rabbit_cluster.NODES].mqtt_port, cluster_passwords[k]]
        for i, k in enumerate(names)
    }
    store_toml = "" if dsn is None else f'store = "postgresql"\npostgresql_dsn = "{dsn}"\n'
    cfgs = []
    for n in range(collectors):
        ident = f"{COLLECTOR_USER}-{n + 1}"
        first = n % rabbit_cluster.NODES + 1  # collector 1 on node 1, collector 2 on node 2
        order = [(first - 1 + i) % rabbit_cluster.NODES + 1 for i in range(rabbit_cluster.NODES)]
        urls = ", ".join(f'"{amqp_url(cluster, m)}"' for m in order)
        cfg = work / f"{ident}.toml"
        cfg.write_text(
            f'[central]\ndatabase = "{central_db}"\nlog_level = "WARNING"\n{store_toml}'
            f'[collector]\nsource = "amqp"\nclient_id = "{ident}"\nbatch_max = {BATCH_MAX}\n'
            f'[amqp]\nurls = [{urls}]\nusername = "{COLLECTOR_USER}"\n'
            f'password = "{cluster_passwords[COLLECTOR_USER]}"\nqueue = "{QUEUE}"\n'
            f"prefetch = {PREFETCH}\n" + security
        )
        cfgs.append(cfg)
    declare_queues(cluster, cluster_passwords)
    # 2. The fleet publishes while nobody consumes.
    pub = subprocess.run(
        [sys.executable, "-c", PUBLISHER, json.dumps({"kiosks": fleet}), str(msgs_file)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if pub.returncode != 0:
        raise SystemExit(f"the publisher failed: {pub.stderr[-2000:]}")
    pub_lines = {line.split()[0]: line.split()[1:] for line in pub.stdout.splitlines()}
    connect_s = float(pub_lines["connected"][0])
    t_pub = [float(pub_lines["start"][0]), float(pub_lines["published"][0])]
    depths = settled_depths(cluster, records)
    if depths.get(QUEUE) != records or depths.get(BARE_QUEUE) != records:
        raise SystemExit(f"queued {depths}, expected {records} in {QUEUE} and {BARE_QUEUE}")
    # 3. All come back at once and drain.
    store = _open_store(central_db, dsn)
    bare_conf = {
        "url": amqp_url(cluster, 1),
        "username": BARE_USER,
        "password": cluster_passwords[BARE_USER],
        "queue": BARE_QUEUE,
        "records": records,
        "prefetch": PREFETCH,
        "batch_max": BATCH_MAX,
        "batch_wait_s": 0.05,
    }
    procs = [_run_central(cfg, work / f"{cfg.stem}.log") for cfg in cfgs]
    bare = subprocess.Popen(
        [sys.executable, "-c", BARE_CONSUMER, json.dumps(bare_conf)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lo, hi = records // 10, records - records // 10
    poll_s = 0.02 if pg is None else 0.05
    marks: dict[str, tuple[float, float, float]] = {}
    try:
        deadline = time.time() + 900
        pg_pids: list[int] = []
        seen, moved_at = -1, time.time()
        while "to" not in marks and time.time() < deadline:
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"an aps-central run exited: see {work}/*.log")
            held = store.count()
            if held != seen:
                seen, moved_at = held, time.time()
            elif time.time() - moved_at > 120:  # e.g. every record dead-lettered
                raise SystemExit(f"central stuck at {held} records for 120 s: see {work}/*.log")
            for name, at in (("from", lo), ("to", hi)):
                if held >= at and name not in marks:
                    if isinstance(store, PostgresStore) and not pg_pids:
                        pg_pids = backend_pids(store)
                    marks[name] = (
                        time.time(),
                        _cpu_total([p.pid for p in procs]),
                        _cpu_total(pg_pids),
                    )
            time.sleep(poll_s)
        assert bare.stdout is not None
        bare_marks = {}
        for line in bare.stdout:
            parts = line.split()
            if parts[0] in ("from", "to"):
                bare_marks[parts[0]] = (float(parts[1]), float(parts[2]), 0.0)
        bare.wait(120)
        while store.count() < records and time.time() < deadline:
            time.sleep(0.05)
        held = store.count()
        left = settled_depths(cluster, 0)
    finally:
        store.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if bare.poll() is None:
            bare.kill()
            bare.wait()
        # The next round starts on empty queues.
        delete_queues(cluster, cluster_passwords)
    if held != records:
        raise SystemExit(f"central holds {held} records, expected {records}")
    if "to" not in bare_marks:
        raise SystemExit("the bare consumer did not receive every record")

    def rate(m: dict[str, tuple[float, float, float]]) -> tuple[float, float, float]:
        (t0, c0, p0), (t1, c1, p1) = m["from"], m["to"]
        span = hi - lo
        return span / (t1 - t0), (c1 - c0) / span * 1e6, (p1 - p0) / span * 1e6

    ours, cpu_ours, cpu_pg = rate(marks)
    bare_rate, cpu_bare, _ = rate(bare_marks)
    return {
        "ours": ours,
        "bare": bare_rate,
        "published": records / (t_pub[1] - t_pub[0]),
        "connect_s": connect_s,
        "cpu_us_ours": cpu_ours,
        "cpu_us_pg": cpu_pg,
        "cpu_us_bare": cpu_bare,
        "held": float(held),
        "left_in_queue": float(left.get(QUEUE, -1)),
        "payload": float(len(payloads[0][1])),
    }


#: Every user's password (generated once per run: the users live as long as the cluster).
cluster_passwords: dict[str, str] = {}


def _collector_counts(text: str) -> list[int]:
    counts = [int(x) for x in text.split(",")]
    if not counts or any(c not in (1, 2) for c in counts):
        raise argparse.ArgumentTypeError("--collectors: 1, 2 or 1,2")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kiosks", type=int, default=50)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="central's store: a SQLite file, or a fresh database on 127.0.0.1:5432 "
        "(created and dropped by the bench)",
    )
    ap.add_argument(
        "--collectors",
        type=_collector_counts,
        default=[1],
        help="aps-central run processes on the one queue: 1, 2, or 1,2 (both, alternated)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rate rounds (order alternated)")
    ap.add_argument("--dir", default=None, help="Directory for the cluster and the databases")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C: the cluster's nodes and epmd, the collectors and the
    # PostgreSQL database are cleaned up by the finally blocks, not left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.records < 10 or args.kiosks < 1:
        ap.error("--records at least 10, --kiosks at least 1")
    pg_wanted = args.store == "postgresql"
    names = kiosk_names(args.kiosks)
    runs: dict[int, list[dict[str, float]]] = {c: [] for c in args.collectors}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        t_cluster = time.perf_counter()
        with _started_cluster(work / "rabbit") as cluster:
            cluster_s = time.perf_counter() - t_cluster
            for user in [*names, COLLECTOR_USER, BARE_USER, PROBE_USER]:
                cluster_passwords[user] = secrets.token_hex(12)
            everything = Permissions(".*", ".*", ".*", ".*", ".*")
            users = {k: (cluster_passwords[k], kiosk_permissions(k)) for k in names}
            users[COLLECTOR_USER] = (
                cluster_passwords[COLLECTOR_USER],
                collector_permissions(QUEUE),
            )
            users[BARE_USER] = (cluster_passwords[BARE_USER], collector_permissions(BARE_QUEUE))
            users[PROBE_USER] = (cluster_passwords[PROBE_USER], everything)
            users_s = provision_users(cluster, users)
            mqtt_ready(cluster, PROBE_USER, cluster_passwords[PROBE_USER])
            for r in range(args.repeat):
                order = args.collectors if r % 2 == 0 else list(reversed(args.collectors))
                for c in order:
                    run_dir = work / f"rate-{r}-{c}"
                    run_dir.mkdir()
                    rnd = functools.partial(
                        ingest_rate, cluster, run_dir, args.kiosks, args.records, collectors=c
                    )
                    if pg_wanted:
                        with PgDatabase() as pg:
                            out = rnd(pg=pg)
                    else:
                        out = rnd()
                    runs[c].append(out)
                    print(
                        f"round {r + 1} {args.store} x{c}: {out['ours']:,.0f} records/s "
                        f"(bare {out['bare']:,.0f} msg/s, ratio {out['ours'] / out['bare']:.2f}; "
                        f"{out['cpu_us_ours']:.0f} µs CPU/record in the collectors"
                        + (f", {out['cpu_us_pg']:.0f} in PostgreSQL" if pg_wanted else "")
                        + f"; {out['left_in_queue']:.0f} left in the queue)",
                        flush=True,
                    )

    def med(c: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[c])

    first = runs[args.collectors[0]][0]
    print(
        f"records: {args.records} from {args.kiosks} kiosks, payload {first['payload']:.0f} bytes"
    )
    print(
        f"cluster of {rabbit_cluster.NODES} up in {cluster_s:.0f} s; {len(users)} users "
        f"provisioned in {users_s:.1f} s; {args.kiosks} MQTT connections up in "
        f"{first['connect_s']:.1f} s"
    )
    print(f"published (PUBACKs, 2 quorum queues): {first['published']:,.0f} msg/s")
    for c in args.collectors:
        print(
            f"bare pika consumer (x{c} run) : {med(c, 'bare'):,.0f} msg/s, "
            f"{med(c, 'cpu_us_bare'):.0f} µs CPU per message (median of {len(runs[c])})"
        )
        print(
            f"aps-central x{c}, {args.store:10}: {med(c, 'ours'):,.0f} records/s held, "
            f"{med(c, 'cpu_us_ours'):.0f} µs CPU per record in the collectors"
            + (f" + {med(c, 'cpu_us_pg'):.0f} in PostgreSQL" if pg_wanted else "")
            + f" (ratio {med(c, 'ours') / med(c, 'bare'):.2f})"
        )
    main_c = args.collectors[-1]
    ours, bare = med(main_c, "ours"), med(main_c, "bare")
    result: dict[str, object] = {
        "bench": "amqp_ingest",
        "broker": "rabbitmq",
        "store": args.store,
        "collectors": main_c,
        "value": round(ours, 1),
        "unit": "records/s",
        "baseline": round(bare, 1),
        "ratio": round(ours / bare, 3),
        "cpu_us_per_record": round(med(main_c, "cpu_us_ours"), 1),
        "records": args.records,
        "held": int(min(run["held"] for rs in runs.values() for run in rs)),
        "left_in_queue": int(max(run["left_in_queue"] for rs in runs.values() for run in rs)),
    }
    if pg_wanted:
        result["pg_cpu_us_per_record"] = round(med(main_c, "cpu_us_pg"), 1)
    if len(args.collectors) == 2:
        one, two = med(1, "ours"), med(2, "ours")
        print(f"two collectors / one          : {two / one:.2f}x")
        result["x1"] = round(one, 1)
        result["x2"] = round(two, 1)
        result["scaling"] = round(two / one, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
