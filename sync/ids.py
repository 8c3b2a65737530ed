"""Record and stream identifiers (docs/protocol.md, "Identities").

Record ids are ULIDs: 48 bits of Unix time in milliseconds followed by 80
random bits, written as 26 Crockford base-32 characters. They sort by creation
time, need no coordination between kiosks, and are the idempotency key at
central.

Encoding, decoding and the same-millisecond increment come from ``python-ulid``
(docs/dependencies.md). What we add is the order this process promises: ids
sort in the order they were made, even when

- the clock steps back (a Pi without a real-time clock is set by NTP): the
  millisecond never goes below the last one used;
- the 80 random bits of one millisecond run out (the library's strict policy
  refuses): the id moves on to the next millisecond instead of wrapping to a
  smaller value.

A time that does not fit 48 bits is refused (:class:`IdError`), never wrapped.
"""

from __future__ import annotations

import os
import re
import threading
import time

from ulid import ULID, StrictMonotonicPolicy, ULIDGenerator

from sync import SyncError

ULID_RE = re.compile(r"\A[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")
STREAM_RE = re.compile(r"\A[0-9a-f]{16}\Z")

MAX_ULID_MS = 2**48 - 1


class IdError(SyncError, ValueError):
    """An id could not be made or read; the message says why."""


class RecordIds:
    """A source of ULIDs that sort in the order this object made them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        # Strict: the library raises instead of re-drawing when a millisecond's
        # randomness runs out, so we can carry into the next millisecond.
        self._generator = ULIDGenerator(policy=StrictMonotonicPolicy())

    def new(self, now_ms: int | None = None) -> str:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            ms = max(ms, self._last_ms)
            for _ in range(2):
                if not 0 <= ms <= MAX_ULID_MS:
                    raise IdError(
                        f"ULID time {ms} ms does not fit 48 bits (0 to {MAX_ULID_MS}): "
                        "check the kiosk's clock"
                    )
                try:
                    value = self._generator.generate(ms)
                except ValueError:  # this millisecond's 80 random bits are used up
                    ms += 1
                    continue
                self._last_ms = ms
                return str(value)
        raise AssertionError("unreachable: a fresh millisecond always has room")  # pragma: no cover


_record_ids = RecordIds()


def new_ulid(now_ms: int | None = None) -> str:
    """Return a new ULID string; ids made by this process sort in the order made."""
    return _record_ids.new(now_ms)


def ulid_time_ms(ulid: str) -> int:
    """The millisecond timestamp inside a ULID."""
    try:
        return ULID.from_str(ulid).milliseconds
    except (TypeError, ValueError) as exc:
        raise IdError(f"{ulid!r} is not a 26-character ULID: {exc}") from None


def new_stream_id() -> str:
    """A random 64-bit stream id, as 16 hex digits."""
    return os.urandom(8).hex()
