"""Emulated QR scanner in USB-CDC mode on a pty.

The driver opens :attr:`EmulatedCdcScanner.port_path` with pyserial (open it
before scanning: opening a port flushes its input). :meth:`scan` sends text as
UTF-8 followed by the configured terminator, as a real scanner does.
"""

from __future__ import annotations

from types import TracebackType

from firmware_mocks.pty_device import PtyDevice

__all__ = ["EmulatedCdcScanner"]


class EmulatedCdcScanner:
    def __init__(self, *, terminator: bytes = b"\r\n") -> None:
        self.terminator = terminator
        self._pty = PtyDevice()
        self.port_path = self._pty.port_path

    def scan(self, text: str) -> None:
        """ "Scan" ``text``: send it UTF-8 encoded, then the terminator."""
        self._pty.write(text.encode("utf-8") + self.terminator)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (broken encodings, missing terminators, noise)."""
        self._pty.write(data)

    def close(self) -> None:
        self._pty.close()

    def __enter__(self) -> EmulatedCdcScanner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
