"""The ESC/POS interpreter, and proof of what the printer was really sent."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import zxingcpp
from escpos.printer import Dummy
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from drivers.printer import ReceiptPrinter
from drivers.receipt import (
    LABEL_CITIZEN,
    TITLE,
    ReceiptData,
    TextBlock,
    render_block,
)
from drivers.vietqr import build_payload, parse_payload
from firmware_mocks.escpos_render import (
    RasterImage,
    extract_qr_matrix,
    main,
    render,
    save_receipt,
)
from firmware_mocks.usb_printer import EmulatedUsbPrinter

NAME = "Nguyễn Thị Ngọc Hường"
CODE = "000.00.14.H56-261126-0007"
PAYMENT = build_payload("970436", "0011002345678", 10_000, "HS " + CODE)


def same(a: Image.Image, b: Image.Image) -> bool:
    """Pixel-identical as 1-bit images."""
    return a.size == b.size and a.convert("1").tobytes() == b.convert("1").tobytes()


def scan_qr_codes(image: Image.Image) -> list[str]:
    """What a phone camera reads off the paper, top to bottom.

    zxing-cpp is an independent decoder: it shares no code with the ``qrcode``
    package that drew the symbols nor with our renderer's matrix extraction, so
    a QR that is drawn wrong (mask, format bits, quiet zone, scale) fails here.
    """
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return [b.text for b in sorted(found, key=lambda b: b.position.top_left.y)]


def test_text_feed_and_cut() -> None:
    d = Dummy(profile="TM-T20II")
    d.set(bold=True)
    d.text("Hello\n")
    d.cut()
    result = render(d.output)
    assert result.text_lines == ["Hello"]
    assert result.cuts == 1
    assert result.unknown == []
    assert result.image.width == 576 and result.image.height > 30


def test_raster_image_round_trip() -> None:
    source = Image.new("1", (40, 10), 1)
    source.paste(0, (3, 2, 17, 8))
    d = Dummy(profile="TM-T20II")
    d.image(source)
    (raster,) = render(d.output).rasters
    assert raster.command == "GS v 0" and (raster.width, raster.height) == (40, 10)
    assert same(raster.to_image(), source)


def test_graphics_and_column_images_are_drawn() -> None:
    source = Image.new("1", (16, 24), 1)
    source.paste(0, (0, 0, 8, 24))
    for impl in ("graphics", "bitImageColumn"):
        d = Dummy(profile="TM-T20II")
        d.image(source, impl=impl)
        result = render(d.output)
        assert result.rasters, impl
        assert result.image.convert("L").getextrema()[0] == 0, impl  # something black drawn


def test_native_qr_is_decoded_and_drawn() -> None:
    d = Dummy(profile="TM-T20II")
    d.qr(CODE, native=True, size=4)
    result = render(d.output)
    assert result.qr_codes == [CODE]
    assert extract_qr_matrix(result.image) is not None
    assert scan_qr_codes(result.image) == [CODE]  # and what was drawn scans as CODE


def test_vietnamese_as_code_page_text_loses_letters() -> None:
    """Why receipts are raster: through code pages the tone marks become '?'."""
    for profile in ("TM-T20II", "P822D", "NT-5890K"):
        d = Dummy(profile=profile)
        d.text(NAME + "\n")
        (line,) = render(d.output).text_lines
        assert "?" in line and line != NAME, profile


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReceiptData, bytes]:
    """A receipt printed by the driver through escpos.printer.Usb on the emulated printer."""
    data = ReceiptData(
        office_name="UBND phường Đặng Quốc Việt",
        procedure_name="Chứng thực chữ ký",
        dossier_code=CODE,
        citizen_name=NAME,
        id_number="001234567890",
        filed_at=datetime(2026, 11, 26, 9, 30),
        due=datetime(2026, 11, 27, 9, 30),
        fee_vnd=10_000,
        tracking_url_or_code="https://dvc.example.vn/tra-cuu?ma=" + CODE,
        payment=PAYMENT,
        hotline="1900 1234",
    )
    device = EmulatedUsbPrinter()
    printer = ReceiptPrinter(
        "usb://04b8:0e15", spool_dir=tmp_path_factory.mktemp("spool"), usb_backend=device
    )
    printer.print_receipt(data)
    printer.close()
    return data, device.take_received()


def test_vietnamese_was_printed_as_pixels_not_code_page_text(
    printed: tuple[ReceiptData, bytes],
) -> None:
    data, sent = printed
    result = render(sent)
    assert result.text_lines == []  # not one character went out as text, so no '?'
    assert result.unknown == [] and result.cuts == 1
    expected = {
        "name": render_block(TextBlock(label=LABEL_CITIZEN, value=NAME), 576),
        "title": render_block(TextBlock(value=TITLE, style="title"), 576),
        "office": render_block(TextBlock(value=data.office_name, style="heading"), 576),
    }
    for what, image in expected.items():
        assert any(same(r.to_image(), image) for r in result.rasters), what
    # and the name's raster is not just any image: it differs from the name without marks
    plain = render_block(TextBlock(label=LABEL_CITIZEN, value="Nguyen Thi Ngoc Huong"), 576)
    assert not any(same(r.to_image(), plain) for r in result.rasters)


def test_qr_codes_on_paper_match_the_payloads(printed: tuple[ReceiptData, bytes]) -> None:
    """Scan the whole printed slip as a citizen's phone would, with another decoder."""
    data, sent = printed
    tracking, payment = scan_qr_codes(render(sent).image)
    assert tracking == data.tracking_url_or_code
    assert payment == PAYMENT
    # the payment code a banking app reads: CRC valid, amount and reference right
    scanned = parse_payload(payment)
    assert scanned.amount_vnd == data.fee_vnd
    assert CODE in payment


def test_cli_writes_png(printed: tuple[ReceiptData, bytes], tmp_path: Path) -> None:
    (tmp_path / "r.bin").write_bytes(printed[1])
    assert main([str(tmp_path / "r.bin"), str(tmp_path / "r.png")]) == 0
    with Image.open(tmp_path / "r.png") as png:
        assert png.width == 576 and png.height > 1000


def test_raster_image_pixels() -> None:
    raster = RasterImage(8, 2, b"\x80\x01", "GS v 0")
    image = raster.to_image()
    assert image.getpixel((0, 0)) == 0 and image.getpixel((1, 0)) == 255
    assert image.getpixel((7, 1)) == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_renderer_survives_arbitrary_bytes(data: bytes) -> None:
    result = render(data, width_px=384)
    assert result.image.width == 384


def test_docs_example_receipt_is_reproducible(tmp_path: Path) -> None:
    from firmware_mocks import receipt_example

    assert receipt_example.main([str(tmp_path / "r.png"), "--bin", str(tmp_path / "r.bin")]) == 0
    result = render((tmp_path / "r.bin").read_bytes())
    assert result.text_lines == [] and result.cuts == 1
    with Image.open(tmp_path / "r.png") as png:
        assert png.size == result.image.size


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([b"\x1dv0", b"\x1b*", b"\x1d(L", b"\x1d(k", b"\x1dV", b"\x1bd"]),
    st.binary(max_size=64),
)
def test_renderer_survives_truncated_and_oversized_commands(command: bytes, rest: bytes) -> None:
    """Headers may claim 65535 x 65535 dots; only the data that arrived is drawn."""
    result = render(command + b"\xff\xff\xff\xff\xff" + rest)
    assert result.image.width == 576 and result.image.height < 20_000
    result = render(command + rest)
    assert result.image.width == 576


def test_save_receipt_writes_bin_and_png(
    printed: tuple[ReceiptData, bytes], tmp_path: Path
) -> None:
    png = save_receipt(printed[1], tmp_path / "receipts", CODE)
    assert (tmp_path / "receipts" / f"{CODE}.bin").read_bytes() == printed[1]
    with Image.open(png) as image:
        assert image.width == 576
