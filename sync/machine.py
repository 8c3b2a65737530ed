"""The kiosk's sync state machine (sans-I/O).

Theory of operation
-------------------
The machine never touches a socket, a thread or the database. The adapter
(:mod:`sync.client`) feeds it events (connected, disconnected, records read
from the outbox, an ack from central, the clock) and carries out the actions
it returns, in order: read more from the outbox, publish these bytes, mark
these ids acked or rejected.

It keeps a window of at most ``window`` records (and ``window_bytes`` bytes,
though always at least one record) published and not yet acknowledged, and a
cursor: the highest seq it has put in flight since the connection came up.
Every queued record at or below the cursor is in flight; the next read from
the outbox starts after the cursor. A record not acknowledged within
``ack_timeout`` seconds is published again. A disconnect forgets everything in
flight (the outbox still holds it as queued) and the next connection starts
again from the oldest queued record, so nothing depends on what paho or the
broker kept.

Acks are trusted only as "central committed this id" (docs/protocol.md):
an ack for an id the machine does not hold in flight is still passed on to
the outbox, which ignores ids that are not queued.

Transitions, one table (state x event -> effect):

========  ============  ==================================================
state     event         effect
========  ============  ==================================================
offline   connected     -> online; cursor = 0; Fetch
offline   records       ignored (a read finished after the link dropped)
offline   ack           Mark (acks may trail a disconnect)
offline   tick          nothing
online    disconnected  -> offline; in-flight forgotten
online    records       Publish each new one (seq > cursor), advance cursor
online    ack           Mark; drop from window; Fetch if room
online    tick          Publish again what timed out; Fetch if room
any       disconnected  -> offline
========  ============  ==================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from sync import SyncError
from sync.envelope import Ack
from sync.outbox import Pending


class MachineError(SyncError):
    """The adapter misused the machine (a local protocol error)."""


class LinkState(Enum):
    OFFLINE = "offline"
    ONLINE = "online"


@dataclass(frozen=True, kw_only=True)
class Fetch:
    """Read up to ``limit`` queued records with seq > ``after_seq`` and feed them back."""

    after_seq: int
    limit: int


@dataclass(frozen=True, kw_only=True)
class Publish:
    seq: int
    id: str
    payload: bytes
    attempt: int


@dataclass(frozen=True, kw_only=True)
class MarkAcked:
    ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class MarkRejected:
    rejections: tuple[tuple[str, str], ...]


Action = Fetch | Publish | MarkAcked | MarkRejected


@dataclass
class _InFlight:
    seq: int
    payload: bytes
    sent_at: float
    attempt: int


class SyncMachine:
    """Window, cursor and retransmission timer of one kiosk's upstream sync."""

    def __init__(
        self, *, window: int = 256, ack_timeout: float = 30.0, window_bytes: int = 4 * 1024 * 1024
    ) -> None:
        if window < 1:
            raise MachineError(f"window must be >= 1, got {window}")
        if ack_timeout <= 0:
            raise MachineError(f"ack_timeout must be > 0, got {ack_timeout}")
        self.window = window
        self.window_bytes = window_bytes
        self.ack_timeout = ack_timeout
        self._inflight_bytes = 0
        self.state = LinkState.OFFLINE
        self.cursor = 0
        self._inflight: dict[str, _InFlight] = {}
        self._fetch_outstanding = False

    # -- inspection -------------------------------------------------------------
    @property
    def in_flight(self) -> frozenset[str]:
        return frozenset(self._inflight)

    def _room(self) -> int:
        if self._inflight and self._inflight_bytes >= self.window_bytes:
            return 0
        return self.window - len(self._inflight)

    def _forget(self, rid: str) -> None:
        fl = self._inflight.pop(rid, None)
        if fl is not None:
            self._inflight_bytes -= len(fl.payload)

    def _clear(self) -> None:
        self._inflight.clear()
        self._inflight_bytes = 0

    def _maybe_fetch(self) -> list[Action]:
        if self.state is LinkState.ONLINE and not self._fetch_outstanding and self._room() > 0:
            self._fetch_outstanding = True
            return [Fetch(after_seq=self.cursor, limit=self._room())]
        return []

    # -- events -----------------------------------------------------------------
    def connected(self, now: float) -> list[Action]:
        self.state = LinkState.ONLINE
        self.cursor = 0
        self._clear()
        self._fetch_outstanding = False
        return self._maybe_fetch()

    def disconnected(self) -> list[Action]:
        self.state = LinkState.OFFLINE
        self._clear()
        self._fetch_outstanding = False
        return []

    def records(self, pending: Sequence[Pending], now: float) -> list[Action]:
        """The outbox answered a Fetch (possibly with nothing)."""
        self._fetch_outstanding = False
        if self.state is not LinkState.ONLINE:
            return []
        actions: list[Action] = []
        for rec in pending:
            if rec.seq <= self.cursor or rec.id in self._inflight or self._room() <= 0:
                continue
            self._inflight[rec.id] = _InFlight(rec.seq, rec.payload, now, 1)
            self._inflight_bytes += len(rec.payload)
            self.cursor = rec.seq
            actions.append(Publish(seq=rec.seq, id=rec.id, payload=rec.payload, attempt=1))
        return actions

    def ack(self, ack: Ack, now: float) -> list[Action]:
        actions: list[Action] = []
        if ack.acked:
            actions.append(MarkAcked(ids=ack.acked))
        if ack.rejected:
            actions.append(MarkRejected(rejections=tuple((r.id, r.reason) for r in ack.rejected)))
        for rid in ack.acked:
            self._forget(rid)
        for rej in ack.rejected:
            self._forget(rej.id)
        return actions + self._maybe_fetch()

    def next_deadline(self) -> float | None:
        """When the oldest unacknowledged record is due again (tick then), or None."""
        if self.state is not LinkState.ONLINE or not self._inflight:
            return None
        return min(fl.sent_at for fl in self._inflight.values()) + self.ack_timeout

    def tick(self, now: float) -> list[Action]:
        """Time passed: retransmit what timed out; look for new records."""
        if self.state is not LinkState.ONLINE:
            return []
        actions: list[Action] = []
        for rid, fl in sorted(self._inflight.items(), key=lambda kv: kv[1].seq):
            if now - fl.sent_at >= self.ack_timeout:
                fl.sent_at = now
                fl.attempt += 1
                actions.append(Publish(seq=fl.seq, id=rid, payload=fl.payload, attempt=fl.attempt))
        return actions + self._maybe_fetch()
