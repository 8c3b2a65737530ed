"""Replays key events into python-evdev's real read path, without /dev/uinput.

:class:`PipeEventSource` is an ``evdev.eventio.EventIO`` whose ``fd`` is the
read end of a pipe. :meth:`PipeEventSource.feed` writes packed ``struct
input_event`` records (``"llHHi"``: seconds, microseconds, type, code, value)
into the write end, and python-evdev's C reader turns them into real
``InputEvent`` objects, exactly as it does for ``/dev/input/eventN``.

:func:`parse_evemu` reads evemu recordings (``E: <sec>.<usec> <type hex> <code
hex> <value>``; other lines are skipped), and :func:`text_to_key_events` types
an ASCII string the way a keyboard-mode scanner does (MSC_SCAN, key down, SYN,
key up, SYN per character, shift around upper-case and symbols, Enter last).
"""

from __future__ import annotations

import os
import select
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from evdev.eventio import EventIO

from drivers.scanner_hid import EV_KEY, EV_MSC, EV_SYN, KEY_ENTER, KEY_LEFTSHIFT, KEYMAP

__all__ = [
    "INPUT_EVENT",
    "PipeEventSource",
    "RecordedEvent",
    "parse_evemu",
    "text_to_key_events",
]

#: ``struct input_event`` on 64-bit Linux: timeval (two longs), type, code, value.
INPUT_EVENT: Final = struct.Struct("llHHi")
MSC_SCAN: Final = 0x04
SYN_REPORT: Final = 0x00
# Writes of at most PIPE_BUF bytes are atomic, so the reader never sees half a record.
_RECORDS_PER_WRITE: Final = select.PIPE_BUF // INPUT_EVENT.size


def _reverse_keymap() -> dict[str, tuple[int, bool]]:
    """Character -> (key code, needs shift); main keyboard before keypad, as scanners do."""
    out: dict[str, tuple[int, bool]] = {}
    for code in sorted(KEYMAP, key=lambda c: (c >= 55, c)):
        plain, shifted = KEYMAP[code]
        out.setdefault(plain, (code, False))
        out.setdefault(shifted, (code, shifted != plain))
    return out


_CHAR_TO_KEY: Final = _reverse_keymap()


@dataclass(frozen=True)
class RecordedEvent:
    sec: int
    usec: int
    type: int
    code: int
    value: int

    def pack(self) -> bytes:
        return INPUT_EVENT.pack(self.sec, self.usec, self.type, self.code, self.value)


def parse_evemu(lines: str | Iterable[str]) -> list[RecordedEvent]:
    """Events of an evemu recording; raises ``ValueError`` naming a malformed line."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    events: list[RecordedEvent] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line.startswith("E:"):
            continue  # headers (N:, I:, P:, B:, A:, L:, S:) and comments
        parts = line[2:].split()
        try:
            if len(parts) < 4:
                raise ValueError("expected '<sec>.<usec> <type> <code> <value>'")
            sec_text, _, usec_text = parts[0].partition(".")
            events.append(
                RecordedEvent(
                    int(sec_text),
                    int(usec_text or "0"),
                    int(parts[1], 16),
                    int(parts[2], 16),
                    int(parts[3]),
                )
            )
        except ValueError as exc:
            raise ValueError(f"evemu line {number}: {exc}: {line!r}") from None
    return events


def text_to_key_events(
    text: str, *, start: float = 1000.0, key_interval: float = 0.004, enter: bool = True
) -> list[RecordedEvent]:
    """Key events a keyboard-mode scanner sends for ``text`` (ASCII only)."""
    events: list[RecordedEvent] = []
    clock = start

    def emit(ev_type: int, code: int, value: int) -> None:
        micros = round(clock * 1_000_000)
        events.append(RecordedEvent(micros // 1_000_000, micros % 1_000_000, ev_type, code, value))

    def key(code: int, value: int) -> None:
        emit(EV_MSC, MSC_SCAN, 0x70000 + code)
        emit(EV_KEY, code, value)
        emit(EV_SYN, SYN_REPORT, 0)

    for char in text:
        if char not in _CHAR_TO_KEY:
            raise ValueError(f"text: {char!r} cannot be typed by a keyboard-mode scanner")
        code, shifted = _CHAR_TO_KEY[char]
        if shifted:
            key(KEY_LEFTSHIFT, 1)
        key(code, 1)
        key(code, 0)
        if shifted:
            key(KEY_LEFTSHIFT, 0)
        clock += key_interval
    if enter:
        key(KEY_ENTER, 1)
        key(KEY_ENTER, 0)
    return events


class PipeEventSource(EventIO):
    """An event device backed by a pipe; feed it, then read it with python-evdev."""

    def __init__(self) -> None:
        read_end, write_end = os.pipe()
        self.fd = read_end
        self.path = f"pipe:{read_end}"
        self._write_end: int | None = write_end

    def feed(self, events: Iterable[RecordedEvent]) -> None:
        """Write events into the pipe in atomic chunks of whole records.

        The pipe holds about 2,700 records; feed more from another thread.
        """
        if self._write_end is None:
            raise ValueError("feed: the write end is closed; make a new source")
        batch = [event.pack() for event in events]
        for first in range(0, len(batch), _RECORDS_PER_WRITE):
            chunk = b"".join(batch[first : first + _RECORDS_PER_WRITE])
            written = os.write(self._write_end, chunk)
            if written != len(chunk):  # cannot happen for a blocking pipe and <= PIPE_BUF
                raise OSError(f"feed: short write of {written}/{len(chunk)} bytes")

    def close_writer(self) -> None:
        """Signal end of file to the reader (like unplugging, without the error)."""
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None

    def close(self) -> None:
        self.close_writer()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
