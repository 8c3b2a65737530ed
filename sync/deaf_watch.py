"""Notice a kiosk that is connected but hears nothing (sans-I/O; kiosk-only).

Theory of operation
-------------------
A connection can stay up (PINGRESPs flow) while the broker delivers nothing
to it: on a RabbitMQ cluster, the clean-up of a dead node's queue for a
client id most likely removed the new session's subscription after its
SUBACK (docs/chaos.md). The kiosk then resends its window every
``ack_timeout`` forever. Only a fresh session subscribes again, so the sync
client reconnects when this watch says so.

The watch is fed the clock and four events by :class:`sync.client.SyncClient`:
``subscribed`` (this session's SUBACK), ``heard`` (any message at all on the
kiosk's subscriptions: acks, state replies, nudges, remote call replies,
central's presence and keys, even one refused as unsigned: the downlink
works), ``presence`` (a collector's last word, retained or live) and
``retransmitted`` (an in-flight record's ack timeout ended and it was sent
again). The *quiet* period starts at the later of the last SUBACK and the
last message heard.

An ack timeout counts as **deaf** when the whole timeout it ends fell in the
quiet period (``now - quiet_from >= ack_timeout_s``): the record was sent,
and nothing at all came back while it waited. When one record has had
``ack_timeouts`` deaf timeouts in a row (any message resets every count),
:meth:`DeafWatch.retransmitted` returns a :class:`Deaf` verdict, once per
quiet period. It never does:

- with nothing in flight (nothing is retransmitted, so nothing counts);
- while every collector heard from last said ``offline`` (retained on
  subscribe, or live, or its Last Will): central is down, nobody would ack,
  and a fresh session would hear the same retained ``offline`` and wait the
  same way, so reconnecting would only flap;
- before ``ack_timeouts`` timeouts have passed in silence, so a central that
  is slow but answers something within that time is left alone.

A broker that is down is a lost connection, which the network loop handles;
the watch only runs while a session is up.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync import SyncError


class DeafWatchError(SyncError):
    """The watch was built with settings out of range (a local error)."""


@dataclass(frozen=True, kw_only=True)
class Deaf:
    """The verdict: reconnect. What was seen, for the log and the counters."""

    ack_timeouts: int  # deaf ack timeouts in a row of the worst record
    in_flight: int  # records retransmitted in the step that decided
    quiet_s: float  # seconds since the SUBACK or the last message heard
    since: str  # "the SUBACK" or "the last message (<topic>)"


class DeafWatch:
    """Counts ack timeouts that passed with nothing heard downlink."""

    def __init__(self, *, ack_timeouts: int, ack_timeout_s: float) -> None:
        if ack_timeouts < 1:
            raise DeafWatchError(f"ack_timeouts must be >= 1, got {ack_timeouts}")
        if ack_timeout_s <= 0:
            raise DeafWatchError(f"ack_timeout_s must be > 0, got {ack_timeout_s}")
        self.ack_timeouts = ack_timeouts
        self.ack_timeout_s = ack_timeout_s
        self.online = False
        self._quiet_from = 0.0
        self._since = "the SUBACK"
        self._counts: dict[str, int] = {}
        self._fired = False
        #: Each collector's last presence state ("online"/"offline"), kept across sessions.
        self.collectors: dict[str, str] = {}

    @property
    def central_offline(self) -> bool:
        """Every collector heard from said ``offline`` last (none heard: unknown, False)."""
        return bool(self.collectors) and all(
            state == "offline" for state in self.collectors.values()
        )

    def subscribed(self, now: float) -> None:
        """This session's SUBACK: the quiet period starts now."""
        self.online = True
        self._reset(now, "the SUBACK")

    def disconnected(self) -> None:
        self.online = False
        self._counts.clear()

    def heard(self, now: float, topic: str) -> None:
        """Any message on the kiosk's subscriptions: the downlink works."""
        self._reset(now, f"the last message ({topic})")

    def presence(self, collector: str, state: str) -> None:
        self.collectors[collector] = state

    def _reset(self, now: float, since: str) -> None:
        self._quiet_from = now
        self._since = since
        self._counts.clear()
        self._fired = False

    def retransmitted(self, ids: list[str], now: float) -> Deaf | None:
        """These in-flight records timed out and were sent again; a verdict or None."""
        if not self.online or not ids or now - self._quiet_from < self.ack_timeout_s:
            return None
        for rid in ids:
            self._counts[rid] = self._counts.get(rid, 0) + 1
        worst = max(self._counts.values())
        if worst < self.ack_timeouts or self._fired or self.central_offline:
            return None
        self._fired = True
        return Deaf(
            ack_timeouts=worst,
            in_flight=len(ids),
            quiet_s=now - self._quiet_from,
            since=self._since,
        )
