"""Filing a dossier durably on the kiosk: latency and bytes written, against raw sqlite3.

Ours: ``Outbox.add()``, the durable enqueue of a dossier record (limits
checked, seq and ULID given, envelope encoded, one WAL transaction with
synchronous=FULL); also measured: ``DossierDesk.file()``, the whole filing
(form validation, dossier code, due date, dossier row + outbox record in one
transaction). Baseline, same run, same disk: raw ``sqlite3`` inserting the same
encoded envelope as one row per transaction with the same durability.

How: each contender gets its own database, warmed with ``--warm`` records
first (a kiosk's database is never empty, and the first pages of a new file
cost differently). Then the contenders take turns **record by record**, in
an order that rotates every round, so a burst of slow fsyncs from a noisy
neighbour hits all three alike. Bytes written are this process's
``write_bytes`` from /proc/self/io (what reaches the block layer: SD-card
wear), read before and after each operation, outside the timed part; CPU is
this process's CPU time per operation (``time.process_time``), which a slow
fsync does not inflate.

Last line: {"bench", "value", "unit", "baseline", "ratio"} for Outbox.add
(ratio = ours/raw p50), plus the whole filing's ratio and both write ratios.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from edge_agent.catalogue import bundled_catalogue
from edge_agent.dossiers import Applicant, DossierDesk
from edge_agent.due_date import OfficeRules, WorkCalendar
from sync.envelope import Record
from sync.ids import new_stream_id, new_ulid
from sync.outbox import Outbox

FORM = {"muc_dich": "Đăng ký kết hôn", "tinh_trang": "Chưa kết hôn"}
APPLICANT = Applicant(
    full_name="Nguyễn Thị Ngọc Hường", id_number="087205000123", phone="0912345678"
)
# What DossierDesk.file() queues for this filing (a body central accepts).
BODY = {
    "code": "000.00.14.H56-261201-1001",
    "procedure": "1.000894",
    "procedure_version": 1,
    "form": FORM,
    "applicant": {
        "full_name": APPLICANT.full_name,
        "id_number": APPLICANT.id_number,
        "phone": APPLICANT.phone,
    },
    "fee_vnd": 0,
    "received_at": "2026-12-01T09:00:00+07:00",
    "due": "2026-12-01T17:00+07:00",
    "due_rule": "same-day",
    "attachments": [],
}
TZ = ZoneInfo("Asia/Ho_Chi_Minh")

#: Prepares one operation (untimed) and returns it, ready to be timed.
Op = Callable[[], Callable[[], object]]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def write_bytes() -> int:
    """Bytes this process has caused to be written to storage so far."""
    with open("/proc/self/io", "rb") as f:
        for line in f:
            if line.startswith(b"write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def desk_op(d: Path) -> tuple[Op, Callable[[], None]]:
    ob = Outbox(d / "desk.db", "bench-k01", min_free_disk_bytes=0)
    desk = DossierDesk(
        ob,
        bundled_catalogue(),
        WorkCalendar(OfficeRules()),
        agency="000.00.14.H56",
        slot=0,
        tz=TZ,
    )
    start = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
    count = [0]

    def op() -> Callable[[], object]:
        now = start + timedelta(days=count[0] // 900)  # 999 codes per kiosk per day
        count[0] += 1
        return lambda: desk.file("1.004873", APPLICANT, FORM, now=now)

    return op, ob.close


def outbox_op(d: Path) -> tuple[Op, Callable[[], None]]:
    ob = Outbox(d / "outbox.db", "bench-k01", min_free_disk_bytes=0)
    return (lambda: lambda: ob.add("dossier", BODY)), ob.close


def raw_op(d: Path) -> tuple[Op, Callable[[], None]]:
    conn = sqlite3.connect(str(d / "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, payload BLOB)")
    stream = new_stream_id()
    count = [0]

    def op() -> Callable[[], object]:
        # The envelope is made before the clock starts: the baseline is the
        # database work alone.
        count[0] += 1
        rid = new_ulid()
        payload = Record(
            kind="dossier",
            kiosk="bench-k01",
            stream=stream,
            seq=count[0],
            id=rid,
            created="2026-11-26T09:00:00+07:00",
            body=BODY,
        ).encode()
        seq = count[0]
        return lambda: _raw_insert(conn, seq, rid, payload)

    return op, conn.close


def _raw_insert(conn: sqlite3.Connection, seq: int, rid: str, payload: bytes) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t (seq, id, payload) VALUES (?, ?, ?)", (seq, rid, payload))
    conn.execute("COMMIT")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=2000, help="timed records per contender")
    ap.add_argument("--warm", type=int, default=500, help="untimed records first, per contender")
    ap.add_argument("--dir", default=None, help="Directory for the databases (default: a temp dir)")
    args = ap.parse_args()
    names = ["raw", "outbox", "desk"]
    labels = {
        "raw": "raw sqlite3 insert+commit",
        "outbox": "Outbox.add() (the enqueue)",
        "desk": "DossierDesk.file() (whole filing)",
    }
    times: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    written: dict[str, int] = dict.fromkeys(names, 0)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        makers = {"raw": raw_op, "outbox": outbox_op, "desk": desk_op}
        ops: dict[str, Op] = {}
        closers = []
        for name in names:
            (d / name).mkdir()
            op, close = makers[name](d / name)
            ops[name] = op
            closers.append(close)
        for _ in range(args.warm):
            for name in names:
                ops[name]()()
        for i in range(args.records):
            order = names[i % 3 :] + names[: i % 3]
            for name in order:
                run = ops[name]()
                w0 = write_bytes()
                c0 = time.process_time()
                t0 = time.perf_counter()
                run()
                t1 = time.perf_counter()
                cpu[name] += time.process_time() - c0
                written[name] += write_bytes() - w0
                times[name].append(t1 - t0)
        for close in closers:
            close()
        db_bytes = {k: sum(f.stat().st_size for f in (d / k).iterdir()) for k in names}
    ms = 1000.0
    n = args.records
    stats = {
        k: (pct(v, 0.5) * ms, pct(v, 0.99) * ms, statistics.mean(v) * ms) for k, v in times.items()
    }
    per = {k: written[k] / n for k in names}
    print(
        f"records: {n} of each after {args.warm} warm-up, interleaved one by one, "
        "WAL + synchronous=FULL, one commit each"
    )
    for k in names:
        p50, p99, mean = stats[k]
        print(
            f"{labels[k]:<36}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  mean {mean:.3f} ms"
            f"  CPU {cpu[k] / n * 1e6:.0f} µs/op  written {per[k] / 1024:.1f} KiB/op"
            f"  file {db_bytes[k] / (n + args.warm):.0f} B/record"
        )
    r50 = stats["raw"][0]
    add_ratio = stats["outbox"][0] / r50
    file_ratio = stats["desk"][0] / r50
    print(f"p50 ratio Outbox.add / raw        : {add_ratio:.2f}")
    print(f"p50 ratio DossierDesk.file / raw  : {file_ratio:.2f}")
    print(f"p99 ratio DossierDesk.file / raw  : {stats['desk'][1] / stats['raw'][1]:.2f}")
    w_add = per["outbox"] / per["raw"] if per["raw"] else float("nan")
    w_file = per["desk"] / per["raw"] if per["raw"] else float("nan")
    print(f"CPU ratio Outbox.add / raw        : {cpu['outbox'] / cpu['raw']:.2f}")
    print(f"CPU ratio DossierDesk.file / raw  : {cpu['desk'] / cpu['raw']:.2f}")
    print(f"bytes written Outbox.add / raw    : {w_add:.2f}")
    print(f"bytes written file() / raw        : {w_file:.2f}")
    print(
        json.dumps(
            {
                "bench": "outbox_enqueue",
                "value": round(stats["outbox"][0], 4),
                "unit": "ms p50",
                "baseline": round(r50, 4),
                "ratio": round(add_ratio, 3),
                "file_ratio": round(file_ratio, 3),
                "cpu_ratio_add": round(cpu["outbox"] / cpu["raw"], 3),
                "cpu_ratio_file": round(cpu["desk"] / cpu["raw"], 3),
                "write_bytes_per_filing": round(per["desk"]),
                "write_bytes_raw": round(per["raw"]),
                "write_ratio_add": round(w_add, 3),
                "write_ratio_file": round(w_file, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
