"""The receipt printer driver: a device URL, python-escpos, status, faults, reprints.

Theory of operation
-------------------
``ReceiptPrinter(url, spool_dir=...)`` picks the python-escpos transport from the
URL (see :func:`parse_printer_url`)::

    usb://04b8:0e15?profile=TM-T20II&timeout=2      escpos.printer.Usb over pyusb
    serial:///dev/ttyUSB0?baudrate=19200            escpos.printer.Serial over pyserial
    tcp://192.168.1.50:9100                         escpos.printer.Network

The connection is opened lazily and dropped on any I/O error; the next poll or
print opens it again, so an unplugged and replugged printer recovers without
restarting the agent.

Printing a receipt: the bytes are encoded first (:func:`drivers.receipt.encode_receipt`
on a ``Dummy`` with the printer's profile), saved in the spool directory as
``<dossier code>.bin`` with a ``.pending`` marker, then the status is polled; only
``ok`` or ``paper_near_end`` lets the bytes go out, through the transport's
``_raw()`` (python-escpos's one transport method), and the status is polled
again. Only then is the marker removed. A receipt that could not be printed is
therefore on disk, listed by :meth:`ReceiptPrinter.unprinted` and sent again by
:meth:`ReceiptPrinter.reprint`.

Status: :meth:`ReceiptPrinter.poll_status` asks ``DLE EOT 1``, ``2`` and ``4``
(:mod:`drivers.printer_status`) and returns a :class:`PrinterStatus`. A printer
that does not answer is ``offline`` ("silent"), never "ok". Poll every few
seconds (2-5 s is plenty); each poll is three tiny round trips.

All methods are thread-safe (one lock per printer).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from drivers import DeviceError
from drivers.printer_status import (
    PrinterState,
    StatusQuery,
    StatusReply,
    StatusReplyError,
    derive_state,
    parse_status_reply,
    status_request,
)
from drivers.receipt import (
    DEFAULT_PROFILE,
    PAPER_WIDTH_PX,
    ReceiptData,
    ReceiptFonts,
    encode_receipt,
)

__all__ = [
    "PrinterConfigError",
    "PrinterFault",
    "PrinterState",
    "PrinterStatus",
    "PrinterURL",
    "ReceiptPrinter",
    "ReceiptSpool",
    "parse_printer_url",
]

#: Bytes per transport write; a fault mid-receipt is noticed within one chunk.
CHUNK_BYTES = 16 * 1024
DEFAULT_TIMEOUT_S = 2.0
_OPTIONS: dict[str, frozenset[str]] = {
    "usb": frozenset({"profile", "timeout"}),
    "serial": frozenset({"profile", "timeout", "baudrate"}),
    "tcp": frozenset({"profile", "timeout"}),
}
_USB_ID = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})")
_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BAUDRATES = frozenset({1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200})


class PrinterConfigError(DeviceError, ValueError):
    """The printer URL or options are wrong; the message says which and how to fix it."""


class PrinterFault(DeviceError):
    """A receipt could not be printed; ``status`` says why, ``dossier_code`` which one."""

    def __init__(self, message: str, *, status: PrinterStatus, dossier_code: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.dossier_code = dossier_code


@dataclass(frozen=True, kw_only=True)
class PrinterURL:
    """A parsed printer URL."""

    scheme: Literal["usb", "serial", "tcp"]
    profile: str = DEFAULT_PROFILE
    timeout_s: float = DEFAULT_TIMEOUT_S
    vendor_id: int = 0
    product_id: int = 0
    path: str = ""
    baudrate: int = 19200
    host: str = ""
    port: int = 9100


def _profile_width(profile: str) -> int:
    from escpos.capabilities import get_profile

    try:
        pixels = get_profile(profile).profile_data["media"]["width"]["pixels"]
    except KeyError:
        raise PrinterConfigError(
            f"printer profile {profile!r} is unknown to python-escpos: use one of its "
            "profile names, e.g. TM-T20II (80 mm) or NT-5890K (58 mm)"
        ) from None
    if not isinstance(pixels, int):
        raise PrinterConfigError(
            f"printer profile {profile!r} has no known paper width ({pixels!r}): choose a "
            "profile with media width, e.g. TM-T20II"
        )
    return pixels


def parse_printer_url(url: str) -> PrinterURL:
    """Parse ``usb://VID:PID``, ``serial:///dev/tty...`` or ``tcp://host[:port]`` (+ options)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _OPTIONS:
        raise PrinterConfigError(
            f"printer URL {url!r}: scheme {parts.scheme!r} is not supported; use "
            "usb://VID:PID, serial:///dev/ttyUSB0?baudrate=19200 or tcp://host:9100"
        )
    try:
        options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False))
    except ValueError:
        raise PrinterConfigError(f"printer URL {url!r}: the query string is malformed") from None
    unknown = sorted(set(options) - _OPTIONS[scheme])
    if unknown:
        raise PrinterConfigError(
            f"printer URL {url!r}: unknown option(s) {', '.join(unknown)} for {scheme}://; "
            f"allowed: {', '.join(sorted(_OPTIONS[scheme]))}"
        )
    common: dict[str, Any] = {}
    if "profile" in options:
        common["profile"] = options["profile"]
    _profile_width(common.get("profile", DEFAULT_PROFILE))
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0.05 <= timeout <= 60:
            raise PrinterConfigError(
                f"printer URL {url!r}: timeout={options['timeout']!r} must be seconds "
                "between 0.05 and 60"
            )
        common["timeout_s"] = timeout
    if scheme == "usb":
        match = _USB_ID.fullmatch(parts.netloc)
        if match is None or parts.path not in ("", "/"):
            raise PrinterConfigError(
                f"printer URL {url!r}: write USB printers as usb://VID:PID with 4 hex digits "
                "each, e.g. usb://04b8:0e15 (see lsusb)"
            )
        return PrinterURL(
            scheme="usb",
            vendor_id=int(match.group(1), 16),
            product_id=int(match.group(2), 16),
            **common,
        )
    if scheme == "serial":
        if parts.netloc or not parts.path.startswith("/"):
            raise PrinterConfigError(
                f"printer URL {url!r}: write serial printers as serial:///dev/ttyUSB0 "
                "(three slashes, absolute device path)"
            )
        baudrate = 19200
        if "baudrate" in options:
            raw = options["baudrate"]
            if not raw.isdigit() or int(raw) not in _BAUDRATES:
                raise PrinterConfigError(
                    f"printer URL {url!r}: baudrate={raw!r} must be one of "
                    f"{', '.join(str(b) for b in sorted(_BAUDRATES))}"
                )
            baudrate = int(raw)
        return PrinterURL(scheme="serial", path=parts.path, baudrate=baudrate, **common)
    try:
        port = parts.port or 9100
    except ValueError:
        port = -1
    if not parts.hostname or not 0 < port < 65536 or parts.path not in ("", "/"):
        raise PrinterConfigError(f"printer URL {url!r}: write network printers as tcp://host:9100")
    return PrinterURL(scheme="tcp", host=parts.hostname, port=port, **common)


@dataclass(frozen=True, kw_only=True)
class PrinterStatus:
    """The printer's health: ``state``, since when, and the most recent fault message.

    ``last_error`` is kept after the printer recovers (history for the operator);
    ``state`` alone says whether the printer works now.
    """

    state: PrinterState
    last_error: str | None
    since: datetime

    @property
    def can_print(self) -> bool:
        """True when a receipt would be sent to the printer now."""
        return self.state.can_print


def _age(path: Path) -> tuple[int, str]:
    # Timestamps are coarse (one kernel tick): the name breaks ties.
    return path.stat().st_mtime_ns, path.name


class ReceiptSpool:
    """Receipt bytes on disk, by dossier code: ``<code>.bin`` + ``<code>.pending`` until printed.

    At most ``max_receipts`` printed receipts are kept (oldest removed first);
    unprinted ones are never removed.
    """

    def __init__(self, directory: Path, *, max_receipts: int = 2000) -> None:
        if max_receipts < 1:
            raise PrinterConfigError("receipt spool max_receipts must be at least 1")
        self.directory = Path(directory)
        self.max_receipts = max_receipts
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # receipts carry names

    def _path(self, dossier_code: str, suffix: str) -> Path:
        if not isinstance(dossier_code, str) or not _CODE_RE.fullmatch(dossier_code):
            raise PrinterConfigError(
                f"dossier code {dossier_code!r} cannot name a spooled receipt: letters, "
                "digits, '.', '-', '_' only, at most 64"
            )
        return self.directory / f"{dossier_code}{suffix}"

    def save(self, dossier_code: str, payload: bytes) -> Path:
        """Store ``payload`` atomically and mark it unprinted."""
        path = self._path(dossier_code, ".bin")
        tmp = path.with_suffix(".bin.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._path(dossier_code, ".pending").touch(mode=0o600)
        self._prune()
        return path

    def load(self, dossier_code: str) -> bytes:
        """The stored bytes of ``dossier_code``'s receipt."""
        path = self._path(dossier_code, ".bin")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise PrinterConfigError(
                f"no stored receipt for dossier {dossier_code!r} in {self.directory}: "
                "print it with print_receipt() first"
            ) from None

    def mark_pending(self, dossier_code: str) -> None:
        """Mark a stored receipt unprinted again (before a reprint)."""
        self.load(dossier_code)  # refuses unknown codes
        self._path(dossier_code, ".pending").touch(mode=0o600)

    def mark_printed(self, dossier_code: str) -> None:
        """Remove the unprinted marker."""
        self._path(dossier_code, ".pending").unlink(missing_ok=True)
        self._prune()

    def unprinted(self) -> list[str]:
        """Dossier codes whose receipt is stored but not (completely) printed, oldest first."""
        markers = sorted(self.directory.glob("*.pending"), key=_age)
        return [p.name[: -len(".pending")] for p in markers]

    def _prune(self) -> None:
        printed = [
            p for p in self.directory.glob("*.bin") if not p.with_suffix(".pending").exists()
        ]
        excess = len(printed) - self.max_receipts
        if excess > 0:
            printed.sort(key=_age)
            for path in printed[:excess]:
                path.unlink(missing_ok=True)


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or getattr(exc, "errno", None) == errno.ETIMEDOUT


class ReceiptPrinter:
    """A receipt printer named by a URL; see the module docstring.

    ``usb_backend``: a pyusb backend object (``usb.backend.IBackend``) used to find
    the USB printer instead of libusb (the emulated printer in tests and demos).
    ``clock``: returns the current time (timezone-aware) for :attr:`PrinterStatus.since`.
    """

    def __init__(
        self,
        url: str | PrinterURL,
        *,
        spool_dir: Path,
        usb_backend: object | None = None,
        fonts: ReceiptFonts | None = None,
        max_receipts: int = 2000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.url = url if isinstance(url, PrinterURL) else parse_printer_url(url)
        self.width_px = _profile_width(self.url.profile)
        if usb_backend is not None and self.url.scheme != "usb":
            raise PrinterConfigError("usb_backend given but the printer URL is not usb://")
        self.spool = ReceiptSpool(spool_dir, max_receipts=max_receipts)
        self._usb_backend = usb_backend
        self._fonts = fonts
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._escpos: Any = None
        self._status = PrinterStatus(
            state=PrinterState.OFFLINE, last_error=None, since=self._clock()
        )

    # --- connection ------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._escpos is not None:
            return self._escpos
        url = self.url
        if url.scheme == "usb":
            from escpos.printer import Usb

            usb_args: dict[str, Any] = {}
            if self._usb_backend is not None:
                usb_args["backend"] = self._usb_backend
            printer = Usb(
                url.vendor_id,
                url.product_id,
                usb_args=usb_args,  # Usb mutates it: a fresh dict per connection
                timeout=int(url.timeout_s * 1000),
                profile=url.profile,
            )
        elif url.scheme == "serial":
            from escpos.printer import Serial

            printer = Serial(
                devfile=url.path,
                baudrate=url.baudrate,
                timeout=url.timeout_s,
                dsrdtr=False,
                profile=url.profile,
            )
        else:
            from escpos.printer import Network

            printer = Network(url.host, url.port, timeout=url.timeout_s, profile=url.profile)
        printer.open()  # raises escpos DeviceNotFoundError when absent
        self._escpos = printer
        return printer

    def _disconnect(self) -> None:
        printer, self._escpos = self._escpos, None
        if printer is not None:
            with contextlib.suppress(Exception):  # a yanked device may fail to close
                printer.close()

    def close(self) -> None:
        """Close the connection (the next use opens it again)."""
        with self._lock:
            self._disconnect()

    # --- status ------------------------------------------------------------------------
    def _set(self, state: PrinterState, error: str | None) -> PrinterStatus:
        since = self._status.since if state is self._status.state else self._clock()
        last_error = error if error is not None else self._status.last_error
        self._status = PrinterStatus(state=state, last_error=last_error, since=since)
        return self._status

    def _describe(self) -> str:
        u = self.url
        if u.scheme == "usb":
            return f"usb://{u.vendor_id:04x}:{u.product_id:04x}"
        if u.scheme == "serial":
            return f"serial://{u.path}"
        return f"tcp://{u.host}:{u.port}"

    def _query(self, printer: Any, query: StatusQuery) -> StatusReply:
        printer._raw(status_request(query))
        # python-escpos's Serial._read() waits for 16 bytes (the whole timeout);
        # a status reply is one byte.
        serial = self.url.scheme == "serial"
        reply = printer.device.read(1) if serial else printer._read()
        return parse_status_reply(query, reply)

    def _poll_locked(self) -> PrinterStatus:
        reused = self._escpos is not None
        status = self._poll_once()
        if reused and self._escpos is None and status.state is PrinterState.UNPLUGGED:
            # The connection we held died (e.g. unplugged and plugged back since the
            # last use): try once with a fresh one before reporting the printer gone.
            status = self._poll_once()
        return status

    def _poll_once(self) -> PrinterStatus:
        from escpos.exceptions import DeviceNotFoundError

        try:
            printer = self._connect()
        except DeviceNotFoundError:
            self._disconnect()
            return self._set(
                PrinterState.UNPLUGGED,
                f"printer {self._describe()} not found: check its cable and power",
            )
        try:
            online = self._query(printer, StatusQuery.PRINTER)
            cause = self._query(printer, StatusQuery.OFFLINE_CAUSE)
            paper = self._query(printer, StatusQuery.PAPER)
        except StatusReplyError as exc:
            return self._set(PrinterState.OFFLINE, str(exc))
        except OSError as exc:
            if _is_timeout(exc):
                return self._set(
                    PrinterState.OFFLINE,
                    f"printer {self._describe()} did not answer a status request "
                    "(silent printer): check power and that it is in ESC/POS mode",
                )
            self._disconnect()
            return self._set(
                PrinterState.UNPLUGGED, f"printer {self._describe()} connection lost: {exc}"
            )
        state, reason = derive_state(online, cause, paper)
        return self._set(state, reason)

    def status(self) -> PrinterStatus:
        """The last known status (no I/O)."""
        return self._status

    def poll_status(self) -> PrinterStatus:
        """Ask the printer now; reopens the connection when it was lost."""
        with self._lock:
            return self._poll_locked()

    # --- printing ----------------------------------------------------------------------
    def encode(self, data: ReceiptData) -> bytes:
        """The ESC/POS bytes of ``data`` for this printer's profile (no I/O)."""
        needed = PAPER_WIDTH_PX[data.paper_width_mm]
        if needed > self.width_px:
            raise PrinterConfigError(
                f"receipt for {data.paper_width_mm} mm paper is {needed} dots wide but printer "
                f"profile {self.url.profile} prints {self.width_px}: set paper_width_mm=58 or "
                "fix the profile in the printer URL"
            )
        return encode_receipt(data, profile=self.url.profile, fonts=self._fonts)

    def print_receipt(self, data: ReceiptData) -> PrinterStatus:
        """Print ``data``; raises :class:`PrinterFault` (receipt kept for :meth:`reprint`)."""
        payload = self.encode(data)
        with self._lock:
            self.spool.save(data.dossier_code, payload)
            return self._send(data.dossier_code, payload)

    def reprint(self, dossier_code: str) -> PrinterStatus:
        """Print the stored receipt of ``dossier_code`` again; same faults as printing."""
        with self._lock:
            payload = self.spool.load(dossier_code)
            self.spool.mark_pending(dossier_code)
            return self._send(dossier_code, payload)

    def unprinted(self) -> list[str]:
        """Dossier codes whose receipt did not print, oldest first."""
        return self.spool.unprinted()

    def _fault(self, code: str, status: PrinterStatus, what: str) -> PrinterFault:
        return PrinterFault(
            f"receipt {code} {what}: {status.state.value}: {status.last_error}; it is kept, "
            f"print it again with reprint({code!r}) once the printer is fixed",
            status=status,
            dossier_code=code,
        )

    def _send(self, code: str, payload: bytes) -> PrinterStatus:
        status = self._poll_locked()
        if not status.can_print:
            raise self._fault(code, status, "was not printed")
        printer = self._escpos
        try:
            for start in range(0, len(payload), CHUNK_BYTES):
                printer._raw(payload[start : start + CHUNK_BYTES])
        except OSError as exc:
            if _is_timeout(exc):
                status = self._set(
                    PrinterState.OFFLINE,
                    f"printer {self._describe()} stopped accepting data (write timed out)",
                )
            else:
                self._disconnect()
                status = self._set(
                    PrinterState.UNPLUGGED,
                    f"printer {self._describe()} connection lost while printing: {exc}",
                )
            raise self._fault(code, status, "may be incomplete") from exc
        status = self._poll_locked()
        if not status.can_print:
            raise self._fault(code, status, "may be incomplete")
        self.spool.mark_printed(code)
        return status
