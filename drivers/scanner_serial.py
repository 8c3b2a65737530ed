"""QR/barcode scanner in USB-CDC (virtual serial) mode.

The scanner sends each scan as one line of UTF-8 ended by CR, LF or CRLF. This
is the mode a kiosk needs for the CCCD QR, whose Vietnamese name and address a
keyboard-mode scanner cannot type.

:class:`ScanDecoder` is sans-I/O: ``receive_data(bytes)`` buffers,
``next_event()`` returns a :data:`ScanEvent` or :data:`NEED_DATA`. A line that
starts like a CCCD QR becomes :class:`IdentityScanned` (or
:class:`ScanRejected` with the parser's reason); any other line is a
:class:`CodeScanned`. Empty lines are skipped; a line over :data:`MAX_LINE`
bytes, invalid UTF-8 or control characters give :class:`ScanRejected`, and
decoding carries on with the next line. :class:`SerialScanner` is the thin
pyserial adapter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from drivers import DeviceError
from drivers.cccd_qr import QrFormatError, looks_like_cccd_qr, parse_cccd_qr
from drivers.identity import Identity
from drivers.sansio import NEED_DATA, NeedData

__all__ = [
    "MAX_LINE",
    "NEED_DATA",
    "CodeScanned",
    "IdentityScanned",
    "ScanDecoder",
    "ScanEvent",
    "ScanRejected",
    "SerialScanner",
    "classify_scan",
]

#: Longest scan line accepted, in bytes.
MAX_LINE: Final = 4096
_CR: Final = 0x0D
_LF: Final = 0x0A


@dataclass(frozen=True, kw_only=True)
class CodeScanned:
    """A scan that is not an identity card, e.g. a receipt tracking code."""

    text: str


@dataclass(frozen=True, kw_only=True)
class IdentityScanned:
    """A CCCD QR, parsed."""

    identity: Identity


@dataclass(frozen=True, kw_only=True)
class ScanRejected:
    """A scan that could not be used; ``reason`` says why (never the raw text)."""

    reason: str


ScanEvent = CodeScanned | IdentityScanned | ScanRejected


def classify_scan(text: str) -> ScanEvent:
    """Turn one scanned line into an event (CCCD QR or plain code)."""
    if looks_like_cccd_qr(text):
        try:
            return IdentityScanned(identity=parse_cccd_qr(text))
        except QrFormatError as exc:
            return ScanRejected(reason=f"CCCD QR: {exc}")
    text = text.strip()
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text):
        return ScanRejected(reason="scan contains control characters")
    return CodeScanned(text=text)


class ScanDecoder:
    """Cuts a CDC scanner's byte stream into scans."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._after_cr = False  # a LF right after a CR belongs to the same terminator
        self._discarding = False  # inside an over-long line, until its terminator

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        if self._after_cr and data:
            if data[:1] == b"\n":
                data = data[1:]
            self._after_cr = False
        self._buffer += data

    def next_event(self) -> ScanEvent | NeedData:
        while True:
            buf = self._buffer
            ends = [i for i in (buf.find(_CR), buf.find(_LF)) if i >= 0]
            if not ends:
                if len(buf) > MAX_LINE:
                    self._buffer.clear()
                    if not self._discarding:
                        self._discarding = True
                        return ScanRejected(
                            reason=f"scan longer than {MAX_LINE} bytes: "
                            "check the scanner's terminator setting (CR or LF)"
                        )
                return NEED_DATA
            end = min(ends)
            line = bytes(buf[:end])
            if buf[end] == _CR:
                if end + 1 < len(buf):
                    if buf[end + 1] == _LF:
                        end += 1
                else:
                    self._after_cr = True
            del buf[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            if not line.strip():
                continue
            if len(line) > MAX_LINE:
                return ScanRejected(reason=f"scan longer than {MAX_LINE} bytes")
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                return ScanRejected(reason="scan is not UTF-8: set the scanner's output to UTF-8")
            return classify_scan(text)


class SerialScanner:
    """A USB-CDC scanner opened by path or pyserial URL.

    Port errors stay ``OSError`` (``serial.SerialException``) for the supervisor.
    """

    def __init__(self, url: str, *, baudrate: int = 9600, poll_interval: float = 0.05) -> None:
        self.url = url
        self.baudrate = baudrate
        self.poll_interval = poll_interval
        self._port: Any = None
        self._decoder = ScanDecoder()

    def open(self) -> None:
        import serial  # hardware library imported where used

        self._port = serial.serial_for_url(
            self.url, baudrate=self.baudrate, timeout=self.poll_interval
        )
        self._decoder = ScanDecoder()

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def __enter__(self) -> SerialScanner:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def read_scan(self, timeout: float) -> ScanEvent | None:
        """Return the next scan, or ``None`` if none completes within ``timeout`` seconds."""
        if self._port is None:
            raise DeviceError(f"scanner {self.url}: not open; call open() first")
        deadline = time.monotonic() + timeout
        while True:
            event = self._decoder.next_event()
            if not isinstance(event, NeedData):
                return event
            if time.monotonic() >= deadline:
                return None
            waiting = self._port.in_waiting
            self._decoder.receive_data(self._port.read(max(1, waiting)))
