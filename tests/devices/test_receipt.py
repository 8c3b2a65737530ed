"""Receipt model, sanitisation, layout and ESC/POS encoding (no printer involved)."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from escpos.printer import Dummy
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.receipt import (
    CAPTION_PAYMENT,
    CAPTION_TRACKING,
    PAY_AT_COUNTER,
    SAME_DAY,
    TITLE,
    QrBlock,
    ReceiptData,
    ReceiptError,
    TextBlock,
    emit_receipt,
    encode_receipt,
    layout_receipt,
    mask_id_number,
    render_block,
    sanitize_text,
)
from drivers.vietqr import build_payload
from firmware_mocks.escpos_render import render

CODE = "000.00.14.H56-261126-0001"


def make(**changes: Any) -> ReceiptData:
    base = ReceiptData(
        office_name="UBND phường Đặng Quốc Việt",
        procedure_name="Chứng thực chữ ký",
        dossier_code=CODE,
        citizen_name="Nguyễn Thị Ngọc Hường",
        id_number="001234567890",
        filed_at=datetime(2026, 11, 26, 14, 5),
        due=datetime(2026, 11, 28, 16, 0),
        fee_vnd=10_000,
        tracking_url_or_code="https://dvc.example.vn/tra-cuu?ma=" + CODE,
        payment=build_payload("970436", "0011002345678", 10_000, "HS " + CODE),
        hotline="1900 1234",
        paper_width_mm=80,
    )
    return replace(base, **changes)


def texts(data: ReceiptData) -> list[str]:
    return [
        (f"{b.label}: " if b.label else "") + b.value
        for b in layout_receipt(data).blocks
        if isinstance(b, TextBlock)
    ]


def test_layout_has_every_field_with_vietnamese_labels() -> None:
    lines = texts(make())
    assert lines[:2] == ["UBND phường Đặng Quốc Việt", TITLE]
    assert "Thủ tục: Chứng thực chữ ký" in lines
    assert f"Mã hồ sơ: {CODE}" in lines
    assert "Người nộp: Nguyễn Thị Ngọc Hường" in lines
    assert "Số định danh: ********7890" in lines
    assert "Thời gian nhận: 14:05 ngày 26/11/2026" in lines
    assert "Ngày hẹn trả: 16:00 ngày 28/11/2026" in lines
    assert "Lệ phí: 10.000 đồng" in lines
    assert "Đường dây hỗ trợ: 1900 1234" in lines
    assert CAPTION_TRACKING in lines and CAPTION_PAYMENT in lines
    qrs = [b.payload for b in layout_receipt(make()).blocks if isinstance(b, QrBlock)]
    assert qrs == [make().tracking_url_or_code, make().payment]


def test_same_day_and_free_receipt_has_no_payment_qr() -> None:
    data = make(due=None, fee_vnd=0, payment=None)
    lines = texts(data)
    assert f"Ngày hẹn trả: {SAME_DAY}" in lines
    assert "Lệ phí: Miễn phí" in lines
    assert CAPTION_PAYMENT not in lines
    assert len([b for b in layout_receipt(data).blocks if isinstance(b, QrBlock)]) == 1


def test_fee_without_qr_says_pay_at_counter() -> None:
    assert PAY_AT_COUNTER in texts(make(payment=None))


def test_id_number_is_masked_to_last_four() -> None:
    assert mask_id_number("001234567890") == "********7890"
    assert mask_id_number("1234") == "****"
    assert all("001234567890" not in line for line in texts(make()))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"paper_width_mm": 76}, "paper_width_mm"),
        ({"fee_vnd": -1}, "fee_vnd"),
        ({"dossier_code": "../etc/passwd"}, "dossier_code"),
        ({"dossier_code": ""}, "dossier_code"),
        ({"tracking_url_or_code": "\x1b\x00"}, "tracking_url_or_code"),
        ({"fee_vnd": 0}, "payment"),
        ({"fee_vnd": 20_000}, "payment QR asks for 10000"),
        ({"payment": "not a vietqr"}, "VietQR"),
    ],
)
def test_invalid_data_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ReceiptError, match=field):
        make(**changes)


def test_sanitize_strips_escape_sequences_and_format_characters() -> None:
    dirty = "Nguyễn\x1b@\x1dV\x00 Thị\x10\x04\x01 \u202eNgọc\u200b\x85 Hường\n\t"
    assert sanitize_text(dirty, field="x", limit=100) == "Nguyễn@V Thị Ngọc Hường"


def test_sanitize_composes_decomposed_tone_marks_and_limits_length() -> None:
    decomposed = unicodedata.normalize("NFD", "Hường")
    assert sanitize_text(decomposed, field="x", limit=100) == "Hường"
    assert sanitize_text("a" * 50, field="x", limit=10) == "a" * 9 + "…"


@given(st.text(max_size=300))
def test_sanitized_text_never_contains_control_or_format_characters(text: str) -> None:
    clean = sanitize_text(text, field="citizen_name", limit=100)
    assert len(clean) <= 100
    assert all(not unicodedata.category(ch).startswith("C") for ch in clean)


def test_escape_in_name_never_reaches_the_printer() -> None:
    """A name full of ESC/POS commands prints exactly like the name without them."""
    hostile = make(citizen_name="Nguyễn\x1b@\x1bd\x09\x1dV\x00\x10\x04\x01 Thị Ngọc Hường")
    tame = make(citizen_name="Nguyễn@d\tV Thị Ngọc Hường")
    assert encode_receipt(hostile) == encode_receipt(tame)
    printed = render(encode_receipt(hostile))
    assert printed.cuts == 1  # only our own cut
    assert printed.text_lines == []  # and not a single character sent as text
    assert printed.unknown == []


def test_emit_receipt_is_the_same_on_any_escpos_printer_object() -> None:
    dummy = Dummy(profile="TM-T20II")
    emit_receipt(dummy, make())
    assert dummy.output == encode_receipt(make(), profile="TM-T20II")
    out = dummy.output
    assert out.startswith(b"\x1b@")  # ESC @ initialise
    assert out.endswith(b"\x1dV\x00")  # GS V 0 full cut
    assert out.count(b"\x1dv0") >= 15  # every block is a GS v 0 raster image


@pytest.mark.parametrize(("mm", "px"), [(80, 576), (58, 384)])
def test_images_are_as_wide_as_the_paper(mm: int, px: int) -> None:
    data = make(paper_width_mm=mm)
    result = render(encode_receipt(data), width_px=px)
    assert result.rasters and {r.width for r in result.rasters} == {px}


def test_long_text_wraps_inside_the_paper() -> None:
    data = make(paper_width_mm=58, procedure_name="Đăng ký khai sinh, nhận cha, mẹ, con " * 3)
    block = layout_receipt(data).blocks[3]
    assert isinstance(block, TextBlock) and block.label == "Thủ tục"
    image = render_block(block, 384)
    assert image.width == 384 and image.height > 100


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=120), st.text(max_size=120))
def test_any_citizen_text_renders(name: str, office: str) -> None:
    data = make(citizen_name=name, office_name=office)
    for block in layout_receipt(data).blocks[:7]:
        assert render_block(block, 576).width == 576


def test_aware_times_are_printed_in_vietnam_time() -> None:
    data = make(filed_at=datetime(2026, 11, 26, 7, 5, tzinfo=UTC), due=None)
    assert "Thời gian nhận: 14:05 ngày 26/11/2026" in texts(data)
