"""QR/barcode scanner in USB-HID keyboard mode, read through python-evdev.

Keyboard mode suits ASCII codes (receipt tracking QR); it cannot type
Vietnamese, so identity cards need the CDC mode (:mod:`drivers.scanner_serial`).

:class:`KeyDecoder` is sans-I/O: it takes ``(type, code, value, timestamp)`` of
input events and returns finished scans. It ignores EV_SYN, EV_MSC and
anything but EV_KEY; acts on key-down (value 1; autorepeat 2 and key-up 0 only
matter for shift); tracks both shift keys; maps a US layout; ends a scan on
KEY_ENTER or KEY_KPENTER; and ends it as well when more than
``inter_key_timeout`` seconds pass between two key-downs, so two quick scans
without a terminator do not merge. :meth:`KeyDecoder.flush` ends a pending scan
when the line has gone quiet.

:func:`iter_scans` is the loop over any python-evdev event source (an
``InputDevice``, or :class:`firmware_mocks.evdev_replay.PipeEventSource` in
tests); :class:`HidScanner` opens and exclusively grabs the real device, so
scans never reach the browser on the kiosk's screen.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Protocol

from drivers import DeviceError

__all__ = [
    "EV_KEY",
    "EV_MSC",
    "EV_SYN",
    "KEYMAP",
    "EventSource",
    "HidScan",
    "HidScanner",
    "KeyDecoder",
    "iter_scans",
]

# Linux input-event-codes.h values (stable kernel ABI); tests check them
# against evdev.ecodes so this module needs no hardware library.
EV_SYN: Final = 0x00
EV_KEY: Final = 0x01
EV_MSC: Final = 0x04
KEY_ENTER: Final = 28
KEY_KPENTER: Final = 96
KEY_LEFTSHIFT: Final = 42
KEY_RIGHTSHIFT: Final = 54

_ROWS: Final = (
    # first code, plain characters, shifted characters
    (2, "1234567890-=", "!@#$%^&*()_+"),
    (16, "qwertyuiop[]", "QWERTYUIOP{}"),
    (30, "asdfghjkl;'`", 'ASDFGHJKL:"~'),
    (43, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
)
_SINGLE: Final = {
    57: (" ", " "),  # KEY_SPACE
    55: ("*", "*"),  # KEY_KPASTERISK
    74: ("-", "-"),  # KEY_KPMINUS
    78: ("+", "+"),  # KEY_KPPLUS
    83: (".", "."),  # KEY_KPDOT
    98: ("/", "/"),  # KEY_KPSLASH
    71: ("7", "7"),
    72: ("8", "8"),
    73: ("9", "9"),
    75: ("4", "4"),
    76: ("5", "5"),
    77: ("6", "6"),
    79: ("1", "1"),
    80: ("2", "2"),
    81: ("3", "3"),
    82: ("0", "0"),
}


def _build_keymap() -> dict[int, tuple[str, str]]:
    keymap: dict[int, tuple[str, str]] = {}
    for first, plain, shifted in _ROWS:
        for offset, (low, high) in enumerate(zip(plain, shifted, strict=True)):
            keymap[first + offset] = (low, high)
    keymap.update(_SINGLE)
    return keymap


#: Key code -> (character, character with shift), US layout.
KEYMAP: Final = _build_keymap()


@dataclass(frozen=True, kw_only=True)
class HidScan:
    """One scan typed by the scanner."""

    text: str
    ended_by: Literal["enter", "timeout"]


class KeyDecoder:
    """Turns key events into scans; see the module docstring."""

    def __init__(self, *, inter_key_timeout: float = 0.05, max_length: int = 1024) -> None:
        if inter_key_timeout <= 0:
            raise ValueError(f"inter_key_timeout: must be positive, got {inter_key_timeout}")
        self.inter_key_timeout = inter_key_timeout
        self.max_length = max_length
        self.ignored_keys = 0
        self._chars: list[str] = []
        self._shift: set[int] = set()
        self._last_key: float | None = None

    def feed(self, ev_type: int, code: int, value: int, timestamp: float) -> list[HidScan]:
        """Take one input event; return the scans it finished (zero, one or two)."""
        if ev_type != EV_KEY:
            return []  # EV_SYN, EV_MSC (scan codes) and the rest carry no characters
        if code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
            if value == 0:
                self._shift.discard(code)
            else:
                self._shift.add(code)
            return []
        if value != 1:
            return []  # key-up or autorepeat
        done: list[HidScan] = []
        if (
            self._chars
            and self._last_key is not None
            and timestamp - self._last_key > self.inter_key_timeout
        ):
            done.extend(self.flush())
        self._last_key = timestamp
        if code in (KEY_ENTER, KEY_KPENTER):
            if self._chars:
                done.append(HidScan(text="".join(self._chars), ended_by="enter"))
                self._chars.clear()
            return done
        pair = KEYMAP.get(code)
        if pair is None:
            self.ignored_keys += 1
            return done
        if len(self._chars) < self.max_length:
            self._chars.append(pair[1] if self._shift else pair[0])
        return done

    def flush(self) -> list[HidScan]:
        """End the pending scan (the line went quiet); return it if there was one."""
        if not self._chars:
            return []
        scan = HidScan(text="".join(self._chars), ended_by="timeout")
        self._chars.clear()
        return [scan]


class _EventLike(Protocol):
    type: int
    code: int
    value: int

    def timestamp(self) -> float: ...


class EventSource(Protocol):
    """What :func:`iter_scans` needs of a python-evdev device: ``fileno`` and ``read``."""

    def fileno(self) -> int: ...

    def read(self) -> Iterable[Any]: ...


def iter_scans(
    source: EventSource, decoder: KeyDecoder, *, idle_timeout: float | None = None
) -> Iterator[HidScan]:
    """Yield scans read from ``source`` until it reaches end of file.

    When nothing arrives for ``idle_timeout`` seconds (default: the decoder's
    inter-key timeout) a pending scan is flushed. A real device never ends; its
    removal surfaces as ``OSError`` from python-evdev, for the supervisor.
    """
    wait = decoder.inter_key_timeout if idle_timeout is None else idle_timeout
    while True:
        ready, _, _ = select.select([source.fileno()], [], [], wait)
        if not ready:
            yield from decoder.flush()
            continue
        try:
            events: list[_EventLike] = list(source.read())
        except BlockingIOError:
            continue
        if not events:  # readable yet empty: end of file
            yield from decoder.flush()
            return
        for event in events:
            yield from decoder.feed(event.type, event.code, event.value, event.timestamp())


class HidScanner:
    """A keyboard-mode scanner at ``/dev/input/eventN``, grabbed exclusively.

    Needs a real input device node; not exercised in tests (no /dev/input here).
    """

    def __init__(self, path: str, *, inter_key_timeout: float = 0.05) -> None:
        self.path = path
        self.decoder = KeyDecoder(inter_key_timeout=inter_key_timeout)
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
            with contextlib.suppress(OSError):  # already gone (unplugged)
                self._device.ungrab()
            self._device.close()
            self._device = None

    def __enter__(self) -> HidScanner:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def scans(self) -> Iterator[HidScan]:
        """Yield scans forever; raises ``OSError`` when the device disappears."""
        if self._device is None:
            raise DeviceError(f"scanner {self.path}: not open; call open() first")
        return iter_scans(self._device, self.decoder)
