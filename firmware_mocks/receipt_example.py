"""Print the documentation's example receipt and draw it: ``docs/img/receipt-example.png``.

The receipt goes the whole real way: :class:`drivers.printer.ReceiptPrinter` on
``usb://04b8:0e15`` -> python-escpos ``Usb`` -> pyusb -> the emulated printer
(:mod:`firmware_mocks.usb_printer`); the bytes the printer received are drawn by
:mod:`firmware_mocks.escpos_render`.

    python -m firmware_mocks.receipt_example docs/img/receipt-example.png [--bin out.bin]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from drivers.printer import ReceiptPrinter
from drivers.receipt import ReceiptData
from drivers.vietqr import build_payload
from firmware_mocks.escpos_render import render
from firmware_mocks.usb_printer import EmulatedUsbPrinter

EXAMPLE_CODE = "000.00.14.H56-261126-0042"


def example_receipt(paper_width_mm: int = 80) -> ReceiptData:
    """A receipt whose texts use every Vietnamese tone mark."""
    return ReceiptData(
        office_name="UBND phường Đặng Quốc Việt — Bộ phận Một cửa",
        procedure_name="Cấp bản sao trích lục hộ tịch",
        dossier_code=EXAMPLE_CODE,
        citizen_name="Nguyễn Thị Ngọc Hường",
        id_number="001234567890",
        filed_at=datetime(2026, 11, 26, 14, 5),
        due=datetime(2026, 11, 27, 16, 0),
        fee_vnd=8000,
        tracking_url_or_code="https://dichvucong.example.vn/tra-cuu?ma=" + EXAMPLE_CODE,
        payment=build_payload("970436", "0011002345678", 8000, "HS " + EXAMPLE_CODE),
        hotline="1900 1234",
        paper_width_mm=80 if paper_width_mm == 80 else 58,
    )


def print_example(paper_width_mm: int = 80) -> bytes:
    """The bytes the emulated USB printer received for :func:`example_receipt`."""
    device = EmulatedUsbPrinter()
    with tempfile.TemporaryDirectory() as spool:
        printer = ReceiptPrinter("usb://04b8:0e15", spool_dir=Path(spool), usb_backend=device)
        printer.print_receipt(example_receipt(paper_width_mm))
        printer.close()
    return device.take_received()


def main(argv: Sequence[str] | None = None) -> int:
    """Write the example receipt as PNG (and optionally the raw bytes)."""
    parser = argparse.ArgumentParser(description="Render the example receipt.")
    parser.add_argument("png", type=Path)
    parser.add_argument("--bin", type=Path, default=None, help="also write the ESC/POS bytes")
    parser.add_argument("--paper", type=int, choices=(80, 58), default=80)
    args = parser.parse_args(argv)
    data = print_example(args.paper)
    if args.bin is not None:
        args.bin.write_bytes(data)
    render(data, width_px=576 if args.paper == 80 else 384).image.save(args.png, optimize=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
