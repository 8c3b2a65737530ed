"""The receipt printer driver through python-escpos's real Usb class on the emulated printer."""

from __future__ import annotations

import array
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drivers.printer import (
    PrinterConfigError,
    PrinterFault,
    PrinterState,
    PrinterURL,
    ReceiptPrinter,
    ReceiptSpool,
    parse_printer_url,
)
from drivers.receipt import ReceiptData, encode_receipt
from drivers.vietqr import build_payload
from firmware_mocks.usb_printer import EmulatedUsbPrinter, usb_printer_for

CODE = "000.00.14.H56-261126-0001"


def receipt(code: str = CODE, **changes: Any) -> ReceiptData:
    base = ReceiptData(
        office_name="UBND phường Đặng Quốc Việt",
        procedure_name="Cấp bản sao trích lục hộ tịch",
        dossier_code=code,
        citizen_name="Nguyễn Thị Ngọc Hường",
        id_number="001234567890",
        filed_at=datetime(2026, 11, 26, 14, 5),
        due=None,
        fee_vnd=8000,
        tracking_url_or_code=code,
        payment=build_payload("970436", "0011002345678", 8000, "HS " + code),
        hotline="1900 1234",
    )
    return replace(base, **changes)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(seconds=5)


@pytest.fixture
def device() -> EmulatedUsbPrinter:
    return EmulatedUsbPrinter()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def printer(
    device: EmulatedUsbPrinter, tmp_path: Path, clock: FakeClock
) -> Iterator[ReceiptPrinter]:
    p = ReceiptPrinter(
        "usb://04b8:0e15?timeout=1", spool_dir=tmp_path / "spool", usb_backend=device, clock=clock
    )
    yield p
    p.close()


# --- URLs ------------------------------------------------------------------------------


def test_url_forms() -> None:
    assert parse_printer_url("usb://04b8:0e15") == PrinterURL(
        scheme="usb", vendor_id=0x04B8, product_id=0x0E15
    )
    assert parse_printer_url("serial:///dev/ttyUSB0?baudrate=19200&timeout=0.5") == PrinterURL(
        scheme="serial", path="/dev/ttyUSB0", baudrate=19200, timeout_s=0.5
    )
    assert parse_printer_url("tcp://192.168.1.50:9100?profile=TM-T88V") == PrinterURL(
        scheme="tcp", host="192.168.1.50", port=9100, profile="TM-T88V"
    )
    assert parse_printer_url("tcp://printer.local").port == 9100


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("lpt://1", "scheme 'lpt' is not supported"),
        ("usb://04b8:0e15?baud=9600", "unknown option"),
        ("usb://4b8:e15", "usb://VID:PID"),
        ("serial://dev/ttyUSB0", "three slashes"),
        ("serial:///dev/ttyUSB0?baudrate=12345", "baudrate"),
        ("tcp://:9100", "tcp://host:9100"),
        ("tcp://host:99999", "tcp://host:9100"),
        ("usb://04b8:0e15?profile=NoSuchPrinter", "profile 'NoSuchPrinter' is unknown"),
        ("usb://04b8:0e15?profile=default", "no known paper width"),
        ("usb://04b8:0e15?timeout=0", "timeout"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(PrinterConfigError, match=message):
        parse_printer_url(url)


# --- the emulated device under the real escpos.printer.Usb --------------------------------


def test_emulated_printer_speaks_to_the_real_usb_class(device: EmulatedUsbPrinter) -> None:
    from escpos.printer import Usb

    usb = usb_printer_for(device, profile="TM-T20II")
    assert isinstance(usb, Usb)
    usb.text("hello\n")
    assert device.take_received() == b"\x1bt\x00hello\n"
    assert usb.is_online() and usb.paper_status() == 2
    device.paper_near_end = True
    assert usb.paper_status() == 1
    device.paper_end = True
    assert not usb.is_online() and usb.paper_status() == 0
    assert device.status_queries == [1, 4, 4, 1, 4]
    usb.close()


def test_emulated_printer_descriptors(device: EmulatedUsbPrinter) -> None:
    import usb.core
    import usb.util

    dev = usb.core.find(idVendor=0x04B8, idProduct=0x0E15, backend=device)
    assert dev is not None
    dev.set_configuration()
    intf = dev.get_active_configuration()[(0, 0)]
    assert intf.bInterfaceClass == 7
    assert [ep.bEndpointAddress for ep in intf] == [0x01, 0x82]
    assert len(list(dev.get_active_configuration())) == 1  # alt-setting probing stops
    with pytest.raises(usb.core.USBTimeoutError):
        dev.read(0x82, 16, 10)  # nothing to say
    assert dev.write(0x01, b"\x10\x04\x04", 10) == 3
    buffer = array.array("B", bytes(16))
    assert dev.read(0x82, buffer, 10) == 1 and buffer[0] == 0x12
    usb.util.dispose_resources(dev)


# --- printing and status --------------------------------------------------------------


def test_print_sends_exactly_the_encoded_receipt(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter
) -> None:
    status = printer.print_receipt(receipt())
    assert status.state is PrinterState.OK
    assert device.take_received() == encode_receipt(receipt(), profile="TM-T20II")
    assert printer.unprinted() == []
    assert (printer.spool.directory / f"{CODE}.bin").read_bytes() == encode_receipt(receipt())


def test_poll_reports_ok_with_since(printer: ReceiptPrinter, clock: FakeClock) -> None:
    first = printer.poll_status()
    assert first.state is PrinterState.OK and first.last_error is None
    clock.tick()
    assert printer.poll_status().since == first.since  # unchanged state keeps its start


def test_paper_near_end_still_prints_and_warns(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter
) -> None:
    device.paper_near_end = True
    status = printer.print_receipt(receipt())
    assert status.state is PrinterState.PAPER_NEAR_END
    assert "nearly used up" in (status.last_error or "")
    assert device.received


@pytest.mark.parametrize(
    ("switch", "state", "words"),
    [
        ("paper_end", PrinterState.PAPER_OUT, "out of paper"),
        ("cover_open", PrinterState.COVER_OPEN, "cover is open"),
    ],
)
def test_fault_refuses_to_print_and_keeps_receipt(
    printer: ReceiptPrinter,
    device: EmulatedUsbPrinter,
    clock: FakeClock,
    switch: str,
    state: PrinterState,
    words: str,
) -> None:
    printer.poll_status()
    setattr(device, switch, True)
    clock.tick()
    with pytest.raises(PrinterFault, match=words) as info:
        printer.print_receipt(receipt())
    assert info.value.status.state is state
    assert info.value.status.since == clock.now
    assert info.value.dossier_code == CODE
    assert "reprint" in str(info.value)
    assert device.received == b""  # not a byte of the receipt went out
    assert printer.unprinted() == [CODE]
    setattr(device, switch, False)
    assert printer.reprint(CODE).state is PrinterState.OK
    assert device.take_received() == encode_receipt(receipt())
    assert printer.unprinted() == []
    assert printer.status().last_error is not None  # history kept for the operator


def test_unplug_then_replug_recovers_without_restart(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter
) -> None:
    printer.print_receipt(receipt("A-1"))
    device.take_received()
    device.unplug()
    status = printer.poll_status()  # the held handle dies, a fresh find() finds nothing
    assert status.state is PrinterState.UNPLUGGED
    assert "not found: check its cable" in (status.last_error or "")
    with pytest.raises(PrinterFault, match="unplugged"):
        printer.print_receipt(receipt("A-2"))
    device.plug()
    assert printer.poll_status().state is PrinterState.OK
    assert printer.unprinted() == ["A-2"]
    printer.reprint("A-2")
    assert device.take_received() == encode_receipt(receipt("A-2"))


def test_unplugged_before_first_use(printer: ReceiptPrinter, device: EmulatedUsbPrinter) -> None:
    device.unplug()
    assert printer.poll_status().state is PrinterState.UNPLUGGED
    device.plug()
    assert printer.print_receipt(receipt()).state is PrinterState.OK


def test_unplug_mid_receipt(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = device.bulk_write
    writes = []

    def yank_after_first_chunk(*args: Any) -> int:
        if len(args[3]) > 3:  # print data, not a DLE EOT status request
            writes.append(1)
            if len(writes) == 2:
                device.unplug()
        return int(real_write(*args))

    monkeypatch.setattr(device, "bulk_write", yank_after_first_chunk)
    with pytest.raises(PrinterFault, match="may be incomplete") as info:
        printer.print_receipt(receipt())
    assert info.value.status.state is PrinterState.UNPLUGGED
    assert printer.unprinted() == [CODE]
    device.plug()
    device.take_received()
    printer.reprint(CODE)
    assert device.take_received() == encode_receipt(receipt())


def test_paper_runs_out_during_receipt(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = device.bulk_write

    def paper_ends_on_cut(dev_handle: Any, ep: int, intf: int, data: Any, timeout: int) -> int:
        if bytes(data).endswith(b"\x1dV\x00"):
            device.paper_end = True
        return int(real_write(dev_handle, ep, intf, data, timeout))

    monkeypatch.setattr(device, "bulk_write", paper_ends_on_cut)
    with pytest.raises(PrinterFault, match=r"may be incomplete.*out of paper"):
        printer.print_receipt(receipt())
    assert printer.unprinted() == [CODE]


def test_silent_printer_is_a_fault_not_ok(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter
) -> None:
    device.silent = True
    status = printer.poll_status()
    assert status.state is PrinterState.OFFLINE
    assert "silent" in (status.last_error or "")
    with pytest.raises(PrinterFault, match="offline"):
        printer.print_receipt(receipt())
    assert device.received == b""
    device.silent = False
    assert printer.poll_status().state is PrinterState.OK


def test_garbage_status_reply_is_offline(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(device, "status_byte", lambda n: 0xFF)
    status = printer.poll_status()
    assert status.state is PrinterState.OFFLINE
    assert "not a status byte" in (status.last_error or "")


def test_receipt_wider_than_printer_is_refused(device: EmulatedUsbPrinter, tmp_path: Path) -> None:
    p = ReceiptPrinter("usb://04b8:0e15?profile=NT-5890K", spool_dir=tmp_path, usb_backend=device)
    with pytest.raises(PrinterConfigError, match="paper_width_mm=58"):
        p.print_receipt(receipt())
    assert p.print_receipt(receipt(paper_width_mm=58)).state is PrinterState.OK
    p.close()


def test_reprint_of_unknown_dossier(printer: ReceiptPrinter) -> None:
    with pytest.raises(PrinterConfigError, match="no stored receipt"):
        printer.reprint("NOPE-1")


def test_spool_keeps_unprinted_and_bounds_printed(tmp_path: Path) -> None:
    spool = ReceiptSpool(tmp_path, max_receipts=2)
    for i in range(5):
        spool.save(f"D-{i}", bytes([i]))
        if i != 1:
            spool.mark_printed(f"D-{i}")
    assert spool.unprinted() == ["D-1"]
    kept = sorted(p.stem for p in tmp_path.glob("*.bin"))
    assert kept == ["D-1", "D-3", "D-4"]
    with pytest.raises(PrinterConfigError, match="cannot name"):
        spool.save("../x", b"")


def test_hostile_name_reaches_the_usb_printer_only_as_pixels(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter
) -> None:
    from firmware_mocks.escpos_render import render

    hostile = receipt(citizen_name="Hường\x1b@\x1bp\x00\x19\xfa\x1dV\x00\x10\x14\x01\x00\x05")
    printer.print_receipt(hostile)
    sent = device.take_received()
    assert sent == encode_receipt(receipt(citizen_name="Hường@púV"))
    drawn = render(sent)
    assert drawn.cuts == 1 and drawn.text_lines == [] and drawn.unknown == []


def test_replug_between_polls_is_seen_as_ok_at_once(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter
) -> None:
    assert printer.poll_status().state is PrinterState.OK
    device.unplug()
    device.plug()  # the handle the driver holds is dead, the device is back
    assert printer.poll_status().state is PrinterState.OK
    assert device.open_count >= 2  # it was opened again


def test_failed_reprint_is_pending_again(
    printer: ReceiptPrinter, device: EmulatedUsbPrinter
) -> None:
    printer.print_receipt(receipt())
    assert printer.unprinted() == []
    device.cover_open = True
    with pytest.raises(PrinterFault):
        printer.reprint(CODE)
    assert printer.unprinted() == [CODE]
