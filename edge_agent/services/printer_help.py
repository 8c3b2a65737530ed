"""Staff called when a slip cannot print: one support request per printer fault episode.

A dossier whose slip did not print is safe (committed before printing), but the
citizen leaves without the paper that says when to come back. So the kiosk calls
the support team itself: a ``support`` help request (``source`` kiosk, ``topic``
printer) naming the dossier code and the printer's state, never an ID number; staff
come, refill or fix the printer and reprint the slip (``POST /filings/{code}/reprint``)
or hand-write it.

One request per **episode**: from the first slip that fails until the printer is
seen ``ok`` again (a slip printed, or the housekeeping tick reading the printer's
last known status). A queue of citizens behind an empty printer makes one call,
not ten; after the fix, the next fault is a new episode and calls again.
"""

from __future__ import annotations

import logging
import threading

from edge_agent import CitizenError
from edge_agent.receipts import ReceiptOutcome
from edge_agent.services.support import SupportService
from sync.outbox import OutboxFull

log = logging.getLogger("aps.printer_help")

MESSAGE = (
    "Máy in của ki-ốt không in được giấy hẹn hồ sơ {code} (trạng thái máy in: {state}). "
    "Xin cán bộ đến sửa máy in, in lại hoặc viết tay giấy hẹn cho công dân."
)


class PrinterHelp:
    """Calls staff once per printer fault episode; see the module docstring. Thread-safe."""

    def __init__(self, support: SupportService, *, printer_configured: bool) -> None:
        self.support = support
        self.printer_configured = printer_configured
        self._lock = threading.Lock()
        self._episode: str | None = None  # the lookup code of this episode's request

    @property
    def episode_open(self) -> bool:
        with self._lock:
            return self._episode is not None

    def after_print(self, outcome: ReceiptOutcome) -> bool:
        """A slip was printed or not; True when staff are called (now or earlier this episode)."""
        if outcome.printed:
            self.printer_seen("ok")
            return False
        if not self.printer_configured:
            return False  # a kiosk without a printer: the screen says to note the code
        with self._lock:
            if self._episode is not None:
                return True
            state = outcome.printer_state or "unavailable"
            try:
                ticket = self.support.request_help(
                    source="kiosk",
                    topic="printer",
                    message=MESSAGE.format(code=outcome.dossier_code, state=state),
                )
            except (CitizenError, OutboxFull, OSError) as exc:
                log.error("staff not called for the printer (%s): %s", state, exc)
                return False
            self._episode = ticket.lookup_code
        log.warning(
            "slip %s not printed (%s): staff called, support request %s",
            outcome.dossier_code,
            state,
            ticket.lookup_code,
        )
        return True

    def printer_seen(self, state: str | None) -> None:
        """The printer's state now; ``ok`` ends the episode (the next fault calls again)."""
        if state != "ok":
            return
        with self._lock:
            ended, self._episode = self._episode, None
        if ended is not None:
            log.info("printer ok again: the fault episode of %s is over", ended)


__all__ = ["MESSAGE", "PrinterHelp"]
