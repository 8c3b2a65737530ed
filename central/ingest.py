"""What the collector does with one incoming message (sans-I/O).

``classify(topic, payload)`` returns either an :class:`Accept` (a valid record
to store idempotently) or a :class:`DeadLetter` with the reason from
docs/protocol.md. A dead letter that carries a usable record id from the
topic's own kiosk is also a *rejection*: central tells that kiosk to stop
resending it. Nothing here raises on input, whatever the bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
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

PAYLOAD_HEAD_BYTES = 4096
RATING_LEVELS = frozenset({"rat_hai_long", "hai_long", "khong_hai_long"})


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
        reason=reason,
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
    """Status and heartbeat messages: versioned, from the topic's own kiosk."""
    topic_kiosk = kiosk_of_topic(topic)
    kind = topic.rsplit("/", 1)[-1]
    if len(payload) > PAYLOAD_HEAD_BYTES * 16:
        return _dead(topic, payload, f"oversize: {len(payload)} bytes for a {kind}")
    try:
        obj = decode_object(payload)
    except EnvelopeError as exc:
        return _dead(topic, payload, exc.reason)
    if obj.get("type") != kind:
        return _dead(topic, payload, f"bad-envelope: type: expected {kind!r}")
    if obj.get("kiosk") != topic_kiosk or topic_kiosk is None:
        return _dead(topic, payload, f"kiosk-mismatch: {kind} names {obj.get('kiosk')!r}")
    if kind == "status" and obj.get("state") not in ("online", "offline"):
        return _dead(topic, payload, "bad-envelope: state: expected 'online' or 'offline'")
    return FleetUpdate(kiosk=topic_kiosk, type=kind, body=obj)


class BodyError(ValueError):
    pass


def _need(body: dict[str, Any], name: str, kind: type, *, max_len: int | None = None) -> Any:
    if name not in body:
        raise BodyError(f"body.{name}: missing")
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BodyError(f"body.{name}: expected {kind.__name__}")
    if max_len is not None and isinstance(value, str) and len(value) > max_len:
        raise BodyError(f"body.{name}: longer than {max_len} characters")
    return value


def check_body(record: Record) -> None:
    """Check the kind-specific body (docs/protocol.md, "Kinds"); raise BodyError."""
    body = record.body
    if record.kind == "dossier":
        _need(body, "code", str, max_len=64)
        _need(body, "procedure", str, max_len=64)
        _need(body, "form", dict)
        applicant = _need(body, "applicant", dict)
        _need(applicant, "full_name", str, max_len=200)
        attachments = body.get("attachments", [])
        if not isinstance(attachments, list):
            raise BodyError("body.attachments: expected a list")
    elif record.kind == "support":
        _need(body, "message", str, max_len=4000)
    elif record.kind == "feedback":
        if body.get("category") not in ("feedback", "petition"):
            raise BodyError("body.category: expected 'feedback' or 'petition'")
        _need(body, "message", str, max_len=4000)
    elif record.kind == "rating":
        if body.get("level") not in RATING_LEVELS:
            raise BodyError(f"body.level: expected one of {sorted(RATING_LEVELS)}")
    elif record.kind == "chunk":
        _need(body, "att", str)
        index = _need(body, "index", int)
        total = _need(body, "total", int)
        if not 0 <= index < total:
            raise BodyError("body.index: must be 0 <= index < total")
        data = _need(body, "data", str)
        digest = _need(body, "sha256", str)
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BodyError("body.data: not base64") from None
        if hashlib.sha256(raw).hexdigest() != digest:
            raise BodyError("chunk-hash-mismatch: body.sha256 does not match body.data")


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
        check_body(record)
    except BodyError as exc:
        reason = str(exc)
        if not reason.startswith("chunk-hash-mismatch"):
            reason = f"bad-body: {reason}"
        return _dead(
            topic,
            payload,
            reason,
            record_id=record.id,
            reject=True,
            stream=record.stream,
            seq=record.seq,
        )
    return Accept(record=record)


def _usable_id(payload: bytes, topic_kiosk: str | None) -> str | None:
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("v") != 1 or obj.get("type") != "record":
        return None
    rid = obj.get("id")
    if isinstance(rid, str) and ULID_RE.match(rid) and obj.get("kiosk") == topic_kiosk:
        return rid
    return None
