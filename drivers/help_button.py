"""A physical help button that sends a key through Linux evdev.

Kiosks wire a big "Hỗ trợ" button to a USB keyboard encoder (or a GPIO key);
it shows up as an input device sending one key code. :func:`iter_presses`
yields one press per key-down of that code (value 1): auto-repeat (value 2),
key-up, other keys and SYN events are ignored, and a press within
``debounce_s`` of the previous one (by the events' own timestamps) counts once,
so a bouncing contact or a citizen pressing five times queues one request.
:class:`HelpButton` opens the node with python-evdev and grabs it, so the key
never reaches the screen's browser.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from typing import Any

from drivers import DeviceError
from drivers.scanner_hid import EV_KEY, EventSource

DEBOUNCE_S = 2.0


def iter_presses(
    source: EventSource, key_code: int, *, debounce_s: float = DEBOUNCE_S, wait_s: float = 0.2
) -> Iterator[float | None]:
    """Yield the timestamp of each press; ``None`` every ``wait_s`` without one.

    The ``None`` ticks let a caller check for stop. Ends when the source reaches
    end of file; a removed device raises ``OSError`` (python-evdev).
    """
    last: float | None = None
    while True:
        ready, _, _ = select.select([source.fileno()], [], [], wait_s)
        if not ready:
            yield None
            continue
        try:
            events: list[Any] = list(source.read())
        except BlockingIOError:
            continue
        if not events:
            return
        for event in events:
            if event.type != EV_KEY or event.code != key_code or event.value != 1:
                continue
            at = float(event.timestamp())
            if last is not None and 0 <= at - last < debounce_s:
                continue
            last = at
            yield at


class HelpButton:
    """The help button's input node, grabbed exclusively."""

    def __init__(self, path: str, key_code: int) -> None:
        self.path, self.key_code = path, key_code
        self._device: Any = None

    def open(self) -> None:
        import evdev  # hardware library imported where used

        device = evdev.InputDevice(self.path)
        try:
            device.grab()
        except OSError:
            device.close()
            raise
        self._device = device

    def close(self) -> None:
        if self._device is not None:
            with contextlib.suppress(OSError):
                self._device.ungrab()
            self._device.close()
            self._device = None

    def presses(self) -> Iterator[float | None]:
        if self._device is None:
            raise DeviceError(f"help button {self.path}: not open; call open() first")
        return iter_presses(self._device, self.key_code)
