"""One filing through the kiosk application, against the bare outbox insert.

Ours: what a citizen's "Nộp hồ sơ" costs in :class:`edge_agent.app.KioskApp`:
the card's identity already in the session, ``filing.prepare`` (normalising,
form and schema checks, fee, the hash to sign), ``filing.file`` (dossier
code, due date, dossier row + outbox record + confirmation row in one
``synchronous=FULL`` transaction) and the receipt rendered and sent to the
emulated USB printer (python-escpos through pyusb), then ``confirm_shown``.
With ``--sign`` the citizen also signs by hand (strokes JSON + PNG rendered and
stored as two attachments). Baseline, same run, same disk: raw ``sqlite3``
inserting the same size of envelope as one row per transaction with the same
durability. A third contender, the same filing on a kiosk without a printer,
shows how much of it is the slip (raster and QR rendering, USB transfer).

How: both contenders get their own database, warmed with ``--warm`` filings;
then they take turns one by one (the order rotates), so a burst of slow
fsyncs hits both alike. What is timed is the call alone; emptying the
emulated printer's buffer and preparing the baseline's envelope are not.

Last line: {"bench", "value", "unit", "baseline", "ratio", "p99", "p99_baseline"}.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from drivers.identity import Identity
from edge_agent.app import KioskApp
from edge_agent.config import AgentConfig
from edge_agent.devices import DeviceSupervisor
from edge_agent.signature import HandwrittenSignature
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from sync.envelope import Record
from sync.ids import new_stream_id, new_ulid

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FORM = {"muc_dich": "Đăng ký kết hôn", "tinh_trang": "Chưa kết hôn"}
CARD = Identity(
    id_number="087205000123",
    old_id_number=None,
    full_name="Nguyễn Thị Ngọc Hường",
    date_of_birth=datetime(1990, 5, 17).date(),
    sex="F",
    address="Phường 1, TP. Sa Đéc, Đồng Tháp",
    issue_date=datetime(2021, 8, 15).date(),
    expiry_date=None,
    document_number=None,
    nationality=None,
    source="qr",
)
STROKES = [[[20 + 12 * i, 80 + (25 if i % 2 else -25), 40 * i] for i in range(20)]]


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def app_op(
    d: Path, sign: bool, *, printer: bool = True
) -> tuple[Callable[[], Callable[[], object]], Callable[[], None]]:
    cfg = AgentConfig.model_validate(
        {
            "kiosk": {"id": "bench-k01", "agency": "000.00.14.H56", "slot": 1},
            "agent": {"database": str(d / "kiosk.db"), "receipts_dir": str(d / "spool")},
            "devices": {"printer": "usb://04b8:0e15" if printer else ""},
            "payment": {"bank_bin": "970436", "account": "0011002345678", "beneficiary": "UBND"},
            "sync": {"min_free_disk_mb": 0},
        }
    )
    usb = EmulatedUsbPrinter()
    devices = DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb)
    app = KioskApp(cfg, devices=devices)  # not started: no sync, no device threads
    signature = HandwrittenSignature.from_strokes(STROKES, width=400, height=160)
    start = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
    count = [0]

    def op() -> Callable[[], object]:
        usb.take_received()  # untimed: the printer's buffer would only grow
        now = start + timedelta(days=count[0] // 900)  # 999 codes per kiosk per day
        count[0] += 1
        app.identify(CARD)

        def run() -> object:
            prepared = app.filing.prepare("1.004873", FORM, phone="0912345678")
            result = app.filing.file(prepared, signature=signature if sign else None, now=now)
            if printer and not result.receipt.printed:
                raise RuntimeError(f"receipt not printed: {result.receipt}")
            app.filing.confirm_shown(result.code)
            return result

        return run

    return op, app.stop


def raw_op(d: Path) -> tuple[Callable[[], Callable[[], object]], Callable[[], None]]:
    conn = sqlite3.connect(str(d / "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, payload BLOB)")
    stream = new_stream_id()
    body: dict[str, Any] = {
        "code": "000.00.14.H56-261201-1001",
        "procedure": "1.004873",
        "form": FORM,
        "applicant": {"full_name": CARD.full_name, "id_number": CARD.id_number},
    }
    count = [0]

    def op() -> Callable[[], object]:
        count[0] += 1
        seq, rid = count[0], new_ulid()
        payload = Record(
            kind="dossier",
            kiosk="bench-k01",
            stream=stream,
            seq=seq,
            id=rid,
            created="2026-11-26T09:00:00+07:00",
            body=body,
        ).encode()

        def run() -> object:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (seq, id, payload) VALUES (?, ?, ?)", (seq, rid, payload))
            return conn.execute("COMMIT")

        return run

    return op, conn.close


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=300, help="timed filings per contender")
    ap.add_argument("--warm", type=int, default=30, help="untimed filings first, per contender")
    ap.add_argument("--sign", action="store_true", help="the citizen signs by hand too")
    ap.add_argument("--dir", default=None, help="Directory for the databases (default: temp)")
    args = ap.parse_args()
    names = ["raw", "app", "noprint"]
    times: dict[str, list[float]] = {k: [] for k in names}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        for name in names:
            (d / name).mkdir()
        ops = {
            "raw": raw_op(d / "raw"),
            "app": app_op(d / "app", args.sign),
            "noprint": app_op(d / "noprint", args.sign, printer=False),
        }
        for _ in range(args.warm):
            for name in names:
                ops[name][0]()()
        for i in range(args.records):
            for name in names[i % 3 :] + names[: i % 3]:
                run = ops[name][0]()
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        for _, close in ops.values():
            close()
    ms = 1000.0
    p50 = {k: pct(v, 0.5) * ms for k, v in times.items()}
    p99 = {k: pct(v, 0.99) * ms for k, v in times.items()}
    what = "filing + handwritten signature" if args.sign else "filing"
    print(f"{args.records} of each after {args.warm} warm-up, interleaved one by one")
    print(f"raw sqlite3 insert+commit    : p50 {p50['raw']:.3f} ms  p99 {p99['raw']:.3f} ms")
    print(f"KioskApp {what:<20}: p50 {p50['app']:.3f} ms  p99 {p99['app']:.3f} ms")
    print(
        f"  of which without the slip  : p50 {p50['noprint']:.3f} ms  "
        f"p99 {p99['noprint']:.3f} ms (no printer configured)"
    )
    print(
        json.dumps(
            {
                "bench": "file_dossier_signed" if args.sign else "file_dossier",
                "value": round(p50["app"], 4),
                "unit": "ms p50",
                "baseline": round(p50["raw"], 4),
                "ratio": round(p50["app"] / p50["raw"], 3),
                "p99": round(p99["app"], 4),
                "p99_baseline": round(p99["raw"], 4),
                "no_slip_p50": round(p50["noprint"], 4),
                "no_slip_ratio": round(p50["noprint"] / p50["raw"], 3),
                "records": args.records,
            }
        )
    )


if __name__ == "__main__":
    main()
