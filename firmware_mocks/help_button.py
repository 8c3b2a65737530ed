"""An emulated help button: real ``input_event`` records through a pipe.

:class:`EmulatedHelpButton` is what :class:`edge_agent.devices.DeviceSupervisor`
opens instead of ``/dev/input/eventN`` (its ``open_help_button`` seam): the
read path is python-evdev's own (:class:`firmware_mocks.evdev_replay.PipeEventSource`)
and :func:`drivers.help_button.iter_presses`, only the kernel is replaced.
``press(at)`` writes what a USB encoder sends for one press at time ``at``
(seconds): MSC_SCAN, key down, SYN, key up, SYN.
"""

from __future__ import annotations

from collections.abc import Iterator

from drivers.help_button import iter_presses
from drivers.scanner_hid import EV_KEY, EV_MSC, EV_SYN
from firmware_mocks.evdev_replay import MSC_SCAN, SYN_REPORT, PipeEventSource, RecordedEvent


class EmulatedHelpButton:
    def __init__(self, key_code: int = 138) -> None:
        self.key_code = key_code
        self.source = PipeEventSource()

    def press(self, at: float, *, key_code: int | None = None, repeat: int = 0) -> None:
        code = self.key_code if key_code is None else key_code
        sec, usec = int(at), round((at - int(at)) * 1_000_000)

        def ev(t: int, c: int, v: int) -> RecordedEvent:
            return RecordedEvent(sec, usec, t, c, v)

        events = [ev(EV_MSC, MSC_SCAN, 0x90001), ev(EV_KEY, code, 1), ev(EV_SYN, SYN_REPORT, 0)]
        events += [ev(EV_KEY, code, 2), ev(EV_SYN, SYN_REPORT, 0)] * repeat  # auto-repeat
        events += [ev(EV_KEY, code, 0), ev(EV_SYN, SYN_REPORT, 0)]
        self.source.feed(events)

    # What the supervisor calls (drivers.help_button.HelpButton's shape).
    def presses(self) -> Iterator[float | None]:
        return iter_presses(self.source, self.key_code)

    def close(self) -> None:
        """Closing is left to the test (the supervisor closes on stop or on failure)."""
