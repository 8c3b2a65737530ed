"""Thin pyserial adapter around :mod:`drivers.card_reader_protocol`.

Opens the reader by path or pyserial URL, writes requests, reads until the
matching reply or a deadline, and turns reader errors and silence into
exceptions the agent can report. All framing lives in the sans-I/O module.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from types import TracebackType
from typing import Any

from drivers import DeviceError
from drivers.card_reader_protocol import (
    CardInserted,
    CardRemoved,
    ErrorCode,
    FrameError,
    FrameErrorKind,
    GetStatus,
    HostConnection,
    IdentityRead,
    NeedData,
    ReaderError,
    ReaderEvent,
    ReadIdentity,
    Request,
    StatusReport,
)
from drivers.identity import Identity

__all__ = ["READER_FAULT_TEXT", "CardReadError", "CardReader", "ReaderNotAnswering", "citizen_text"]

log = logging.getLogger(__name__)

#: Events :meth:`CardReader.poll` hands to the caller.
Notice = CardInserted | CardRemoved | ReaderError | FrameError


#: What the kiosk screen tells the citizen when the reader itself is at fault.
READER_FAULT_TEXT = (
    "Đầu đọc thẻ đang gặp sự cố. Vui lòng quét mã QR trên thẻ hoặc liên hệ cán bộ hỗ trợ."
)
_CITIZEN_TEXT = {
    ErrorCode.NO_CARD: "Vui lòng đặt thẻ căn cước lên đầu đọc.",
    ErrorCode.CARD_UNREADABLE: "Không đọc được thẻ. Vui lòng đặt lại thẻ nằm phẳng trên đầu đọc.",
    ErrorCode.CHIP_TIMEOUT: "Chưa đọc được chip của thẻ. Vui lòng thử lại.",
    ErrorCode.CARD_REMOVED: "Thẻ đã được nhấc ra khi đang đọc. Vui lòng giữ thẻ trên đầu đọc "
    "cho đến khi đọc xong.",
}


def citizen_text(code: int) -> str:
    """Vietnamese message for the citizen for a reader error code."""
    try:
        return _CITIZEN_TEXT[ErrorCode(code)]
    except (KeyError, ValueError):
        return READER_FAULT_TEXT


class ReaderNotAnswering(DeviceError, TimeoutError):
    """The reader sent no usable reply within the timeout, after every retry."""


class CardReadError(DeviceError):
    """The reader answered with an error; ``code`` is the protocol's error code.

    ``str()`` is for logs (English); ``citizen_text`` is for the screen (Vietnamese).
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.citizen_text = citizen_text(code)


class CardReader:
    """A serial chip/ID-card reader.

    ``url`` is a device path (``/dev/ttyACM0``) or any pyserial URL. Port errors
    are left as ``OSError`` (``serial.SerialException``) for the supervisor.
    Not thread-safe: one thread owns a reader.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        reply_timeout: float = 1.0,
        read_timeout: float = 5.0,
        retries: int = 1,
        poll_interval: float = 0.05,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries: must be 0 or more, got {retries}")
        self.url = url
        self.baudrate = baudrate
        self.reply_timeout = reply_timeout
        self.read_timeout = read_timeout
        self.retries = retries
        self.poll_interval = poll_interval
        self.frame_errors = 0
        self._port: Any = None
        self._conn = HostConnection()
        self._notices: deque[Notice] = deque(maxlen=64)
        self._events: deque[ReaderEvent] = deque()

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        import serial  # hardware library imported where used

        self._port = serial.serial_for_url(
            self.url, baudrate=self.baudrate, timeout=self.poll_interval
        )
        self._conn.reset()
        self._events.clear()

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def __enter__(self) -> CardReader:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._port is not None

    # ------------------------------------------------------------ requests

    def card_present(self) -> bool:
        """Ask the reader whether a card is on it."""
        event = self._request(GetStatus(), self.reply_timeout)
        if isinstance(event, ReaderError):
            raise CardReadError(event.code, event.message)
        return isinstance(event, StatusReport) and event.card_present

    def read_identity(self) -> Identity:
        """Read the chip of the card on the reader.

        Raises :class:`CardReadError` (no card, unreadable, chip timeout, card
        removed) or :class:`ReaderNotAnswering`.
        """
        event = self._request(ReadIdentity(), self.read_timeout)
        if isinstance(event, ReaderError):
            raise CardReadError(event.code, event.message)
        if not isinstance(event, IdentityRead):  # _request pairs requests with replies
            raise DeviceError(f"card reader {self.url}: a status came back for a read")
        log.info("card reader %s: read identity %s", self.url, event.identity)
        return event.identity

    def poll(self, timeout: float = 0.0) -> list[Notice]:
        """Return card events and errors that arrived unasked, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump(block=timeout > 0)
            while self._events:
                self._notice(self._events.popleft())
            if self._notices or time.monotonic() >= deadline:
                break
        out = list(self._notices)
        self._notices.clear()
        return out

    # ------------------------------------------------------------ internals

    def _require_port(self) -> Any:
        if self._port is None:
            raise DeviceError(f"card reader {self.url}: not open; call open() first")
        return self._port

    def _read(self, *, block: bool) -> bytes:
        port = self._require_port()
        waiting = port.in_waiting
        if waiting or block:
            data: bytes = port.read(max(1, waiting))
            return data
        return b""

    def _pump(self, *, block: bool) -> None:
        """Read what the port has and queue the decoded events."""
        self._conn.receive_data(self._read(block=block))
        while True:
            event = self._conn.next_event()
            if isinstance(event, NeedData):
                return
            self._events.append(event)

    def _notice(self, event: ReaderEvent) -> None:
        if isinstance(event, FrameError):
            self.frame_errors += 1
            log.warning("card reader %s: %s (%s)", self.url, event.kind.value, event.detail)
        if isinstance(event, CardInserted | CardRemoved | ReaderError | FrameError):
            self._notices.append(event)
        # stale STATUS/IDENTITY replies (to a request that already timed out) are dropped

    def _request(
        self, request: Request, timeout: float
    ) -> StatusReport | IdentityRead | ReaderError:
        port = self._require_port()
        self._pump(block=False)  # drain: queue card events, drop stale replies
        while self._events:
            self._notice(self._events.popleft())
        attempts = 1 + self.retries
        attempt = 1
        port.write(self._conn.send(request))
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() >= deadline:
                log.warning(
                    "card reader %s: attempt %d/%d got no usable reply", self.url, attempt, attempts
                )
                if attempt >= attempts:
                    break
                attempt += 1
                self._conn.reset()  # a partial frame will never be completed now
                port.write(self._conn.send(request))
                deadline = time.monotonic() + timeout
            self._pump(block=True)
            while self._events:
                event = self._events.popleft()
                if isinstance(request, GetStatus) and isinstance(event, StatusReport):
                    return event
                if isinstance(request, ReadIdentity) and isinstance(event, IdentityRead):
                    return event
                if isinstance(event, ReaderError):
                    return event
                if isinstance(request, ReadIdentity) and isinstance(event, CardRemoved):
                    self._notice(event)
                    return ReaderError(code=ErrorCode.CARD_REMOVED)
                self._notice(event)
                damaged = isinstance(event, FrameError) and event.kind != FrameErrorKind.GARBAGE
                if damaged and attempt < attempts:
                    # The reply was probably damaged: ask again at once. Resync keeps
                    # going, so a good reply to the earlier request still counts.
                    attempt += 1
                    port.write(self._conn.send(request))
                    deadline = time.monotonic() + timeout
        raise ReaderNotAnswering(
            f"card reader not answering on {self.url} after {attempts} attempt(s) of "
            f"{timeout:.1f} s: check its cable and power"
        )
