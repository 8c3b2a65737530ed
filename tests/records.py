"""Records for the store tests, built as a kiosk builds them: one place for every copy.

The store contract, the quotas, housekeeping, stream-state and upgrade tests all feed a
store the same things: an encoded record (a rating unless told otherwise), on its kiosk's
records topic, or a raw envelope whose fields a test can bend (``v=2``, a huge ``seq``).
Only what a test names differs; the rest (a fresh id, the creation time, a satisfied
rating) is the same everywhere.
"""

from __future__ import annotations

import json
from typing import Any

from sync.envelope import Record, records_topic
from sync.ids import new_ulid

#: When the records were made on the kiosk: days before any test runs (a clock check
#: sees them as old, never as from the future).
CREATED = "2026-12-01T09:00:00+07:00"
RATING = {"level": "hai_long"}


def record(
    seq: int,
    stream: str,
    *,
    kiosk: str,
    kind: str = "rating",
    body: dict[str, Any] | None = None,
    rid: str = "",
    created: str = CREATED,
) -> Record:
    """Record ``seq`` of ``stream``; a fresh id unless ``rid``, a rating unless ``body``."""
    return Record(
        kind=kind,
        kiosk=kiosk,
        stream=stream,
        seq=seq,
        id=rid or new_ulid(),
        created=created,
        body=dict(RATING) if body is None else body,
    )


def rating(seq: int, stream: str, *, kiosk: str, level: str = "hai_long", rid: str = "") -> bytes:
    """An encoded rating record (``level`` one of the three the counters show)."""
    return record(seq, stream, kiosk=kiosk, body={"level": level}, rid=rid).encode()


def posted(rec: Record) -> tuple[str, bytes]:
    """``rec`` encoded, on its kiosk's records topic: one item of a collector's batch."""
    return records_topic(rec.kiosk), rec.encode()


def on_topic(*payloads: bytes, kiosk: str) -> list[tuple[str, bytes]]:
    """``payloads`` as the collector receives them: on ``kiosk``'s records topic."""
    return [(records_topic(kiosk), p) for p in payloads]


def envelope(kiosk: str, seq: int, stream: str, **over: Any) -> bytes:
    """A rating envelope as raw JSON, any field replaced (``v=2``, ``kind=...``, ``body=...``)."""
    env = {
        "v": 1,
        "type": "record",
        "kind": "rating",
        "kiosk": kiosk,
        "stream": stream,
        "seq": seq,
        "id": new_ulid(),
        "created": CREATED,
        "body": dict(RATING),
        **over,
    }
    return json.dumps(env).encode()
