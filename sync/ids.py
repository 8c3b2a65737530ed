"""Record and stream identifiers (docs/protocol.md, "Identities").

Record ids are ULIDs: 48 bits of Unix time in milliseconds followed by 80
random bits, written as 26 Crockford base-32 characters. They sort by creation
time, need no coordination between kiosks, and are the idempotency key at
central. Within one process the generator is monotonic: two ids made in the
same millisecond still sort in the order they were made.
"""

from __future__ import annotations

import os
import re
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ULID_RE = re.compile(r"\A[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")
STREAM_RE = re.compile(r"\A[0-9a-f]{16}\Z")

_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_ulid(now_ms: int | None = None) -> str:
    """Return a new ULID string; monotonic within this process."""
    global _last_ms, _last_rand
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_rand = ms, rand
    return _encode(ms, 10) + _encode(rand, 16)


def ulid_time_ms(ulid: str) -> int:
    """The millisecond timestamp inside a ULID."""
    value = 0
    for ch in ulid[:10]:
        value = value * 32 + _CROCKFORD.index(ch)
    return value


def new_stream_id() -> str:
    """A random 64-bit stream id, as 16 hex digits."""
    return os.urandom(8).hex()
