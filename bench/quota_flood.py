"""How fast one flooding kiosk grows central's database, with and without limits.

One raw paho publisher floods ``aps/v1/<kiosk>/up/records`` for ``--seconds``
with garbage (``--garbage``: random bytes, which become dead letters) or with
valid rating records, while a collector stores what it takes. Ours: the
collector with the default ``[quotas]`` limits. Baseline, same run, same
broker, same flood: the collector without limits (central before issue 6).
Growth is measured on the database files (main + WAL) over the flood.
Last line: {"bench", "value", "unit", "baseline", "ratio"} (MB/s of growth).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.quotas import Quotas, QuotaSettings
from central.store import SQLiteStore
from sync.envelope import records_topic
from sync.ids import new_stream_id, new_ulid
from sync.mqtt_link import MqttSettings

KIOSK = "bench-flood-k01"


def db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def flood_of(garbage: bool, size: int) -> Callable[[int], bytes]:
    """The i-th message of the flood: random junk, or a new valid record each time."""
    if garbage:  # new junk every time, as an attacker would send (no two alike)
        return lambda i: os.urandom(size)
    stream, text = new_stream_id(), "x" * min(size, 3900)  # support messages: <= 4,000 chars

    def record(i: int) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "type": "record",
                "kind": "support",
                "kiosk": KIOSK,
                "stream": stream,
                "seq": i + 1,
                "id": new_ulid(),
                "created": "2026-12-01T09:00:00+07:00",
                "body": {"message": text, "topic": "y" * max(0, size - 3900)},
            }
        ).encode()

    return record


def run(
    port: int, db: Path, quotas: Quotas | None, flood: Callable[[int], bytes], seconds: float
) -> float:
    collector = Collector(
        store_factory=lambda: SQLiteStore(db),
        mqtt_settings=MqttSettings(port=port),
        settings=CollectorSettings(client_id=f"bench-c-{db.stem}"),
        quotas=quotas,
    )
    collector.start()
    deadline = time.monotonic() + 30
    while not collector.network.connected.is_set():
        if time.monotonic() > deadline:
            raise SystemExit("collector did not connect")
        time.sleep(0.05)
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="flooder")
    pub.max_inflight_messages_set(500)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    start_bytes = db_bytes(db)
    t0 = time.monotonic()
    i = 0
    try:
        while time.monotonic() - t0 < seconds:
            info = pub.publish(records_topic(KIOSK), flood(i), qos=1)
            i += 1
            if i % 200 == 0:
                info.wait_for_publish(30)
    finally:
        pub.loop_stop()
        pub.disconnect()
    elapsed = time.monotonic() - t0
    grown = db_bytes(db) - start_bytes
    collector.stop()
    return grown / elapsed / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--garbage", action="store_true", help="random bytes instead of records")
    ap.add_argument("--size", type=int, default=16 * 1024, help="bytes per message")
    args = ap.parse_args()
    flood = flood_of(args.garbage, args.size)
    with (
        tempfile.TemporaryDirectory(prefix="aps-bench-flood-") as tmp,
        MosquittoProcess(Path(tmp) / "broker") as broker,
    ):
        base = run(broker.port, Path(tmp) / "unlimited.db", None, flood, args.seconds)
        ours = run(
            broker.port, Path(tmp) / "limited.db", Quotas(QuotaSettings()), flood, args.seconds
        )
    what = "garbage" if args.garbage else "valid records"
    print(f"flood of {what}, {args.size} bytes each, {args.seconds:.0f} s per collector")
    print(f"central.db growth without limits : {base:8.2f} MB/s")
    print(f"central.db growth, default quotas: {ours:8.2f} MB/s")
    print(
        json.dumps(
            {
                "bench": f"quota_flood_{'garbage' if args.garbage else 'records'}",
                "value": round(ours, 3),
                "unit": "MB/s of central.db growth",
                "baseline": round(base, 3),
                "ratio": round(ours / base, 4) if base else None,
            }
        )
    )


if __name__ == "__main__":
    main()
