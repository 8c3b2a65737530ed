"""Receipts after filing: built from the committed dossier, printed only after the commit."""

from __future__ import annotations

import array
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from drivers.printer import ReceiptPrinter
from drivers.receipt import SAME_DAY, TextBlock, layout_receipt
from drivers.vietqr import parse_payload
from edge_agent import CitizenError
from edge_agent.agent import open_desk
from edge_agent.config import AgentConfig
from edge_agent.dossiers import Applicant, DossierDesk
from edge_agent.receipts import build_receipt, file_and_print
from firmware_mocks.escpos_render import render
from firmware_mocks.usb_printer import EmulatedUsbPrinter

ID_NUMBER = "087205012345"
APPLICANT = Applicant(full_name="Đặng Quốc Việt", id_number=ID_NUMBER, phone="0912345678")
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
# procedure code -> a valid form (bundled catalogue)
MARRIAGE = ("1.004873", {"muc_dich": "Đăng ký kết hôn", "tinh_trang": "Chưa kết hôn"})
COPY = ("2.000815", {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 2, "so_ban": 3})
BIRTH = (
    "1.001193",
    {
        "ho_ten_tre": "Trần Gia Bảo",
        "ngay_sinh_tre": "2026-11-20",
        "gioi_tinh_tre": "Nam",
        "noi_sinh": "Bệnh viện Sa Đéc",
        "quan_he": "Cha",
    },
)


def config(tmp_path: Path, **payment: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "kiosk": {
                "id": "k-test",
                "agency": "000.00.14.H56",
                "slot": 1,
                "office_name": "UBND Phường 1, TP. Sa Đéc",
                "hotline": "0277 3861 234",
                "tracking_url": "https://dvc.example.vn/tra-cuu?ma=",
            },
            "agent": {"database": str(tmp_path / "kiosk.db"), "receipts_dir": str(tmp_path / "r")},
            "payment": {"bank_bin": "970436", "account": "0011002345678", **payment},
        }
    )


@pytest.fixture
def cfg(tmp_path: Path) -> AgentConfig:
    return config(tmp_path)


@pytest.fixture
def desk(cfg: AgentConfig) -> Iterator[DossierDesk]:
    d = open_desk(cfg)
    yield d
    d.outbox.close()


class CommitCheckingPrinter(EmulatedUsbPrinter):
    """Looks into the kiosk database, from another connection, when print data arrives."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self.database = database
        self.codes_committed_at_first_byte: list[str] | None = None

    def bulk_write(
        self, dev_handle: Any, ep: int, intf: int, data: array.array[int], timeout: int
    ) -> int:
        payload = bytes(data)
        is_status = len(payload) == 3 and payload[:2] == b"\x10\x04"
        if not is_status and self.codes_committed_at_first_byte is None:
            conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
            rows = conn.execute("SELECT code FROM dossiers").fetchall()
            conn.close()
            self.codes_committed_at_first_byte = [r[0] for r in rows]
        return int(super().bulk_write(dev_handle, ep, intf, data, timeout))


def test_receipt_fields_from_filed_dossier(desk: DossierDesk, cfg: AgentConfig) -> None:
    filed = desk.file(*MARRIAGE[:1], APPLICANT, MARRIAGE[1], now=NOW)
    data = build_receipt(filed, cfg.kiosk, cfg.payment)
    assert data.dossier_code == filed.code
    assert data.due == filed.due and not filed.same_day
    assert data.fee_vnd == 15000
    assert data.tracking_url_or_code == "https://dvc.example.vn/tra-cuu?ma=" + filed.code
    assert data.payment is not None
    qr = parse_payload(data.payment)
    assert (qr.bank_bin, qr.account, qr.amount_vnd) == ("970436", "0011002345678", 15000)
    assert qr.purpose is not None and filed.code in qr.purpose
    texts = [b.value for b in layout_receipt(data).blocks if isinstance(b, TextBlock)]
    assert "********2345" in texts
    assert not any(ID_NUMBER in t for t in texts)
    assert data.office_name == "UBND Phường 1, TP. Sa Đéc" and data.hotline == "0277 3861 234"


def test_same_day_and_free_receipts(desk: DossierDesk, cfg: AgentConfig) -> None:
    same_day_fee = desk.file(COPY[0], APPLICANT, COPY[1], now=NOW)
    data = build_receipt(same_day_fee, cfg.kiosk, cfg.payment)
    assert same_day_fee.same_day and data.due is None
    texts = [b.value for b in layout_receipt(data).blocks if isinstance(b, TextBlock)]
    assert SAME_DAY in texts
    assert (
        data.payment is not None and parse_payload(data.payment).amount_vnd == 12000
    )  # 2 pages x 2,000 x 3 copies

    free = desk.file(BIRTH[0], APPLICANT, BIRTH[1], now=NOW)
    data = build_receipt(free, cfg.kiosk, cfg.payment)
    assert data.fee_vnd == 0 and data.payment is None

    no_qr = config(Path("/nonexistent"), payment_qr=False).payment
    assert build_receipt(same_day_fee, cfg.kiosk, no_qr).payment is None


def test_receipt_is_printed_only_after_the_dossier_is_committed(
    tmp_path: Path, desk: DossierDesk, cfg: AgentConfig
) -> None:
    usb = CommitCheckingPrinter(cfg.agent.database)
    printer = ReceiptPrinter("usb://04b8:0e15", spool_dir=tmp_path / "spool", usb_backend=usb)
    filed, outcome = file_and_print(desk, printer, cfg, MARRIAGE[0], APPLICANT, MARRIAGE[1])
    assert outcome.printed and outcome.printer_state == "ok"
    assert filed.code in outcome.screen_text
    assert usb.codes_committed_at_first_byte == [filed.code]
    drawn = render(usb.take_received())
    assert drawn.cuts and drawn.rasters and not drawn.printed_text.strip()
    assert printer.unprinted() == []


def test_printer_fault_keeps_dossier_and_receipt_reprintable(
    tmp_path: Path, desk: DossierDesk, cfg: AgentConfig
) -> None:
    usb = EmulatedUsbPrinter()
    usb.paper_end = True
    printer = ReceiptPrinter("usb://04b8:0e15", spool_dir=tmp_path / "spool", usb_backend=usb)
    filed, outcome = file_and_print(desk, printer, cfg, COPY[0], APPLICANT, COPY[1])
    assert not outcome.printed and outcome.reprintable
    assert outcome.printer_state == "paper_out"
    assert filed.code in outcome.screen_text
    assert "lưu an toàn" in outcome.screen_text and "Máy in đang gặp sự cố" in outcome.screen_text
    assert usb.received == b""
    conn = sqlite3.connect(f"file:{cfg.agent.database}?mode=ro", uri=True)
    assert conn.execute("SELECT code FROM dossiers").fetchall() == [(filed.code,)]
    queued = conn.execute("SELECT count(*) FROM outbox WHERE state='queued'").fetchone()[0]
    conn.close()
    assert queued == 1  # the dossier will still sync
    assert printer.unprinted() == [filed.code]

    usb.paper_end = False
    printer.reprint(filed.code)
    assert printer.unprinted() == []
    assert render(usb.take_received()).cuts


def test_unplugged_printer_and_no_printer(
    tmp_path: Path, desk: DossierDesk, cfg: AgentConfig
) -> None:
    usb = EmulatedUsbPrinter()
    usb.unplug()
    printer = ReceiptPrinter("usb://04b8:0e15", spool_dir=tmp_path / "spool", usb_backend=usb)
    filed, outcome = file_and_print(desk, printer, cfg, BIRTH[0], APPLICANT, BIRTH[1])
    assert not outcome.printed and outcome.reprintable and outcome.printer_state == "unplugged"
    assert filed.code in outcome.screen_text

    filed, outcome = file_and_print(desk, None, cfg, BIRTH[0], APPLICANT, BIRTH[1])
    assert not outcome.printed and not outcome.reprintable
    assert filed.code in outcome.screen_text and outcome.printer_state is None


def test_refused_filing_prints_nothing(tmp_path: Path, desk: DossierDesk, cfg: AgentConfig) -> None:
    usb = EmulatedUsbPrinter()
    printer = ReceiptPrinter("usb://04b8:0e15", spool_dir=tmp_path / "spool", usb_backend=usb)
    with pytest.raises(CitizenError):
        file_and_print(desk, printer, cfg, MARRIAGE[0], APPLICANT, {"muc_dich": ""})
    assert usb.received == b"" and printer.unprinted() == []
    assert not list((tmp_path / "spool").glob("*.bin"))
