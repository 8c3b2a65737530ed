"""A kiosk back online drains N queued dossiers to central, acks included.

Ours: a SyncClient (in this process) drains an outbox of N dossier records
through a private mosquitto to ``aps-central`` (a separate process, SQLite
store, synchronous=FULL); timed from start until every record is acked on the
kiosk (acks are sent only after central's commit).
Baseline, same run, same broker, same payloads: a raw paho QoS 1 publisher
with the same in-flight window, timed until every PUBACK is back.
Last line: {"bench", "value", "unit", "baseline", "ratio"} (records/s; ratio = ours/raw).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._kiosks import dossier_body
from central.mosquitto import MosquittoProcess, mqtt_toml
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.mqtt_link import MqttSettings, make_paho_client
from sync.outbox import Outbox
from tests import identity as keyring

KIOSK = "bench-k01"


def run_raw(settings: MqttSettings, payloads: list[bytes], window: int) -> float:
    c = make_paho_client("bench-raw", settings)
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)
    done = {"n": 0}
    c.on_publish = lambda *a: done.__setitem__("n", done["n"] + 1)
    c.connect("127.0.0.1", settings.port)
    c.loop_start()
    t0 = time.perf_counter()
    for p in payloads:
        c.publish("aps/v1/bench-raw/up/raw", p, qos=1)
    while done["n"] < len(payloads):
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return elapsed


def run_ours(settings: MqttSettings, kiosk_db: Path, window: int, n: int) -> float:
    client = SyncClient(
        database=kiosk_db,
        kiosk=KIOSK,
        mqtt_settings=settings,
        settings=SyncSettings(
            inflight_window=window,
            ack_timeout_s=30,
            tick_s=0.2,
            reconnect_min_s=0.05,
            reconnect_max_s=0.5,
        ),
        identity=keyring.kiosk_identity(),
    )
    t0 = time.perf_counter()
    client.start()
    while client.counters.acked < n:
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    client.stop()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--window", type=int, default=256)
    args = ap.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        kiosk_db, central_db = d / "kiosk.db", d / "central.db"
        ob = Outbox(kiosk_db, KIOSK, min_free_disk_bytes=0)
        with ob.transaction() as tx:
            for i in range(n):
                tx.add("dossier", dossier_body(i))
        payloads = [p.payload for p in ob.pending(limit=n)]
        ob.close()
        with MosquittoProcess(d / "broker") as broker:
            cfg = d / "central.toml"
            collector = broker.collector()
            keyring.register(central_db, KIOSK)  # central's registry knows the kiosk's key
            cfg.write_text(
                f'[central]\ndatabase = "{central_db}"\n{mqtt_toml(collector)}'
                f'[collector]\nclient_id = "{collector.username}"\n'
                + keyring.write_keys(d / "keys").central_toml()
            )
            central = subprocess.Popen(
                [sys.executable, "-m", "central.cli", "run", "--config", str(cfg)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                while not central_db.exists():
                    time.sleep(0.05)
                time.sleep(1.0)  # let the collector subscribe
                raw_s = run_raw(broker.kiosk("bench-raw"), payloads, args.window)
                ours_s = run_ours(broker.kiosk(KIOSK), kiosk_db, args.window, n)
            finally:
                central.terminate()
                central.wait(10)
        store = SQLiteStore(central_db)
        held = store.count()
        store.close()
    if held != n:
        raise SystemExit(f"central holds {held} records, expected {n}")
    ours_rate, raw_rate = n / ours_s, n / raw_s
    print(f"records: {n}, payload {len(payloads[0])} bytes, window {args.window}")
    print(f"raw paho QoS 1 publish (PUBACKs) : {raw_s:.3f} s  {raw_rate:,.0f} msg/s")
    print(f"APS drain (acked after commit)   : {ours_s:.3f} s  {ours_rate:,.0f} records/s")
    print(f"central holds {held} records, once each")
    print(
        json.dumps(
            {
                "bench": "sync_drain",
                "value": round(ours_rate, 1),
                "unit": "records/s",
                "baseline": round(raw_rate, 1),
                "ratio": round(ours_rate / raw_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
