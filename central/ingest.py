"""What the collector does with one incoming message (sans-I/O).

``classify(topic, payload)`` returns either an :class:`Accept` (a valid record
to store idempotently) or a :class:`DeadLetter` with the reason from
docs/protocol.md. A dead letter that carries a usable record id from the
topic's own kiosk is also a *rejection*: central tells that kiosk to stop
resending it. Nothing here raises on input, whatever the bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sync.envelope import (
    MAX_RECORD_BYTES,
    EnvelopeError,
    Record,
    decode_object,
    decode_record,
    kiosk_of_topic,
)
from sync.ids import ULID_RE
from sync.schemas import SchemaError, bounded_reason, check_body, check_fleet_message

PAYLOAD_HEAD_BYTES = 4096
MAX_FLEET_BYTES = PAYLOAD_HEAD_BYTES * 16


@dataclass(frozen=True, kw_only=True)
class Accept:
    record: Record


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    topic: str
    topic_kiosk: str | None
    reason: str
    payload_len: int
    payload_head: bytes
    record_id: str | None = None
    reject: bool = False
    stream: str | None = None
    seq: int | None = None


def _dead(topic: str, payload: bytes, reason: str, **kw: Any) -> DeadLetter:
    return DeadLetter(
        topic=topic,
        topic_kiosk=kiosk_of_topic(topic),
        reason=bounded_reason(reason),
        payload_len=len(payload),
        payload_head=payload[:PAYLOAD_HEAD_BYTES],
        **kw,
    )


@dataclass(frozen=True, kw_only=True)
class FleetUpdate:
    """A kiosk's status (online/offline, its Last Will) or heartbeat."""

    kiosk: str
    type: str
    body: dict[str, Any]


def classify_fleet(topic: str, payload: bytes) -> FleetUpdate | DeadLetter:
    """Status and heartbeat messages: versioned, from the topic's own kiosk, bounded.

    Every field the protocol names is checked against its schema
    (``sync.schemas.HeartbeatMessage``, ``StatusMessage``): a heartbeat whose
    ``queued`` is 2^64 is dead-lettered naming the field, never stored.
    """
    topic_kiosk = kiosk_of_topic(topic)
    kind = topic.rsplit("/", 1)[-1]
    if len(payload) > MAX_FLEET_BYTES:
        return _dead(
            topic, payload, f"oversize: {len(payload)} bytes > limit {MAX_FLEET_BYTES} for a {kind}"
        )
    try:
        obj = decode_object(payload)
    except EnvelopeError as exc:
        return _dead(topic, payload, exc.reason)
    if obj.get("type") != kind or kind not in ("status", "heartbeat"):
        return _dead(topic, payload, f"bad-envelope: type: expected {kind!r}")
    if obj.get("kiosk") != topic_kiosk or topic_kiosk is None:
        return _dead(topic, payload, f"kiosk-mismatch: {kind} names {obj.get('kiosk')!r}")
    try:
        check_fleet_message(kind, obj)
    except SchemaError as exc:
        return _dead(topic, payload, exc.reason)
    return FleetUpdate(kiosk=topic_kiosk, type=kind, body=obj)


def classify(
    topic: str, payload: bytes, *, max_bytes: int = MAX_RECORD_BYTES
) -> Accept | DeadLetter:
    """Decide what to do with one message from ``aps/v1/<kiosk>/up/records``."""
    topic_kiosk = kiosk_of_topic(topic)
    try:
        record = decode_record(payload, max_bytes=max_bytes)
    except EnvelopeError as exc:
        # Reject (ack as parked) what a kiosk could be waiting for: a record id
        # from the topic's own kiosk, so it stops resending. Without a usable id,
        # or for a version we do not know, nothing is acked.
        rid = None
        if exc.reason.startswith(("unknown-kind", "bad-envelope")):
            rid = _usable_id(payload, topic_kiosk)
        return _dead(topic, payload, exc.reason, record_id=rid, reject=rid is not None)
    if record.kiosk != topic_kiosk:
        return _dead(
            topic,
            payload,
            f"kiosk-mismatch: envelope says {record.kiosk!r}, topic says {topic_kiosk!r}",
            record_id=record.id,
        )
    try:
        check_body(record.kind, record.body, bounds_checked=True)  # decode_record did
    except SchemaError as exc:
        return _dead(
            topic,
            payload,
            exc.reason,
            record_id=record.id,
            reject=True,
            stream=record.stream,
            seq=record.seq,
        )
    return Accept(record=record)


def _usable_id(payload: bytes, topic_kiosk: str | None) -> str | None:
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("v") != 1 or obj.get("type") != "record":
        return None
    rid = obj.get("id")
    if isinstance(rid, str) and ULID_RE.match(rid) and obj.get("kiosk") == topic_kiosk:
        return rid
    return None
