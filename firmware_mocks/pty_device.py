"""A pty pair standing in for a USB-CDC serial device.

The emulated device works on the master side; the driver opens
:attr:`PtyDevice.port_path` (the slave) with pyserial exactly as it would open
``/dev/ttyACM0``. The slave is put in raw mode (no echo, no line editing) and
kept open by the device itself, so the master never sees EIO while the driver
closes and reopens the port.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Callable
from types import TracebackType

__all__ = ["PtyDevice"]


class PtyDevice:
    """Owns a pty pair and, once started, a thread that hands received bytes to a callback."""

    def __init__(self, on_data: Callable[[bytes], None] | None = None) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port_path = os.ttyname(self._slave)
        self._on_data = on_data
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.closed = False

    def start(self) -> None:
        if self._on_data is not None and self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name=f"pty-device {self.port_path}", daemon=True
            )
            self._thread.start()

    def _serve(self) -> None:
        callback = self._on_data
        while not self._stop.is_set() and callback is not None:
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if data:
                callback(data)

    def write(self, data: bytes) -> None:
        """Send bytes to the driver (all of them, in one piece)."""
        with self._write_lock:
            view = memoryview(data)
            while view:
                written = os.write(self._master, view)
                view = view[written:]

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if not self.closed:
            self.closed = True
            os.close(self._master)
            os.close(self._slave)

    def __enter__(self) -> PtyDevice:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
