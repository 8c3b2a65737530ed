"""Emulated serial chip/ID-card reader on a pty, speaking docs/devices.md.

The driver opens :attr:`EmulatedCardReader.port_path` with pyserial. Tests and
the demo put cards on and off the reader and switch faults on
:attr:`EmulatedCardReader.faults`:

- ``garbage_before_reply``: bytes written before every reply;
- ``split_replies``: each reply is written in pieces with a short gap, as a
  slow UART would deliver it;
- ``corrupt_checksums``: the next N replies carry a wrong BCC;
- ``silent``: requests are read and ignored (a hung reader);
- ``pull_card_during_read``: the card is taken away while its chip is read
  (ERROR card-removed, then CARD_REMOVED);
- ``chip_error``: READ_IDENTITY answers with this error code.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from drivers.card_reader_protocol import (
    CardInserted,
    CardRemoved,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    FrameErrorKind,
    GetStatus,
    IdentityRead,
    NeedData,
    ReaderError,
    ReadIdentity,
    Request,
    StatusReport,
    decode_request,
    encode_event,
)
from drivers.identity import Identity
from firmware_mocks.pty_device import PtyDevice

__all__ = ["EmulatedCardReader", "ReaderFaults"]

#: Gap between the pieces of a split reply: long enough for the driver to read
#: each piece on its own most of the time.
SPLIT_GAP_S = 0.005


@dataclass
class ReaderFaults:
    garbage_before_reply: bytes = b""
    split_replies: bool = False
    corrupt_checksums: int = 0
    silent: bool = False
    pull_card_during_read: bool = False
    chip_error: ErrorCode | None = None


@dataclass
class _Log:
    requests: list[Request] = field(default_factory=list)
    bad_frames: int = 0


class EmulatedCardReader:
    """A card reader behind a pty; start it (or use ``with``) before opening the port."""

    def __init__(self, card: Identity | None = None) -> None:
        self.faults = ReaderFaults()
        self._card = card
        self._decoder = FrameDecoder()
        self._log = _Log()
        self._changed = threading.Condition()
        self._pty = PtyDevice(self._on_data)
        self.port_path = self._pty.port_path

    # ------------------------------------------------------------ control

    def start(self) -> None:
        self._pty.start()

    def close(self) -> None:
        self._pty.close()

    def __enter__(self) -> EmulatedCardReader:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def card(self) -> Identity | None:
        return self._card

    def insert_card(self, identity: Identity) -> None:
        """Put a card on the reader and announce it (CARD_INSERTED)."""
        self._card = identity
        self._pty.write(encode_event(CardInserted()))

    def remove_card(self) -> None:
        """Take the card off and announce it (CARD_REMOVED)."""
        self._card = None
        self._pty.write(encode_event(CardRemoved()))

    def send_raw(self, data: bytes) -> None:
        """Write arbitrary bytes to the driver (line noise, hand-made frames)."""
        self._pty.write(data)

    @property
    def requests(self) -> list[Request]:
        with self._changed:
            return list(self._log.requests)

    @property
    def bad_frames(self) -> int:
        """Corrupt or unknown frames received from the driver."""
        with self._changed:
            return self._log.bad_frames

    def wait_for_requests(self, count: int, timeout: float = 2.0) -> bool:
        """Block until ``count`` requests have been received, or ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._log.requests) >= count, timeout)

    # ------------------------------------------------------------ serving

    def _on_data(self, data: bytes) -> None:
        self._decoder.receive_data(data)
        while True:
            item = self._decoder.next_event()
            if isinstance(item, NeedData):
                return
            if isinstance(item, FrameError):
                if item.kind != FrameErrorKind.GARBAGE:
                    self._count_bad_frame()
                    self._reply(ReaderError(code=ErrorCode.BAD_FRAME))
                continue
            self._handle(item)

    def _count_bad_frame(self) -> None:
        with self._changed:
            self._log.bad_frames += 1
            self._changed.notify_all()

    def _handle(self, frame: Frame) -> None:
        request = decode_request(frame)
        if request is None:
            self._count_bad_frame()
            self._reply(ReaderError(code=ErrorCode.UNKNOWN_COMMAND))
            return
        with self._changed:
            self._log.requests.append(request)
            self._changed.notify_all()
        if self.faults.silent:
            return
        if isinstance(request, GetStatus):
            self._reply(StatusReport(card_present=self._card is not None))
        elif isinstance(request, ReadIdentity):
            self._read_identity()

    def _read_identity(self) -> None:
        card = self._card
        if card is None:
            self._reply(ReaderError(code=ErrorCode.NO_CARD))
        elif self.faults.pull_card_during_read:
            self._card = None
            self._reply(ReaderError(code=ErrorCode.CARD_REMOVED))
            self._pty.write(encode_event(CardRemoved()))
        elif self.faults.chip_error is not None:
            self._reply(ReaderError(code=self.faults.chip_error))
        else:
            chip_view = dataclasses.replace(card, source="chip")
            self._reply(IdentityRead(identity=chip_view))

    def _reply(self, event: StatusReport | IdentityRead | ReaderError) -> None:
        frame = bytearray(encode_event(event))
        if self.faults.corrupt_checksums > 0:
            self.faults.corrupt_checksums -= 1
            frame[-2] ^= 0xFF
        data = self.faults.garbage_before_reply + bytes(frame)
        if not self.faults.split_replies:
            self._pty.write(data)
            return
        # Cut inside the header, mid-payload and before the trailer.
        cuts = sorted({0, 1, min(4, len(data)), len(data) // 2, max(len(data) - 1, 0), len(data)})
        for start, end in itertools.pairwise(cuts):
            if start < end:
                self._pty.write(data[start:end])
                time.sleep(SPLIT_GAP_S)
