"""The same driver over python-escpos's real Serial (on a pty) and Network (loopback) classes."""

from __future__ import annotations

import os
import select
import socket
import threading
import tty
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from drivers.printer import PrinterFault, PrinterState, ReceiptPrinter
from drivers.receipt import ReceiptData, encode_receipt

CODE = "000.00.14.H56-261126-0009"
DATA = ReceiptData(
    office_name="UBND phường Đặng Quốc Việt",
    procedure_name="Chứng thực bản sao",
    dossier_code=CODE,
    citizen_name="Nguyễn Thị Ngọc Hường",
    id_number="001234567890",
    filed_at=datetime(2026, 11, 26, 9, 0),
    due=None,
    fee_vnd=0,
    tracking_url_or_code=CODE,
    payment=None,
    hotline="1900 1234",
)


class FarEnd:
    """A printer's far end: answers DLE EOT n from its switches, keeps print data."""

    def __init__(self) -> None:
        self.cover_open = False
        self.silent = False
        self.received = bytearray()
        self.done = threading.Event()

    def handle(self, chunk: bytes) -> bytes:
        """Process bytes from the host; return the reply to send back."""
        if len(chunk) >= 3 and chunk[-3:-1] == b"\x10\x04" and 1 <= chunk[-1] <= 4:
            self.received += chunk[:-3]
            if self.silent:
                return b""
            n = chunk[-1]
            byte = 0x12
            if self.cover_open and n == 1:
                byte |= 0x08
            if self.cover_open and n == 2:
                byte |= 0x44
            return bytes([byte])
        self.received += chunk
        return b""


@pytest.fixture
def pty_printer() -> Iterator[tuple[FarEnd, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    far = FarEnd()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            reply = far.handle(chunk)
            if reply:
                os.write(master, reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield far, os.ttyname(slave)
    stop.set()
    thread.join()
    os.close(master)
    os.close(slave)


def test_serial_printer_on_a_pty(pty_printer: tuple[FarEnd, str], tmp_path: Path) -> None:
    far, path = pty_printer
    printer = ReceiptPrinter(f"serial://{path}?baudrate=115200&timeout=0.2", spool_dir=tmp_path)
    assert printer.print_receipt(DATA).state is PrinterState.OK
    expected = encode_receipt(DATA)
    assert bytes(far.received) == expected
    far.cover_open = True
    with pytest.raises(PrinterFault, match="cover"):
        printer.reprint(CODE)
    far.silent = True
    far.cover_open = False
    status = printer.poll_status()
    assert status.state is PrinterState.OFFLINE and "did not answer" in (status.last_error or "")
    far.silent = False
    printer.reprint(CODE)
    assert bytes(far.received) == expected * 2
    printer.close()


class TcpPrinter:
    def __init__(self) -> None:
        self.far = FarEnd()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                while True:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    reply = self.far.handle(chunk)
                    if reply:
                        conn.sendall(reply)

    def stop(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.server.close()
        self.thread.join()


def test_network_printer_on_loopback(tmp_path: Path) -> None:
    far_end = TcpPrinter()
    try:
        printer = ReceiptPrinter(f"tcp://127.0.0.1:{far_end.port}?timeout=2", spool_dir=tmp_path)
        assert printer.print_receipt(DATA).state is PrinterState.OK
        assert bytes(far_end.far.received) == encode_receipt(DATA)
        printer.close()
    finally:
        far_end.stop()
    # nobody listening any more: the printer is unreachable, not "ok"
    assert printer.poll_status().state is PrinterState.UNPLUGGED
