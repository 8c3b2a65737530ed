"""Central's ingest rate from many kiosks, against a bare paho subscriber in the same run.

Ours: ``aps-central run`` (a separate process: one collector, SQLite store,
synchronous=FULL) subscribed to ``aps/v1/+/up/records``; its rate is counted
from its database (records held, polled every 20 ms).
Baseline, same run, same broker, same messages: a bare paho subscriber (its
own process, QoS 1, persistent session) that only counts what it receives.
The broker runs the shipped configuration (nobody anonymous): central and the
bare subscriber log in as collector identities of their own on the local
listener; every kiosk is enrolled (dynsec role, certificate) and its records
go out over its own mutual-TLS connection, since only a kiosk may publish on
its ``up/`` topics.
Both subscribe, go away, a publisher process sends ``--records`` record
envelopes from ``--kiosks`` kiosks (one TLS connection each, QoS 1, round
robin) into their queued sessions, then both come back at once and drain: rates are taken from
10% to 90% of the records, so start-up and the publisher's speed count for
neither. CPU per record over the same span (``/proc`` for central, the
subscriber's own ``process_time``).

Also printed: the cost of one 256-record batch (classify, ingest, commit)
with 1,000 and with 200,000 records held in the stream, measured
interleaved (batch on the small store, batch on the big one, ...) so that
disk drift hits both alike; and the resident memory of ``aps-central
status`` over a store holding a stream whose gaps span 10^8 and 2^63 seqs.
Last line: {"bench", "value", "unit", "baseline", "ratio"} (records/s; ratio = ours/bare).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bench._kiosks import dossier_record, kiosk_names
from central.backoffice_db import PgTarget
from central.collector import BatchResult, process_batch
from central.fleet.keys import StaticKeyDirectory
from central.fleet.registry import Registry
from central.mosquitto import MosquittoProcess, mqtt_toml
from central.store import SQLiteStore
from central.store_pg import PostgresStore
from sync.envelope import MAX_SEQ, Record, records_topic
from sync.ids import new_stream_id
from sync.wire_signing import sign_record

TOPIC_FILTER = "aps/v1/+/up/records"
#: Collector identities (their client ids are bound to their names by the broker).
CENTRAL_ID = "aps-bench-central"
#: The shared group of several collectors ($share/<group>/...).
SHARED_GROUP = "aps-bench"
BARE_ID = "aps-bench-bare"

# The bare subscriber logs in as a collector identity of its own on the broker's
# local listener (the shipped configuration admits nobody anonymous); its one JSON
# argument names the port, the user and the password. Plain paho, nothing of ours.
BARE_SUBSCRIBER = """
import json, sys, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
conf, n, topic, mode = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
marks = {n // 10: "from", n - n // 10: "to"}
got = [0]
done = threading.Event()
def on_message(c, u, m):
    got[0] += 1
    if got[0] in marks:
        print(marks[got[0]], repr(time.time()), repr(time.process_time()), flush=True)
    if got[0] == n:
        done.set()
def on_subscribe(*a):
    if mode == "subscribe":
        done.set()
c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=conf["username"],
                clean_session=False)
c.username_pw_set(conf["username"], conf["password"])
c.max_inflight_messages_set(1000)
c.on_message = on_message
c.on_subscribe = on_subscribe
c.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
c.connect("127.0.0.1", conf["port"])
c.loop_start()
done.wait()
c.disconnect()
c.loop_stop()
"""


# Every record is signed as a kiosk signs it (issue 9); central verifies each against the
# registry. One key for the bench's kiosks (verifying costs the same whichever key).
KIOSK_KEY = Ed25519PrivateKey.generate()
CENTRAL_KEY = Ed25519PrivateKey.generate()
KEYS = StaticKeyDirectory()


def signed(r: Record) -> bytes:
    KEYS.add(r.kiosk, KIOSK_KEY.public_key())
    return sign_record(r.encode(), KIOSK_KEY)


def batch(store: SQLiteStore, part: list[tuple[str, bytes]]) -> BatchResult:
    return process_batch(store, part, keys=KEYS, signing_key=CENTRAL_KEY)


def central_keys(work: Path, database: Path, kiosks: list[str], dsn: str | None = None) -> str:
    """Central's key file and its registry holding ``kiosks``; the [security] section.

    The registry is where central reads it: the SQLite file, or with ``dsn`` central's
    PostgreSQL (central.fleet.registry; it moved there after this bench's PG figures).
    """
    key = work / "central-signing.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, CENTRAL_KEY.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    os.close(fd)
    registry = Registry(database if dsn is None else PgTarget(dsn))
    for n, kiosk in enumerate(kiosks):
        registry.add_kiosk(  # ten kiosks an office, slots 0-9, as enrolment hands them out
            kiosk,
            office=f"bench-{n // 10}",
            slot=n % 10,
            agency="000.00.14.H56",
            signing_key=KIOSK_KEY.public_key(),
        )
    registry.close()
    return f'[security]\nsigning_key = "{key}"\n'


def fleet_payloads(kiosks: int, records: int) -> list[tuple[str, bytes]]:
    names = kiosk_names(kiosks)
    streams = {k: new_stream_id() for k in names}
    out = []
    for i in range(records):
        kiosk = names[i % kiosks]
        out.append(
            (records_topic(kiosk), signed(dossier_record(kiosk, streams[kiosk], i // kiosks + 1)))
        )
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


# The probe and the publisher speak as kiosks: each record goes out over its own
# kiosk's mutual-TLS identity, the only one the broker lets publish on that kiosk's
# up/ topics (the dynsec admin may publish only on $CONTROL/dynamic-security/#).
# They are helpers, not contenders, so they use our paho set-up (TLS, writes from
# the loop thread). Their JSON argument: {"port", "ca", "kiosks": {id: [cert, key]}}.
PROBE = """
import json, sys
from sync.mqtt_link import MqttSettings, make_paho_client
conf, kiosk = json.loads(sys.argv[1]), sys.argv[2]
cert, key = conf["kiosks"][kiosk]
s = MqttSettings(port=conf["port"], tls_ca=conf["ca"], tls_cert=cert, tls_key=key)
c = make_paho_client(kiosk, s)
c.connect("127.0.0.1", s.port)
c.loop_start()
c.publish(f"aps/v1/{kiosk}/up/records", sys.stdin.buffer.read(), qos=1).wait_for_publish(30)
c.disconnect()
c.loop_stop()
"""

PUBLISHER = """
import sys, json, threading, time
from sync.mqtt_link import MqttSettings, make_paho_client
conf, path = json.loads(sys.argv[1]), sys.argv[2]
msgs = [(t, bytes.fromhex(p)) for t, p in json.load(open(path))]
# One client per kiosk: kiosk k publishes only on aps/v1/<k>/up/records.
clients, connected = {}, threading.Semaphore(0)
# Never more than the in-flight window queued inside paho (its queue is O(n) per ack).
window = threading.Semaphore(1000)
t_connect = time.time()
for kiosk, (cert, key) in conf["kiosks"].items():
    s = MqttSettings(port=conf["port"], tls_ca=conf["ca"], tls_cert=cert, tls_key=key)
    c = make_paho_client(kiosk, s)
    c.max_inflight_messages_set(1000)
    c.on_publish = lambda *a: window.release()
    c.on_connect = lambda *a: connected.release()
    c.connect("127.0.0.1", s.port)
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


#: Where the bench creates (and drops) its own database: the machine's PostgreSQL, trust auth.
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=5"


class PgDatabase:
    """A fresh database ``aps_bench_<random>`` on 127.0.0.1:5432, dropped on exit."""

    def __init__(self, admin_dsn: str = PG_ADMIN_DSN) -> None:
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import make_conninfo

        self._psycopg, self._sql = psycopg, sql
        self.admin_dsn = admin_dsn
        self.name = f"aps_bench_{secrets.token_hex(6)}"
        self.dsn = make_conninfo(admin_dsn, dbname=self.name)

    def __enter__(self) -> PgDatabase:
        with self._psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(
                self._sql.SQL("CREATE DATABASE {}").format(self._sql.Identifier(self.name))
            )
        return self

    def __exit__(self, *exc: object) -> None:
        with self._psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(
                self._sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    self._sql.Identifier(self.name)
                )
            )


def _run_central(cfg: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "central.cli", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _bare(conf: str, records: int, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", BARE_SUBSCRIBER, conf, str(records), TOPIC_FILTER, mode],
        stdout=subprocess.PIPE,
        text=True,
    )


def kiosk_conf(broker: MosquittoProcess, kiosks: list[str]) -> str:
    """Enrol every kiosk (dynsec client + role, CA-signed certificate); JSON for the helpers."""
    creds = {}
    for kiosk in kiosks:
        s = broker.kiosk(kiosk)
        creds[kiosk] = [str(s.tls_cert), str(s.tls_key)]
    return json.dumps({"port": broker.kiosk_port, "ca": str(broker.pki.ca), "kiosks": creds})


def _open_store(db: Path, dsn: str | None) -> SQLiteStore | PostgresStore:
    return SQLiteStore(db) if dsn is None else PostgresStore(dsn)


def backend_pids(store: PostgresStore) -> list[int]:
    """The server processes serving the collectors (not the bench's own counting one).

    Client backends only: an autovacuum worker busy on the database when the list is
    taken would otherwise count in one run and not in the next.
    """
    with store.raw.transaction():
        rows = store.raw.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchall()
    return [int(r[0]) for r in rows]


def commits(store: PostgresStore) -> int:
    """Transactions committed in the database so far (the server's statistics)."""
    with store.raw.transaction():
        row = store.raw.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


class Counted:
    """The bench's own transactions on its counting connection (not the collectors')."""

    def __init__(self, store: SQLiteStore | PostgresStore) -> None:
        self.store, self.n = store, 0

    def count(self) -> int:
        self.n += 1
        return self.store.count()


def _cpu_total(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += cpu_s(pid)  # a backend may end between listing and reading
    return total


def ingest_rate(
    work: Path,
    kiosks: int,
    records: int,
    batch_max: int | None = None,
    *,
    batch_wait_ms: int | None = None,
    collectors: int = 1,
    pg: PgDatabase | None = None,
) -> dict[str, float]:
    """Both sides drain the same queued messages at once; rates over 10%..90%.

    The messages are published while both are away (persistent sessions), so
    the publisher's own speed does not cap either side. With ``collectors`` > 1
    each ``aps-central run`` has its own identity, client id and persistent
    session in one shared group; the broker splits the queued records among
    their sessions. With ``pg`` the collectors write to that PostgreSQL database
    (the registry stays in the SQLite file, as in production today).
    """
    payloads = fleet_payloads(kiosks, records)
    msgs_file = work / "msgs.json"
    msgs_file.write_text(json.dumps([(t, p.hex()) for t, p in payloads]))
    central_db = work / "central.db"
    dsn = None if pg is None else pg.dsn
    total = records
    probe_kiosks = [f"bench-probe{n}" for n in range(collectors)]
    names = [f"{CENTRAL_ID}-{n + 1}" if collectors > 1 else CENTRAL_ID for n in range(collectors)]
    with MosquittoProcess(work / "broker") as broker:
        t_enrol = time.perf_counter()
        fleet = kiosk_conf(broker, [*kiosk_names(kiosks), *probe_kiosks])
        enrol_s = time.perf_counter() - t_enrol
        bare_login = broker.collector(BARE_ID)
        bare_conf = json.dumps(
            {"port": bare_login.port, "username": BARE_ID, "password": bare_login.password}
        )
        security = central_keys(work, central_db, [*kiosk_names(kiosks), *probe_kiosks], dsn)
        store_toml = "" if dsn is None else f'store = "postgresql"\npostgresql_dsn = "{dsn}"\n'
        cfgs = []
        for ident in names:
            cfg = work / f"{ident}.toml"
            cfg.write_text(
                f'[central]\ndatabase = "{central_db}"\nlog_level = "WARNING"\n{store_toml}'
                f"{mqtt_toml(broker.collector(ident))}"
                f'[collector]\nclient_id = "{ident}"\n'
                + (f'shared_group = "{SHARED_GROUP}"\n' if collectors > 1 else "")
                + (f"batch_max = {batch_max}\n" if batch_max else "")
                + (f"batch_wait_ms = {batch_wait_ms}\n" if batch_wait_ms is not None else "")
                + security
            )
            cfgs.append(cfg)
        # 1. Every subscriber subscribes once (persistent sessions), then goes away. A
        # probe record stored shows that a collector's subscription is in place; the
        # collectors come one at a time, each with a probe kiosk of its own (a probe
        # may first land in the queue of a collector already gone: it is resent).
        _bare(bare_conf, records, "subscribe").wait(60)
        store = _open_store(central_db, dsn)
        sent = 0
        for n, (cfg, probe_kiosk) in enumerate(zip(cfgs, probe_kiosks, strict=True)):
            central = _run_central(cfg)
            probe = signed(dossier_record(probe_kiosk, new_stream_id(), 1))
            deadline = time.time() + 120
            while store.count() == n and time.time() < deadline:
                sent += 1
                subprocess.run(
                    [sys.executable, "-c", PROBE, fleet, probe_kiosk],
                    input=probe,
                    check=True,
                    timeout=60,
                )
                time.sleep(0.5)
            if store.count() != n + 1:
                raise SystemExit(f"aps-central {cfg.stem} did not subscribe")
            central.terminate()
            central.wait(15)
        # 2. The fleet publishes, each kiosk over its own TLS identity; the broker
        # queues for every subscriber.
        pub = subprocess.run(
            [sys.executable, "-c", PUBLISHER, fleet, str(msgs_file)],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
        pub_lines = {line.split()[0]: line.split()[1:] for line in pub.stdout.splitlines()}
        connect_s = float(pub_lines["connected"][0])
        t_pub = [float(pub_lines["start"][0]), float(pub_lines["published"][0])]
        # 3. All come back at once and drain.
        # Every probe copy waits in the bare subscriber's session; central holds one each.
        counting = Counted(store)
        commits_before = commits(store) if isinstance(store, PostgresStore) else 0
        procs = [_run_central(cfg) for cfg in cfgs]
        bare = _bare(bare_conf, records + sent, "drain")
        lo, hi = collectors + records // 10, collectors + records - records // 10
        records += collectors
        poll_s = 0.02 if pg is None else 0.05  # count(*) on PG costs the server a scan
        try:
            marks: dict[str, tuple[float, float, float]] = {}
            deadline = time.time() + 900
            pg_pids: list[int] = []
            while "to" not in marks and time.time() < deadline:
                held = counting.count()
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
                mark, when, cpu = line.split()
                bare_marks[mark] = (float(when), float(cpu), 0.0)
            bare.wait(60)
            while counting.count() < records and time.time() < deadline:
                time.sleep(0.05)
            held = counting.count()
            per_commit = 0.0
            if isinstance(store, PostgresStore):
                time.sleep(2.0)  # idle backends flush their statistics within about 1 s
                # Each commits() and backend_pids() call is one transaction of ours too.
                own = counting.n + 2 + (1 if pg_pids else 0)
                per_commit = (total + collectors) / max(1, commits(store) - commits_before - own)
        finally:
            store.close()
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(15)
            if bare.poll() is None:
                bare.kill()
    if held != records:
        raise SystemExit(f"central holds {held} records, expected {records}")
    records = total

    def rate(m: dict[str, tuple[float, float, float]], span: int) -> tuple[float, float, float]:
        (t0, c0, p0), (t1, c1, p1) = m["from"], m["to"]
        return span / (t1 - t0), (c1 - c0) / span * 1e6, (p1 - p0) / span * 1e6

    ours, cpu_ours, cpu_pg = rate(marks, hi - lo)
    n_bare = total + sent
    bare_rate, cpu_bare, _ = rate(bare_marks, (n_bare - n_bare // 10) - n_bare // 10)
    return {
        "ours": ours,
        "bare": bare_rate,
        "published": records / (t_pub[1] - t_pub[0]),
        "connect_s": connect_s,
        "enrol_s": enrol_s,
        "cpu_us_ours": cpu_ours,
        "cpu_us_pg": cpu_pg,
        "cpu_us_bare": cpu_bare,
        "records_per_commit": per_commit,
        "payload": float(len(payloads[0][1])),
    }


def batch_cost(work: Path, rounds: int) -> dict[int, float]:
    """ms per 256-record batch with 1,000 vs 200,000 records held, interleaved."""
    kiosk, topic = "bench-hist", records_topic("bench-hist")
    stores, seqs, streams = {}, {}, {}
    for held in (1_000, 200_000):
        store = SQLiteStore(work / f"held-{held}.db")
        stream, seq = new_stream_id(), 0
        while seq < held:
            n = min(5000, held - seq)
            part = [(topic, signed(dossier_record(kiosk, stream, seq + i + 1))) for i in range(n)]
            batch(store, part)
            seq += n
        stores[held], seqs[held], streams[held] = store, seq, stream
    times: dict[int, list[float]] = {1_000: [], 200_000: []}
    for _ in range(rounds):
        for held, store in stores.items():
            part = [
                (topic, signed(dossier_record(kiosk, streams[held], seqs[held] + i + 1)))
                for i in range(256)
            ]
            seqs[held] += 256
            t = time.perf_counter()
            batch(store, part)
            times[held].append(time.perf_counter() - t)
    for store in stores.values():
        store.close()
    return {held: statistics.median(ts) * 1000 for held, ts in times.items()}


STATUS_RSS = """
import resource, sys
from central.cli import main
try:
    main(["status", "--config", sys.argv[1]])
except SystemExit:
    pass
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
print(hwm[0], file=sys.stderr)
"""


def gap_memory(work: Path) -> dict[str, float]:
    """Resident memory of `aps-central status` over streams gapped by 10^8 and up to 2^63-1."""
    db = work / "gaps.db"
    parked = SQLiteStore(db)  # default [collector] max_seq_jump: the far seq is parked
    stream = new_stream_id()
    kiosk, topic = "bench-gap", records_topic("bench-gap")
    parked_out = batch(
        parked,
        [
            (topic, signed(dossier_record(kiosk, stream, 1))),
            (topic, signed(dossier_record(kiosk, stream, MAX_SEQ))),
        ],
    )
    parked.close()
    lifted = SQLiteStore(db, max_seq_jump=MAX_SEQ)  # limit lifted: the gaps really exist
    other = new_stream_id()
    batch(
        lifted,
        [
            (topic, signed(dossier_record(kiosk, other, 1))),
            (topic, signed(dossier_record(kiosk, other, 10**8 + 2))),
            (topic, signed(dossier_record(kiosk, other, MAX_SEQ))),
        ],
    )
    [state] = [s for s in lifted.streams(kiosk) if s.stream == other]
    lifted.close()
    cfg = work / "gaps.toml"
    cfg.write_text(f'[central]\ndatabase = "{db}"\n')
    out = subprocess.run(
        [sys.executable, "-c", STATUS_RSS, str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    json.loads(out.stdout)
    rss_kib = int(out.stderr.strip().splitlines()[-1])
    return {
        "parked": float(parked_out.outcome.parked),
        "missing": float(state.missing_count),
        "ranges": float(state.gap_count),
        "status_rss_mib": rss_kib / 1024,
    }


def _collector_counts(text: str) -> list[int]:
    counts = [int(x) for x in text.split(",")]
    if not counts or any(c not in (1, 2) for c in counts):
        raise argparse.ArgumentTypeError("--collectors: 1, 2 or 1,2")
    return counts


def rate_rounds(
    work: Path, args: argparse.Namespace, pg_wanted: bool
) -> dict[int, list[dict[str, float]]]:
    """``--repeat`` rounds of every collector count, the order alternated each round."""
    runs: dict[int, list[dict[str, float]]] = {c: [] for c in args.collectors}
    for r in range(args.repeat):
        order = args.collectors if r % 2 == 0 else list(reversed(args.collectors))
        for c in order:
            run_dir = work / f"rate-{r}-{c}"
            run_dir.mkdir()
            if pg_wanted:
                with PgDatabase() as pg:
                    out = ingest_rate(
                        run_dir,
                        args.kiosks,
                        args.records,
                        args.batch_max,
                        batch_wait_ms=args.batch_wait_ms,
                        collectors=c,
                        pg=pg,
                    )
            else:
                out = ingest_rate(
                    run_dir,
                    args.kiosks,
                    args.records,
                    args.batch_max,
                    batch_wait_ms=args.batch_wait_ms,
                    collectors=c,
                )
            runs[c].append(out)
            print(
                f"round {r + 1} {args.store} x{c}: {out['ours']:,.0f} records/s "
                f"(bare {out['bare']:,.0f} msg/s, ratio {out['ours'] / out['bare']:.2f}; "
                f"{out['cpu_us_ours']:.0f} µs CPU/record in the collectors"
                + (
                    f", {out['cpu_us_pg']:.0f} in PostgreSQL; about "
                    f"{out['records_per_commit']:.0f} records per commit"
                    if pg_wanted
                    else ""
                )
                + ")",
                flush=True,
            )
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kiosks", type=int, default=200)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=15, help="interleaved batches per store")
    ap.add_argument("--batch-max", type=int, default=None, help="[collector] batch_max")
    ap.add_argument("--batch-wait-ms", type=int, default=None, help="[collector] batch_wait_ms")
    ap.add_argument("--dir", default=None, help="Directory for the databases (default: a temp dir)")
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
        help="aps-central run processes in one shared group: 1, 2, or 1,2 (both, alternated)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="rate rounds (order alternated)")
    ap.add_argument(
        "--rate-only",
        action="store_true",
        help="skip the SQLite batch-cost and gap-memory parts",
    )
    args = ap.parse_args()
    pg_wanted = args.store == "postgresql"
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        runs = rate_rounds(work, args, pg_wanted)
        extra = not args.rate_only
        if extra:
            cost = batch_cost(work, args.rounds)
            mem = gap_memory(work)

    def med(c: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[c])

    first = runs[args.collectors[0]][0]
    print(
        f"records: {args.records} from {args.kiosks} kiosks, payload {first['payload']:.0f} bytes"
    )
    print(
        f"publisher: {args.kiosks + len(args.collectors)} kiosk identities enrolled in "
        f"{first['enrol_s']:.1f} s; {args.kiosks} TLS connections (one per kiosk) up in "
        f"{first['connect_s']:.1f} s"
    )
    print(f"published (PUBACKs)           : {first['published']:,.0f} msg/s")
    for c in args.collectors:
        print(
            f"bare paho subscriber (x{c} run) : {med(c, 'bare'):,.0f} msg/s, "
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
        "bench": "central_ingest",
        "store": args.store,
        "collectors": main_c,
        "value": round(ours, 1),
        "unit": "records/s",
        "baseline": round(bare, 1),
        "ratio": round(ours / bare, 3),
        "cpu_us_per_record": round(med(main_c, "cpu_us_ours"), 1),
    }
    if pg_wanted:
        result["pg_cpu_us_per_record"] = round(med(main_c, "cpu_us_pg"), 1)
        result["records_per_commit"] = round(med(main_c, "records_per_commit"), 1)
    if len(args.collectors) == 2:
        one, two = med(1, "ours"), med(2, "ours")
        print(f"two collectors / one          : {two / one:.2f}x")
        result["x1"] = round(one, 1)
        result["x2"] = round(two, 1)
        result["scaling"] = round(two / one, 3)
    if extra:
        print(
            f"256-record batch, median of {args.rounds}: {cost[1_000]:.1f} ms with 1,000 held, "
            f"{cost[200_000]:.1f} ms with 200,000 held ({cost[200_000] / cost[1_000]:.2f}x)"
        )
        print(
            f"seq 2^63-1 after seq 1: parked {mem['parked']:.0f}; with the limit lifted, "
            f"{mem['missing']:.3g} seqs missing in {mem['ranges']:.0f} ranges; "
            f"aps-central status max RSS {mem['status_rss_mib']:.0f} MiB"
        )
        result["batch_ms_1k"] = round(cost[1_000], 2)
        result["batch_ms_200k"] = round(cost[200_000], 2)
        result["status_rss_mib"] = round(mem["status_rss_mib"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
