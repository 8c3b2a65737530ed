"""The citizen at the kiosk now: who they are (from their card) and until when.

Theory of operation
-------------------
A kiosk serves one citizen at a time. :class:`CitizenSession` holds that
citizen's :class:`drivers.identity.Identity` and its source (``qr`` the CCCD's
QR, ``mrz`` the machine-readable zone, ``chip`` the card reader, ``typed`` when
they typed their details). A card read replaces whatever was there (the next
citizen). Every call the screen makes on the citizen's behalf ``touch()``-es
the session; when nothing happened for ``idle_timeout_s`` the session is
cleared, so the next person at the kiosk never sees the previous one's name.
A citizen who typed their details instead of reading a card has no identity
here, but what they left (a prepared filing, photographed pages) ``hold()``-s
the session, so the same idle clock wipes it.

Whenever a session ends, the ``on_clear`` hooks get the reason: ``idle`` (the
timeout), ``ended`` (:meth:`clear`, "Kết thúc") or ``replaced`` (another
citizen's card was read); the application forgets what the citizen prepared
and tells the screen.
Expiry is checked on every access (and by the application's housekeeping
tick through :meth:`expire_if_idle`): no timer thread, and a test moves the
clock instead of sleeping.

Thread-safe (one lock). The full ID number never goes to a log: log lines and
``snapshot()`` carry it masked (last 4 digits); only :meth:`identity` hands the
whole record to filing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from drivers.identity import Identity, mask_id

log = logging.getLogger("aps.session")

IdentitySource = Literal["qr", "mrz", "chip", "typed"]
DEFAULT_IDLE_TIMEOUT_S = 120.0


@dataclass(frozen=True, kw_only=True)
class SessionSnapshot:
    """What the screen may show about the session (no whole ID number)."""

    active: bool
    source: IdentitySource | None
    full_name: str | None
    id_masked: str | None
    idle_left_s: float | None
    idle_timeout_s: float

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "source": self.source,
            "full_name": self.full_name,
            "id_masked": self.id_masked,
            "idle_left_s": self.idle_left_s,
            "idle_timeout_s": self.idle_timeout_s,
        }


class CitizenSession:
    """One citizen's session; see the module docstring."""

    def __init__(
        self,
        *,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_timeout_s <= 0:
            raise ValueError("idle_timeout_s must be > 0")
        self.idle_timeout_s = idle_timeout_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._identity: Identity | None = None
        self._source: IdentitySource | None = None
        self._held = False  # something of a citizen without a card is on the kiosk
        self._last = monotonic()
        #: Called (outside the lock) with the reason after a session is cleared.
        self.on_clear: list[Callable[[str], None]] = []

    def _in_use_locked(self) -> bool:
        return self._identity is not None or self._held

    def _expired_locked(self, now: float) -> bool:
        return self._in_use_locked() and now - self._last >= self.idle_timeout_s

    def _take_expired(self) -> bool:
        """Clear an idle session (inside the lock); True if one was cleared."""
        if self._expired_locked(self._monotonic()):
            who = "typed details" if self._identity is None else mask_id(self._identity.id_number)
            log.info("session of %s cleared: idle", who)
            self._identity = self._source = None
            self._held = False
            return True
        return False

    def _notify(self, reason: str) -> None:
        for hook in self.on_clear:
            try:
                hook(reason)
            except Exception:
                log.exception("session on_clear hook failed")

    def set_identity(self, identity: Identity, source: IdentitySource | None = None) -> None:
        """A card was read (or details typed): this is the citizen now.

        Another citizen's card ends the session before (reason ``replaced``); the same
        card read again does not.
        """
        with self._lock:
            expired = self._take_expired()
            previous = self._identity
            replaced = (previous is not None and previous.id_number != identity.id_number) or (
                previous is None and self._held
            )
            self._identity = identity
            self._source = source or identity.source
            self._held = False
            self._last = self._monotonic()
        if expired:
            self._notify("idle")
        if replaced:
            log.info("session replaced by another citizen's card")
            self._notify("replaced")
        log.info("session: identity %s from %s", mask_id(identity.id_number), self._source)

    def hold(self) -> None:
        """The citizen left something on the kiosk: the session is in use (and its clock runs)."""
        with self._lock:
            expired = self._take_expired()
            self._held = True
            self._last = self._monotonic()
        if expired:
            self._notify("idle")

    def touch(self) -> None:
        """The citizen did something: the idle clock starts again (an idle session ends)."""
        with self._lock:
            expired = self._take_expired()
            self._last = self._monotonic()
        if expired:
            self._notify("idle")

    def identity(self) -> tuple[Identity, IdentitySource] | None:
        """The citizen's identity and its source, or None (no one, or idle too long)."""
        with self._lock:
            expired = self._take_expired()
            result = None
            if self._identity is not None and self._source is not None:
                result = (self._identity, self._source)
        if expired:
            self._notify("idle")
        return result

    def expire_if_idle(self) -> bool:
        """Clear the session if idle too long; True if it was cleared now."""
        with self._lock:
            expired = self._take_expired()
        if expired:
            self._notify("idle")
        return expired

    def clear(self, reason: str = "ended") -> None:
        """End the session (the citizen pressed "Kết thúc", or a card was removed)."""
        with self._lock:
            had = self._in_use_locked()
            self._identity = self._source = None
            self._held = False
        if had:
            log.info("session cleared: %s", reason)
            self._notify(reason)

    def snapshot(self) -> SessionSnapshot:
        with self._lock:
            self._take_expired()
            ident, source = self._identity, self._source
            left = None
            if self._in_use_locked():
                left = max(0.0, self.idle_timeout_s - (self._monotonic() - self._last))
        return SessionSnapshot(
            active=ident is not None,
            source=source,
            full_name=None if ident is None else ident.full_name,
            id_masked=None if ident is None else mask_id(ident.id_number),
            idle_left_s=left,
            idle_timeout_s=self.idle_timeout_s,
        )
