"""Device supervision: open every configured device, keep it open, report its health.

Theory of operation
-------------------
:class:`DeviceSupervisor` runs one thread per configured device (``[devices]`` in
the agent's configuration). Every thread is a loop that cannot die of a device:
each pass catches every exception, records it in the device's health, waits and
tries again (architecture invariant 6). No device thread shares a lock with
another, so a card reader that stops answering or floods the line with garbage
never delays the printer's status polls, and vice versa.

- **printer**: :meth:`drivers.printer.ReceiptPrinter.poll_status` every
  ``printer_poll_s``. The driver reopens a lost connection by itself, so the
  printer's health follows it: ``paper_out`` when the paper ends, ``ok`` again
  when it is refilled, ``unplugged`` / ``ok`` across a pulled cable. Receipts
  are printed by :mod:`edge_agent.receipts` through :attr:`DeviceSupervisor.printer`
  (the driver is thread-safe). A poll that raises (a kiosk without libusb, a
  bug) makes the printer ``error``; the same fault poll after poll is logged
  once and keeps its ``since``.
- **scanner** (USB-CDC), **hid_scanner** (evdev) and **card_reader** (serial):
  opened by path or URL; when opening fails or the port dies (``OSError``, as
  the drivers promise) the device is ``unplugged`` and reopened every
  ``reopen_s``. The card reader is asked for its status every
  ``reader_check_s``: silence makes it ``not_answering``, corrupt frames make it
  ``garbled``, until the next good answer makes it ``ok`` again.

- **help_button** (evdev, :mod:`drivers.help_button`): one ``help_pressed``
  event per (debounced) press of ``help_button_key``; reopened like the
  scanners. ``open_help_button`` hands in another source (tests: a pipe fed
  real ``input_event`` records, firmware_mocks.evdev_replay).

What the scanners and the reader produce (identities, codes, card events) is
queued as :class:`DeviceEvent` for the kiosk's screen, at most
:data:`MAX_EVENTS`; when nobody takes them the oldest are dropped (a citizen
who scanned a minute ago has moved on).

:meth:`DeviceSupervisor.health` is a JSON-ready dict, per device: ``state``,
``last_error`` (kept after recovery, as history), ``since`` (ISO 8601, when the
state began, not the last poll); the printer adds ``pending_receipts``. Every
change of state is logged once (INFO when the device works again, WARNING or
ERROR when it does not); repeats of the same state stay quiet. The agent puts it in every
heartbeat under ``devices``.

ID numbers never reach the logs: identities are logged through their masked
``repr`` and scanned codes only by length.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from drivers.card_reader import CardReader, CardReadError, ReaderNotAnswering, citizen_text
from drivers.card_reader_protocol import CardInserted, CardRemoved, FrameError, ReaderError
from drivers.help_button import HelpButton
from drivers.identity import Identity
from drivers.printer import ReceiptPrinter
from drivers.scanner_hid import HidScanner
from drivers.scanner_serial import CodeScanned, IdentityScanned, ScanEvent, SerialScanner
from edge_agent.config import DevicesSection

__all__ = ["MAX_EVENTS", "DeviceEvent", "DeviceHealth", "DeviceSupervisor"]

log = logging.getLogger("aps.devices")

#: Device events kept for the screen, at most (oldest dropped first).
MAX_EVENTS = 64
#: How long a scanner read or a reader poll blocks before the loop checks for stop.
_SLICE_S = 0.2

DeviceName = Literal["printer", "scanner", "hid_scanner", "card_reader", "help_button"]
EventKind = Literal[
    "identity",
    "code",
    "scan_rejected",
    "card_inserted",
    "card_removed",
    "card_error",
    "help_pressed",
]


@dataclass(frozen=True, kw_only=True)
class DeviceHealth:
    """One device's health: its state, the last fault seen, and when the state began."""

    state: str
    last_error: str | None
    since: datetime

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "last_error": self.last_error,
            "since": self.since.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True, kw_only=True)
class DeviceEvent:
    """Something a citizen did at a device.

    ``identity`` for ``identity`` (``repr`` masks the ID number); ``text`` is the
    scanned code for ``code``, the reason (English, for logs) for
    ``scan_rejected``, and the Vietnamese message for the screen for ``card_error``.
    """

    device: DeviceName
    kind: EventKind
    identity: Identity | None = None
    text: str | None = None

    def __repr__(self) -> str:
        shown = f"{len(self.text)} chars" if self.kind == "code" and self.text else self.text
        return (
            f"DeviceEvent(device={self.device!r}, kind={self.kind!r}, "
            f"identity={self.identity!r}, text={shown!r})"
        )


class _Closable(Protocol):
    def close(self) -> None: ...


class _PressSource(Protocol):
    """The help button as the supervisor uses it (drivers.help_button.HelpButton)."""

    def close(self) -> None: ...

    def presses(self) -> Iterator[float | None]: ...


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OSError) else f"{type(exc).__name__}: {text}"


def _printer_setup_fault(exc: BaseException, url: str) -> str | None:
    """The operator's message for a printer fault of the kiosk's set-up, else None."""
    from usb.core import NoBackendError  # pyusb comes with python-escpos

    if isinstance(exc, NoBackendError):
        return (
            f"printer {url}: no USB backend: libusb-1.0 is not installed on this kiosk; "
            "install it (apt-get install libusb-1.0-0) and restart aps-agent"
        )
    return None


class DeviceSupervisor:
    """Opens, watches and reopens the kiosk's devices; see the module docstring.

    ``usb_backend`` is handed to the printer driver (the emulated printer in
    tests and the demo); ``clock`` returns aware datetimes for ``since``.
    """

    def __init__(
        self,
        cfg: DevicesSection,
        *,
        spool_dir: Path,
        usb_backend: object | None = None,
        clock: Callable[[], datetime] | None = None,
        open_help_button: Callable[[], _PressSource] | None = None,
    ) -> None:
        self.cfg = cfg
        self._open_help_button = open_help_button
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._health: dict[str, DeviceHealth] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._events: deque[DeviceEvent] = deque(maxlen=MAX_EVENTS)
        self._event_ready = threading.Condition(self._lock)
        self.printer: ReceiptPrinter | None = None
        self._printer_error: DeviceHealth | None = None
        self._printer_logged: tuple[str, str | None] | None = None  # last (state, error) logged
        if cfg.printer:
            try:
                self.printer = ReceiptPrinter(
                    cfg.printer, spool_dir=spool_dir, usb_backend=usb_backend, clock=self._clock
                )
            except Exception as exc:  # a bad spool directory must not stop the agent
                log.error("printer %s cannot be used: %s", cfg.printer, _describe(exc))
                self._printer_error = DeviceHealth(
                    state="error", last_error=_describe(exc), since=self._clock()
                )
        for name in ("scanner", "hid_scanner", "card_reader", "help_button"):
            if getattr(cfg, name):
                self._health[name] = DeviceHealth(
                    state="starting", last_error=None, since=self._clock()
                )

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start one thread per configured device."""
        targets: list[tuple[str, Callable[[], None]]] = []
        if self.printer is not None:
            targets.append(("printer", self._run_printer))
        if self.cfg.scanner:
            targets.append(("scanner", self._run_scanner))
        if self.cfg.hid_scanner:
            targets.append(("hid_scanner", self._run_hid_scanner))
        if self.cfg.card_reader:
            targets.append(("card_reader", self._run_card_reader))
        if self.cfg.help_button:
            targets.append(("help_button", self._run_help_button))
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"device-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads and close the devices."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            # The HID thread blocks in evdev until a key arrives; it is a daemon.
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()
        if self.printer is not None:
            self.printer.close()

    def __enter__(self) -> DeviceSupervisor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- health ------------------------------------------------------------------------
    def states(self) -> dict[str, str]:
        """Each configured device's state alone (no I/O at all): what the app compares to
        send a heartbeat as soon as one changes (docs/fleet.md)."""
        with self._lock:
            out = {name: h.state for name, h in self._health.items()}
        if self._printer_error is not None:
            out["printer"] = self._printer_error.state
        elif self.printer is not None:
            out["printer"] = self.printer.status().state.value
        return out

    def health(self) -> dict[str, dict[str, Any]]:
        """Per configured device: ``state``, ``last_error``, ``since`` (no I/O but a glob)."""
        with self._lock:
            out = {name: h.to_json_dict() for name, h in self._health.items()}
        if self._printer_error is not None:
            out["printer"] = self._printer_error.to_json_dict()
        elif self.printer is not None:
            status = self.printer.status()
            out["printer"] = DeviceHealth(
                state=status.state.value, last_error=status.last_error, since=status.since
            ).to_json_dict()
            try:
                out["printer"]["pending_receipts"] = len(self.printer.unprinted())
            except OSError as exc:
                out["printer"]["pending_receipts"] = None
                out["printer"]["last_error"] = f"receipt spool unreadable: {exc}"
        return out

    def _set(self, name: str, state: str, error: str | None = None) -> None:
        with self._lock:
            old = self._health.get(name)
            if old is not None and old.state == state and error in (None, old.last_error):
                return
            since = old.since if old is not None and old.state == state else self._clock()
            last_error = error if error is not None else (old.last_error if old else None)
            self._health[name] = DeviceHealth(state=state, last_error=last_error, since=since)
        if old is None or old.state != state:
            if error is None:
                log.info("device %s: %s", name, state)
            else:
                log.warning("device %s: %s: %s", name, state, error)

    # --- events ------------------------------------------------------------------------
    def _emit(self, event: DeviceEvent) -> None:
        with self._event_ready:
            if len(self._events) == self._events.maxlen:
                log.warning("device events: none taken, dropping the oldest")
            self._events.append(event)
            self._event_ready.notify_all()
        log.info("device event %r", event)

    def next_event(self, timeout: float = 0.0) -> DeviceEvent | None:
        """The oldest event not yet taken, waiting up to ``timeout`` seconds for one."""
        with self._event_ready:
            self._event_ready.wait_for(lambda: bool(self._events), timeout)
            return self._events.popleft() if self._events else None

    # --- printer -----------------------------------------------------------------------
    def _run_printer(self) -> None:
        while not self._stop.is_set():
            self.poll_printer()
            self._stop.wait(self.cfg.printer_poll_s)

    def poll_printer(self) -> None:
        """One status poll; never raises.

        A change of state is logged once; a printer that keeps failing the same
        way stays quiet, and its ``since`` stays when the state began.
        """
        if self.printer is None:
            return
        try:
            status = self.printer.poll_status()
        except Exception as exc:  # the driver maps I/O faults; the rest is set-up or a bug
            known = _printer_setup_fault(exc, self.cfg.printer)
            error = known or _describe(exc)
            old = self._printer_error
            if old is None or old.last_error != error:
                since = old.since if old is not None else self._clock()
                self._printer_error = DeviceHealth(state="error", last_error=error, since=since)
                # A traceback only for what the driver did not foresee, and only once.
                log.error("device printer: error: %s", error, exc_info=known is None)
                self._printer_logged = ("error", error)
            return
        self._printer_error = None
        if self._printer_logged != (status.state.value, status.last_error):
            previous = self._printer_logged
            self._printer_logged = (status.state.value, status.last_error)
            if previous is not None and previous[0] == status.state.value:
                return  # same state, a new detail: not a change worth a line
            if status.can_print:
                log.info("device printer: %s", status.state.value)
            else:
                log.warning("device printer: %s: %s", status.state.value, status.last_error)

    # --- serial and evdev devices ------------------------------------------------------
    def _supervise(
        self, name: str, open_device: Callable[[], _Closable], serve: Callable[[Any], None]
    ) -> None:
        """Open, serve until the device fails, close, wait, again; until stopped."""
        while not self._stop.is_set():
            try:
                device = open_device()
            except Exception as exc:
                state = "unplugged" if isinstance(exc, OSError) else "error"
                self._set(name, state, _describe(exc))
                self._stop.wait(self.cfg.reopen_s)
                continue
            self._set(name, "ok")
            try:
                serve(device)
            except Exception as exc:
                state = "unplugged" if isinstance(exc, OSError) else "error"
                self._set(name, state, _describe(exc))
            finally:
                with contextlib.suppress(Exception):  # a yanked device may fail to close
                    device.close()
            self._stop.wait(self.cfg.reopen_s)

    def _run_scanner(self) -> None:
        def open_scanner() -> SerialScanner:
            scanner = SerialScanner(self.cfg.scanner)
            scanner.open()
            return scanner

        def serve(scanner: SerialScanner) -> None:
            while not self._stop.is_set():
                event = scanner.read_scan(_SLICE_S)
                if event is not None:
                    self._emit(self._scan_event("scanner", event))

        self._supervise("scanner", open_scanner, serve)

    @staticmethod
    def _scan_event(device: DeviceName, event: ScanEvent) -> DeviceEvent:
        if isinstance(event, IdentityScanned):
            return DeviceEvent(device=device, kind="identity", identity=event.identity)
        if isinstance(event, CodeScanned):
            return DeviceEvent(device=device, kind="code", text=event.text)
        return DeviceEvent(device=device, kind="scan_rejected", text=event.reason)

    def _run_hid_scanner(self) -> None:
        def open_scanner() -> HidScanner:
            scanner = HidScanner(self.cfg.hid_scanner)
            scanner.open()
            return scanner

        def serve(scanner: HidScanner) -> None:
            for scan in scanner.scans():
                if self._stop.is_set():
                    return
                self._emit(DeviceEvent(device="hid_scanner", kind="code", text=scan.text))
            raise OSError(f"scanner {self.cfg.hid_scanner}: input device closed")

        self._supervise("hid_scanner", open_scanner, serve)

    def _run_help_button(self) -> None:
        def open_button() -> _PressSource:
            if self._open_help_button is not None:
                return self._open_help_button()
            button = HelpButton(self.cfg.help_button, self.cfg.help_button_key)
            button.open()
            return button

        def serve(button: _PressSource) -> None:
            for press in button.presses():
                if self._stop.is_set():
                    return
                if press is not None:
                    self._emit(DeviceEvent(device="help_button", kind="help_pressed"))
            raise OSError(f"help button {self.cfg.help_button}: input device closed")

        self._supervise("help_button", open_button, serve)

    def _run_card_reader(self) -> None:
        def open_reader() -> CardReader:
            reader = CardReader(self.cfg.card_reader)
            reader.open()
            return reader

        self._supervise("card_reader", open_reader, self._serve_reader)

    def _serve_reader(self, reader: CardReader) -> None:
        name: DeviceName = "card_reader"
        next_check = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_check:
                try:
                    reader.card_present()
                    self._set(name, "ok")
                except ReaderNotAnswering as exc:
                    self._set(name, "not_answering", str(exc))
                except CardReadError as exc:
                    self._set(name, "ok", f"reader error on status: {exc}")
                next_check = time.monotonic() + self.cfg.reader_check_s
            for notice in reader.poll(_SLICE_S):
                if isinstance(notice, FrameError):
                    self._set(name, "garbled", f"corrupt data from the reader: {notice.kind.value}")
                elif isinstance(notice, CardRemoved):
                    self._emit(DeviceEvent(device=name, kind="card_removed"))
                elif isinstance(notice, ReaderError):
                    self._emit(
                        DeviceEvent(device=name, kind="card_error", text=citizen_text(notice.code))
                    )
                elif isinstance(notice, CardInserted):
                    self._emit(DeviceEvent(device=name, kind="card_inserted"))
                    self._read_card(reader)

    def _read_card(self, reader: CardReader) -> None:
        name: DeviceName = "card_reader"
        try:
            identity = reader.read_identity()
        except ReaderNotAnswering as exc:
            self._set(name, "not_answering", str(exc))
            return
        except CardReadError as exc:
            self._emit(DeviceEvent(device=name, kind="card_error", text=exc.citizen_text))
            return
        self._set(name, "ok")
        self._emit(DeviceEvent(device=name, kind="identity", identity=identity))
