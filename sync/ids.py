"""Record and stream identifiers (docs/protocol.md, "Identities").

Record ids are ULIDs: 48 bits of Unix time in milliseconds followed by 80
random bits, written as 26 Crockford base-32 characters. They sort by creation
time, need no coordination between kiosks, and are the idempotency key at
central.

Encoding and decoding (Crockford base 32, the 128-bit layout) come from
``python-ulid`` (docs/dependencies.md). The order is ours: ids sort in the
order this process made them. Within one millisecond the random part of the
previous id is incremented (the ULID spec's monotonic rule), and unlike the
library's own generators we keep that order when

- the clock steps back (a Pi without a real-time clock is set by NTP): the
  millisecond never goes below the last one used;
- the 80 random bits of one millisecond run out: the id moves on to the next
  millisecond instead of wrapping to a smaller value or raising.

A time that does not fit 48 bits is refused (:class:`IdError`), never wrapped.
"""

from __future__ import annotations

import os
import re
import threading
import time

from ulid import ULID

from sync import SyncError

ULID_RE = re.compile(r"\A[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")
STREAM_RE = re.compile(r"\A[0-9a-f]{16}\Z")

MAX_ULID_MS = 2**48 - 1
_MAX_RANDOM = 2**80 - 1


class IdError(SyncError, ValueError):
    """An id could not be made or read; the message says why."""


class RecordIds:
    """A source of ULIDs that sort in the order this object made them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self, now_ms: int | None = None) -> str:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:  # same millisecond, or the clock stepped back
                ms = self._last_ms
                random = self._last_random + 1
                if random > _MAX_RANDOM:  # carry into the next millisecond
                    ms += 1
                    random = int.from_bytes(os.urandom(10), "big")
            else:
                random = int.from_bytes(os.urandom(10), "big")
            if not 0 <= ms <= MAX_ULID_MS:
                raise IdError(
                    f"ULID time {ms} ms does not fit 48 bits (0 to {MAX_ULID_MS}): "
                    "check the kiosk's clock"
                )
            self._last_ms, self._last_random = ms, random
        return str(ULID((ms << 80 | random).to_bytes(16, "big")))


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
