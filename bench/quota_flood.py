"""How fast one flooding kiosk grows central's database, with and without limits.

One raw paho publisher, an enrolled kiosk on its own mutual-TLS identity
(the shipped broker configuration lets only a kiosk publish on its ``up/``
topics), floods ``aps/v1/<kiosk>/up/records`` for ``--seconds`` with garbage
(``--garbage``: random bytes, which become dead letters) or with valid
dossier records, while a collector (a collector identity of its own on the
local listener) stores what it takes. Ours: the collector with the default
``[quotas]`` limits. Baseline, same run, same broker, same flood: the
collector without limits (central before issue 6). The baseline runs first;
its persistent session is then cleared, so the broker does not queue the
second flood for it. Growth is measured on the database files (main + WAL)
over the flood.
Last line: {"bench", "value", "unit", "baseline", "ratio"} (MB/s of growth).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.quotas import Quotas, QuotaSettings
from central.store import SQLiteStore
from sync.envelope import Record, records_topic
from sync.ids import new_stream_id, new_ulid
from sync.mqtt_link import make_paho_client
from sync.schemas import FORM_VALUE_CHARS
from tests import identity as keyring

KIOSK = "bench-flood-k01"


def db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def flood_of(garbage: bool, size: int) -> Callable[[int], bytes]:
    """The i-th message of the flood: random junk, or a new valid record each time."""
    if garbage:  # new junk every time, as an attacker would send (no two alike)
        return lambda i: os.urandom(size)
    # Valid records of about ``size`` bytes: dossiers whose form fills the size with
    # values of up to FORM_VALUE_CHARS (the shared schema's support message stops at
    # 4,000 characters and its topic at 100, so a 16 KiB support record is refused).
    stream = new_stream_id()
    n_full, rest = divmod(max(1, size - 600), FORM_VALUE_CHARS)
    form = {f"truong_{k:02d}": "x" * FORM_VALUE_CHARS for k in range(n_full)}
    if rest:
        form[f"truong_{n_full:02d}"] = "x" * rest

    def record(i: int) -> bytes:
        return Record(
            kind="dossier",
            kiosk=KIOSK,
            stream=stream,
            seq=i + 1,
            id=new_ulid(),
            created="2026-12-01T09:00:00+07:00",
            body={
                "code": f"000.00.14.H56-261201-{i % 10000:04d}",
                "procedure": "1.004873",
                "form": form,
                "applicant": {"full_name": "Nguyễn Thị Ngọc Hường", "id_number": "087205000123"},
                "attachments": [],
            },
        ).encode()

    return record


def run(
    broker: MosquittoProcess,
    db: Path,
    quotas: Quotas | None,
    flood: Callable[[int], bytes],
    seconds: float,
) -> float:
    name = f"aps-bench-c-{db.stem}"  # a collector identity, its client id bound to it
    login = broker.collector(name)
    collector = Collector(
        store_factory=lambda: SQLiteStore(db),
        mqtt_settings=login,
        settings=CollectorSettings(client_id=name),
        quotas=quotas,
        **keyring.CENTRAL,
    )
    collector.start()
    deadline = time.monotonic() + 30
    while not collector.network.connected.is_set():
        if time.monotonic() > deadline:
            raise SystemExit("collector did not connect")
        time.sleep(0.05)
    kiosk = broker.kiosk(KIOSK)
    pub = make_paho_client(KIOSK, kiosk)
    pub.max_inflight_messages_set(500)
    pub.connect("127.0.0.1", kiosk.port)
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
    # Drop the stopped collector's persistent session: the broker would otherwise
    # queue the next run's flood for it too, and work for two.
    forgotten = threading.Event()
    forget = make_paho_client(name, login, clean_session=True)
    forget.on_connect = lambda *a: forgotten.set()
    forget.connect("127.0.0.1", login.port)
    forget.loop_start()
    if not forgotten.wait(30):
        raise SystemExit(f"collector {name}: could not clear its session")
    forget.disconnect()
    forget.loop_stop()
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
        base = run(broker, Path(tmp) / "unlimited.db", None, flood, args.seconds)
        ours = run(broker, Path(tmp) / "limited.db", Quotas(QuotaSettings()), flood, args.seconds)
    what = "garbage" if args.garbage else "valid records"
    print(f"flood of {what}, {len(flood(0))} bytes each, {args.seconds:.0f} s per collector")
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
