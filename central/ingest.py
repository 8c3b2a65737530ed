"""What the collector does with one incoming message (sans-I/O).

``classify(topic, payload, keys)`` returns either an :class:`Accept` (a valid,
signed record to store idempotently) or a :class:`DeadLetter` with the reason
from docs/protocol.md. Nothing here raises on input, whatever the bytes.

Theory of operation
-------------------
A record is accepted only from a kiosk the registry knows (``unknown-kiosk``),
that is not revoked (``revoked``), signed with one of that kiosk's keys (the
:class:`~sync.envelope_signing.EnvelopeSignatureError` reason: ``unsigned``,
``bad-sig``, ``unknown-key``, ``mismatch``, ``not-canonical``).

A dead letter that carries a usable record id is also a *rejection*: central
tells the kiosk to stop resending it, and the kiosk parks the record for good.
Only a record whose signature verified may be rejected: a forger holding a real
kiosk's record id must not make central tell that kiosk to drop its record, so
refusals for who-sent-it (unknown kiosk, revoked, any signature failure) and
for envelopes whose signature cannot be checked are dead-lettered silently.

The :class:`Accept` keeps the signed envelope as received (the evidence the
store keeps) and its digest (:func:`sync.wire_signing.record_digest`), which
central's signed ack names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from central.fleet.keys import KeyDirectory
from sync.envelope import (
    MAX_RECORD_BYTES,
    EnvelopeError,
    Record,
    decode_object,
    decode_record_object,
    kiosk_of_topic,
)
from sync.envelope_signing import EnvelopeSignatureError, canonical_bytes, verify
from sync.ids import ULID_RE
from sync.schemas import SchemaError, bounded_reason, check_body, check_fleet_message
from sync.wire_signing import digest_of_canonical

PAYLOAD_HEAD_BYTES = 4096
MAX_FLEET_BYTES = PAYLOAD_HEAD_BYTES * 16


@dataclass(frozen=True, kw_only=True)
class Accept:
    """A verified record: the record, its signed envelope as received, and its digest."""

    record: Record
    envelope: bytes
    digest: str
    key_id: str


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
    #: The message as received (valid UTF-8 JSON, checked): the store keeps this text as
    #: the last heartbeat instead of encoding the body again (the heartbeat path's cost).
    text: str | None = None


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
    return FleetUpdate(kiosk=topic_kiosk, type=kind, body=obj, text=payload.decode("utf-8"))


def classify(
    topic: str, payload: bytes, keys: KeyDirectory, *, max_bytes: int = MAX_RECORD_BYTES
) -> Accept | DeadLetter:
    """Decide what to do with one message from ``aps/v1/<kiosk>/up/records``.

    ``keys`` is the registry (:class:`central.fleet.keys.KeyDirectory`): who may send,
    with which keys.
    """
    topic_kiosk = kiosk_of_topic(topic)
    try:
        record, obj = decode_record_object(payload, max_bytes=max_bytes)
    except EnvelopeError as exc:
        # Reject (ack as parked) what a kiosk could be waiting for: a record id
        # from the topic's own kiosk, so it stops resending, if that kiosk signed
        # it. Without a usable id, a valid signature, or for a version we do not
        # know, nothing is acked.
        rid = None
        if exc.reason.startswith(("unknown-kind", "bad-envelope")):
            rid = _usable_id(payload, topic_kiosk, keys)
        return _dead(topic, payload, exc.reason, record_id=rid, reject=rid is not None)
    if record.kiosk != topic_kiosk:
        return _dead(
            topic,
            payload,
            f"kiosk-mismatch: envelope says {record.kiosk!r}, topic says {topic_kiosk!r}",
            record_id=record.id,
        )
    sender = keys.sender(record.kiosk)
    if sender is None:
        return _dead(
            topic,
            payload,
            f"unknown-kiosk: {record.kiosk!r} is not in the registry; enrol it "
            "(aps-central enroll create)",
            record_id=record.id,
        )
    if not sender.may_send:
        return _dead(
            topic,
            payload,
            f"revoked: kiosk {record.kiosk!r} was revoked; its records are refused",
            record_id=record.id,
        )
    try:  # one canonical encoding serves the signature and the digest
        canonical = canonical_bytes(obj)
        kid = verify("aps-record-v1", obj, sender.keys, canonical=canonical)
    except EnvelopeSignatureError as exc:
        return _dead(topic, payload, str(exc), record_id=record.id)
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
    return Accept(
        record=record, envelope=payload, digest=digest_of_canonical(canonical), key_id=kid
    )


def _usable_id(payload: bytes, topic_kiosk: str | None, keys: KeyDirectory) -> str | None:
    """The id of a malformed record, if the topic's kiosk signed it (so may be told)."""
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("v") != 1 or obj.get("type") != "record":
        return None
    rid = obj.get("id")
    if not (isinstance(rid, str) and ULID_RE.match(rid) and obj.get("kiosk") == topic_kiosk):
        return None
    sender = keys.sender(topic_kiosk) if topic_kiosk is not None else None
    if sender is None or not sender.may_send:
        return None
    try:
        verify("aps-record-v1", obj, sender.keys)
    except EnvelopeSignatureError:
        return None
    return rid
