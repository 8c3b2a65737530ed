"""ESC/POS real-time status (``DLE EOT n``): requests, reply parsing, printer state.

Theory of operation
-------------------
Sans-I/O. :func:`status_request` gives the bytes to send; whatever came back is
handed to :func:`parse_status_reply`, which returns a :class:`StatusReply` or
raises :class:`StatusReplyError` (the only exception it raises, whatever the
bytes). :func:`derive_state` folds the replies to ``DLE EOT 1``, ``2`` and ``4``
into one :class:`PrinterState`.

A status byte always has bit 0 = 0, bit 1 = 1, bit 4 = 1 and bit 7 = 0
(``byte & 0x93 == 0x12``); anything else is not a status reply (noise, a stale
ASB packet, a printer in the wrong mode) and is refused rather than guessed at.

=====  ==================  =====================================================
 n      asks                bits we use
=====  ==================  =====================================================
 1      printer status      0x08 offline
 2      offline cause       0x04 cover open, 0x08 feed button, 0x20 paper-end
                            stop, 0x40 error
 3      error cause         0x08 autocutter error, 0x20 unrecoverable, 0x40
                            auto-recoverable
 4      paper roll sensor   0x0C paper near end, 0x60 paper end
=====  ==================  =====================================================

Silence is a fault, never "fine": an empty reply raises
:class:`StatusReplyError` with ``silent=True`` (python-escpos's own
``paper_status()`` reports "paper ok" for an empty reply; see FIELD-NOTES).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from drivers import DeviceError


class StatusQuery(enum.IntEnum):
    """The ``n`` of ``DLE EOT n``."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR_CAUSE = 3
    PAPER = 4


class PrinterState(enum.StrEnum):
    """What the kiosk reports upward about its printer."""

    OK = "ok"
    PAPER_NEAR_END = "paper_near_end"
    PAPER_OUT = "paper_out"
    COVER_OPEN = "cover_open"
    OFFLINE = "offline"
    UNPLUGGED = "unplugged"

    @property
    def can_print(self) -> bool:
        """True for states in which a receipt is sent to the printer."""
        return self in (PrinterState.OK, PrinterState.PAPER_NEAR_END)


class StatusReplyError(DeviceError):
    """A status reply that is missing (``silent``) or is not a status byte."""

    def __init__(self, message: str, *, silent: bool = False) -> None:
        super().__init__(message)
        self.silent = silent


@dataclass(frozen=True, kw_only=True)
class StatusReply:
    """One parsed status byte; fields not covered by ``query`` are False."""

    query: StatusQuery
    raw: int
    offline: bool = False
    cover_open: bool = False
    feed_button: bool = False
    paper_end_stop: bool = False
    error: bool = False
    autocutter_error: bool = False
    unrecoverable_error: bool = False
    recoverable_error: bool = False
    paper_near_end: bool = False
    paper_out: bool = False


def status_request(query: StatusQuery) -> bytes:
    """``DLE EOT n`` for ``query``."""
    return b"\x10\x04" + bytes([int(query)])


def parse_status_reply(query: StatusQuery, reply: Iterable[int]) -> StatusReply:
    """Parse the reply to ``status_request(query)``; raises only :class:`StatusReplyError`."""
    try:
        data = bytes(reply)
    except (TypeError, ValueError):
        raise StatusReplyError(
            f"DLE EOT {int(query)} reply is not a byte sequence", silent=False
        ) from None
    if not data:
        raise StatusReplyError(
            f"printer did not answer DLE EOT {int(query)}: a silent printer is treated as "
            "faulty (check power, cable and that the printer is in ESC/POS mode)",
            silent=True,
        )
    if len(data) != 1:
        raise StatusReplyError(
            f"DLE EOT {int(query)} reply is {len(data)} bytes ({data[:8].hex()}); "
            "expected exactly 1 (is automatic status back enabled?)"
        )
    byte = data[0]
    if byte & 0x93 != 0x12:
        raise StatusReplyError(
            f"DLE EOT {int(query)} reply 0x{byte:02x} is not a status byte "
            "(fixed bits 0x93 must read 0x12)"
        )
    if query is StatusQuery.PRINTER:
        return StatusReply(query=query, raw=byte, offline=bool(byte & 0x08))
    if query is StatusQuery.OFFLINE_CAUSE:
        return StatusReply(
            query=query,
            raw=byte,
            cover_open=bool(byte & 0x04),
            feed_button=bool(byte & 0x08),
            paper_end_stop=bool(byte & 0x20),
            error=bool(byte & 0x40),
        )
    if query is StatusQuery.ERROR_CAUSE:
        return StatusReply(
            query=query,
            raw=byte,
            autocutter_error=bool(byte & 0x08),
            unrecoverable_error=bool(byte & 0x20),
            recoverable_error=bool(byte & 0x40),
        )
    return StatusReply(
        query=query,
        raw=byte,
        paper_near_end=bool(byte & 0x0C),
        paper_out=bool(byte & 0x60),
    )


def derive_state(
    printer: StatusReply, offline_cause: StatusReply | None, paper: StatusReply
) -> tuple[PrinterState, str | None]:
    """One state (and a human reason, None when all is well) from the three replies.

    Precedence: cover open, paper out, other offline, paper near end, ok.
    """
    if offline_cause is not None and offline_cause.cover_open:
        return PrinterState.COVER_OPEN, "printer cover is open: close it"
    if paper.paper_out or (offline_cause is not None and offline_cause.paper_end_stop):
        return PrinterState.PAPER_OUT, "printer is out of paper: load a new roll"
    if printer.offline:
        reason = "printer is offline"
        if offline_cause is not None and offline_cause.error:
            reason += " with an error (cutter jam or overheating): check the printer"
        return PrinterState.OFFLINE, reason
    if paper.paper_near_end:
        return PrinterState.PAPER_NEAR_END, "paper roll is nearly used up: replace it soon"
    return PrinterState.OK, None
