"""Filing a dossier durably on the kiosk: p50/p99 latency against raw sqlite3.

Ours: ``Outbox.add()``, the durable enqueue of a dossier record (limits
checked, seq and ULID given, envelope encoded, one WAL transaction with
synchronous=FULL); also printed: ``DossierDesk.file()``, the whole filing
(form validation, dossier code, due date, dossier row + outbox record in one
transaction). Baseline, same run, same disk: raw ``sqlite3`` inserting the same
encoded envelope as one row per transaction with the same durability.
Last line: {"bench", "value", "unit", "baseline", "ratio"} for Outbox.add
(ratio = ours/raw p50).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
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


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def bench_ours(d: Path, n: int) -> list[float]:
    ob = Outbox(d / "ours.db", "bench-k01", min_free_disk_bytes=0)
    desk = DossierDesk(
        ob,
        bundled_catalogue(),
        WorkCalendar(OfficeRules()),
        agency="000.00.14.H56",
        slot=0,
        tz=ZoneInfo("Asia/Ho_Chi_Minh"),
    )
    out = []
    start = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    for i in range(n):
        now = start + timedelta(days=i // 900)  # 999 codes per kiosk per day
        t0 = time.perf_counter()
        desk.file("1.004873", APPLICANT, FORM, now=now)
        out.append(time.perf_counter() - t0)
    ob.close()
    return out


def bench_outbox(d: Path, n: int) -> list[float]:
    ob = Outbox(d / "outbox.db", "bench-k01", min_free_disk_bytes=0)
    body = {"form": FORM, "applicant": {"full_name": APPLICANT.full_name}}
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        ob.add("dossier", body)
        out.append(time.perf_counter() - t0)
    ob.close()
    return out


def bench_raw(d: Path, n: int) -> list[float]:
    conn = sqlite3.connect(str(d / "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, payload BLOB)")
    stream = new_stream_id()
    out = []
    for i in range(1, n + 1):
        payload = Record(
            kind="dossier",
            kiosk="bench-k01",
            stream=stream,
            seq=i,
            id=new_ulid(),
            created="2026-11-26T09:00:00+07:00",
            body={"form": FORM, "applicant": {"full_name": APPLICANT.full_name}},
        ).encode()
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (seq, id, payload) VALUES (?, ?, ?)", (i, new_ulid(), payload))
        conn.execute("COMMIT")
        out.append(time.perf_counter() - t0)
    conn.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="Directory for the databases (default: a temp dir)")
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"raw": [], "outbox": [], "desk": []}
    benches = {"raw": bench_raw, "outbox": bench_outbox, "desk": bench_ours}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        (d / "warm").mkdir()
        bench_raw(d / "warm", 100)  # warm-up of the file system
        # Interleave quarters so a noisy neighbour hits all three alike.
        part = args.records // 4
        for q in range(4):
            for name, fn in benches.items():
                sub = d / f"{name}{q}"
                sub.mkdir()
                runs[name] += fn(sub, part)
    ms = 1000.0
    stats = {
        k: (pct(v, 0.5) * ms, pct(v, 0.99) * ms, statistics.mean(v) * ms) for k, v in runs.items()
    }
    labels = {
        "raw": "raw sqlite3 insert+commit",
        "outbox": "Outbox.add() (the enqueue)",
        "desk": "DossierDesk.file() (whole filing)",
    }
    print(f"records: {len(runs['raw'])} of each, WAL + synchronous=FULL, one commit each")
    for k, (p50, p99, mean) in stats.items():
        print(f"{labels[k]:<36}: p50 {p50:.3f} ms  p99 {p99:.3f} ms  mean {mean:.3f} ms")
    r50 = stats["raw"][0]
    print(f"p50 ratio Outbox.add / raw        : {stats['outbox'][0] / r50:.2f}")
    print(f"p50 ratio DossierDesk.file / raw  : {stats['desk'][0] / r50:.2f}")
    print(f"p99 ratio DossierDesk.file / raw  : {stats['desk'][1] / stats['raw'][1]:.2f}")
    o50 = stats["outbox"][0]
    print(
        json.dumps(
            {
                "bench": "outbox_enqueue",
                "value": round(o50, 4),
                "unit": "ms p50",
                "baseline": round(r50, 4),
                "ratio": round(o50 / r50, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
