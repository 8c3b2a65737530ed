"""Bench: "print this receipt" to the last receipt byte on the emulated USB printer.

Measured: ``ReceiptPrinter.print_receipt(data)`` on ``usb://04b8:0e15`` through
python-escpos's real ``Usb`` class and pyusb, on the emulated printer
(firmware_mocks.usb_printer), from the call to the moment the last receipt byte
(the cut command) arrives at the printer. That includes rendering, encoding,
spooling the bytes to disk (fsync) and the status poll before printing.

Baseline, measured in the same run: python-escpos printing the same receipt
straight to an ``escpos.printer.Dummy`` (``emit_receipt(Dummy(), data)``):
the same rendering and encoding, no transport, status or spool.

Prints the figures, then, as the last line, one JSON object:
``{"bench": "print_receipt", "value": X, "unit": "ms", "baseline": B, "ratio": X/B}``
(medians). Target: ratio <= 2.

    python bench/print_receipt.py [--runs 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from escpos.printer import Dummy

from drivers.printer import ReceiptPrinter
from drivers.receipt import ReceiptData, emit_receipt
from drivers.vietqr import build_payload
from firmware_mocks.usb_printer import EmulatedUsbPrinter

CODE = "000.00.14.H56-261126-0001"


class TimedPrinter(EmulatedUsbPrinter):
    """The emulated printer, noting when each print-data transfer arrived."""

    last_print_byte_at = 0.0

    def bulk_write(self, dev_handle: Any, ep: int, intf: int, data: Any, timeout: int) -> int:
        count = super().bulk_write(dev_handle, ep, intf, data, timeout)
        if len(data) > 3:  # print data, not a DLE EOT status request
            self.last_print_byte_at = time.perf_counter()
        return int(count)


def sample_receipt() -> ReceiptData:
    return ReceiptData(
        office_name="UBND phường Đặng Quốc Việt",
        procedure_name="Cấp bản sao trích lục hộ tịch",
        dossier_code=CODE,
        citizen_name="Nguyễn Thị Ngọc Hường",
        id_number="001234567890",
        filed_at=datetime(2026, 11, 26, 14, 5),
        due=datetime(2026, 11, 28, 16, 0),
        fee_vnd=8000,
        tracking_url_or_code="https://dichvucong.example.vn/tra-cuu?ma=" + CODE,
        payment=build_payload("970436", "0011002345678", 8000, "HS " + CODE),
        hotline="1900 1234",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    data = sample_receipt()
    device = TimedPrinter()
    usb_ms: list[float] = []
    total_ms: list[float] = []
    dummy_ms: list[float] = []
    size = 0
    with tempfile.TemporaryDirectory() as spool:
        printer = ReceiptPrinter("usb://04b8:0e15", spool_dir=Path(spool), usb_backend=device)
        for run in range(args.runs + 3):  # 3 warm-up rounds (font loading, imports)
            start = time.perf_counter()
            printer.print_receipt(data)
            end = time.perf_counter()
            size = len(device.take_received())
            start_dummy = time.perf_counter()
            dummy = Dummy(profile="TM-T20II")
            emit_receipt(dummy, data)
            end_dummy = time.perf_counter()
            if len(dummy.output) != size:
                raise SystemExit("bench: Dummy and USB receipts differ in size")
            if run >= 3:
                usb_ms.append((device.last_print_byte_at - start) * 1000)
                total_ms.append((end - start) * 1000)
                dummy_ms.append((end_dummy - start_dummy) * 1000)
        printer.close()
    value = statistics.median(usb_ms)
    baseline = statistics.median(dummy_ms)
    print(f"receipt: {size} bytes of ESC/POS, {args.runs} runs, medians")
    print(
        f"emulated USB, call -> last receipt byte: {value:.2f} ms "
        f"(min {min(usb_ms):.2f}, max {max(usb_ms):.2f})"
    )
    print(
        f"emulated USB, whole print_receipt() incl. status after: "
        f"{statistics.median(total_ms):.2f} ms"
    )
    print(
        f"baseline python-escpos -> Dummy: {baseline:.2f} ms "
        f"(min {min(dummy_ms):.2f}, max {max(dummy_ms):.2f})"
    )
    print(
        json.dumps(
            {
                "bench": "print_receipt",
                "value": round(value, 3),
                "unit": "ms",
                "baseline": round(baseline, 3),
                "ratio": round(value / baseline, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
