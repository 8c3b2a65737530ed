"""Filing a dossier durably on the kiosk: p50/p99 latency against raw sqlite3.

Ours: ``DossierDesk.file()`` (form validation, dossier code, due date, the
dossier row and the outbox record in one WAL transaction, synchronous=FULL).
Baseline, same run, same directory: raw ``sqlite3`` inserting the same
encoded envelope as one row per transaction with the same durability.
Last line: {"bench", "value", "unit", "baseline", "ratio"} (ratio = ours/raw p50).
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
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        bench_raw(d, 100)  # warm-up of the file system
        # Interleave halves so a noisy neighbour hits both alike.
        half = args.records // 2
        (d / "r1").mkdir(), (d / "r2").mkdir(), (d / "o1").mkdir(), (d / "o2").mkdir()
        raw = bench_raw(d / "r1", half)
        ours = bench_ours(d / "o1", half)
        raw += bench_raw(d / "r2", half)
        ours += bench_ours(d / "o2", half)
    ms = 1000.0
    r50, r99 = pct(raw, 0.5) * ms, pct(raw, 0.99) * ms
    o50, o99 = pct(ours, 0.5) * ms, pct(ours, 0.99) * ms
    print(f"records: {len(ours)} filings, {len(raw)} raw inserts")
    print(
        f"raw sqlite3 insert+commit : p50 {r50:.3f} ms  p99 {r99:.3f} ms  "
        f"mean {statistics.mean(raw) * ms:.3f} ms"
    )
    print(
        f"DossierDesk.file()        : p50 {o50:.3f} ms  p99 {o99:.3f} ms  "
        f"mean {statistics.mean(ours) * ms:.3f} ms"
    )
    print(f"p99 ratio (ours/raw): {o99 / r99:.2f}")
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
