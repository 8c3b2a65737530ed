"""Protocol messages of docs/protocol.md: build, encode, decode, validate.

Sans-I/O: bytes in, frozen dataclasses out (or :class:`EnvelopeError` naming
the field and the rule), and back. Both the kiosk and central use this
module, so the two sides cannot disagree about the shape of a message.

Every decoded message is held to the generic bounds of :mod:`sync.schemas`
(integers in SQLite's range, strings, keys and containers bounded, nesting
bounded by depth) before any field is looked at; the per-kind body schemas
are :func:`sync.schemas.check_body`.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sync import SyncError
from sync.ids import STREAM_RE, ULID_RE
from sync.schemas import (
    MAX_REASON_CHARS,
    bounded_reason,
    check_json_bounds,
    int_within_bounds,
    parse_datetime,
    shape_within_bounds,
    unix_seconds,
)

PROTOCOL_VERSION = 1
TOPIC_ROOT = f"aps/v{PROTOCOL_VERSION}"
KIOSK_ID_RE = re.compile(r"\A[a-z0-9][a-z0-9-]{1,62}\Z")
RESERVED_KIOSK_IDS = frozenset({"fleet"})
RECORD_KINDS = frozenset({"dossier", "support", "feedback", "rating", "chunk", "job", "config"})
MAX_RECORD_BYTES = 256 * 1024
MAX_ACK_IDS = 1000
# 1,000 ids with reasons of MAX_REASON_CHARS characters (up to 4 UTF-8 bytes each) fit.
MAX_ACK_BYTES = 2 * 1024 * 1024
MAX_SEQ = 2**63 - 1  # a signed 64-bit integer in every store


class EnvelopeError(SyncError, ValueError):
    """A message does not follow docs/protocol.md.

    ``reason`` is the short machine-readable reason stored with a dead letter
    (``bad-json``, ``unknown-version``, ``bad-envelope: seq: ...``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_kiosk_id(kiosk: str) -> str:
    """Return ``kiosk`` if it is a valid kiosk id, else raise EnvelopeError."""
    if not isinstance(kiosk, str) or not KIOSK_ID_RE.match(kiosk):
        raise EnvelopeError(
            bounded_reason(
                f"bad-envelope: kiosk: {kiosk!r} is not 2-63 characters of a-z, 0-9 and '-'"
            )
        )
    if kiosk in RESERVED_KIOSK_IDS:
        raise EnvelopeError(f"bad-envelope: kiosk: {kiosk!r} is reserved")
    return kiosk


def topic(kiosk: str, direction: str, name: str) -> str:
    """``aps/v1/<kiosk>/<up|down>/<name>``."""
    return f"{TOPIC_ROOT}/{kiosk}/{direction}/{name}"


def records_topic(kiosk: str) -> str:
    return topic(kiosk, "up", "records")


def acks_topic(kiosk: str) -> str:
    return topic(kiosk, "down", "acks")


def status_topic(kiosk: str) -> str:
    return topic(kiosk, "up", "status")


def heartbeat_topic(kiosk: str) -> str:
    return topic(kiosk, "up", "heartbeat")


def kiosk_of_topic(mqtt_topic: str) -> str | None:
    """The kiosk segment of an ``aps/v1/<kiosk>/...`` topic, or None."""
    parts = mqtt_topic.split("/")
    if len(parts) >= 4 and f"{parts[0]}/{parts[1]}" == TOPIC_ROOT:
        return parts[2]
    return None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


# Built once: ``json.loads`` with hooks builds a new decoder on every call.
_DECODER = json.JSONDecoder(
    parse_float=_finite, parse_constant=_no_constant, parse_int=int_within_bounds
)
_WIDE_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def _loads_object(payload: bytes) -> dict[str, Any]:
    # ValueError also covers integers over Python's int-string limit, and the
    # NaN/Infinity refused below; a store must be able to keep what we accept.
    big_ints = False
    try:
        text = payload.decode("utf-8")
        try:
            obj = _DECODER.decode(text)
        except OverflowError:
            # An integer outside SQLite's range: parse again to say where it is.
            big_ints = True
            obj = _WIDE_DECODER.decode(text)
        if b"\\u" in payload:
            # A \uD800-style escape decodes to a lone surrogate, which is not
            # text: it cannot be written as UTF-8 (or to any database).
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError(f"bad-json: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("not-an-object")
    version = obj.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise EnvelopeError(bounded_reason(f"unknown-version: {version!r}"))
    # The generic bounds, for every kind of message, before any field is read
    # (after the version: another version may have other bounds).
    problem = None
    if big_ints or not shape_within_bounds(payload):
        problem = check_json_bounds(obj)
    if problem is not None:
        raise EnvelopeError(bounded_reason(f"bad-envelope: {problem.describe('')}"))
    return obj


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise EnvelopeError(f"bad-envelope: {name}: missing")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise EnvelopeError(f"bad-envelope: {name}: expected {getattr(kind, '__name__', kind)}")
    return value


@dataclass(frozen=True, kw_only=True)
class Record:
    """One record envelope (kiosk -> central)."""

    kind: str
    kiosk: str
    stream: str
    seq: int
    id: str
    created: str
    body: dict[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        if self.kind not in RECORD_KINDS:
            raise EnvelopeError(bounded_reason(f"unknown-kind: {self.kind!r}"))
        check_kiosk_id(self.kiosk)
        if not STREAM_RE.match(self.stream):
            raise EnvelopeError("bad-envelope: stream: expected 16 lower-case hex digits")
        if not 1 <= self.seq <= MAX_SEQ:
            raise EnvelopeError(f"bad-envelope: seq: must be 1 to {MAX_SEQ}")
        if not ULID_RE.match(self.id):
            raise EnvelopeError("bad-envelope: id: expected a 26-character ULID")
        if not isinstance(self.created, str) or parse_datetime(self.created) is None:
            # Format only: a wrong but well-formed clock (9999, 1970) is not refused.
            raise EnvelopeError(
                "bad-envelope: created: expected an ISO 8601 date-time with a UTC offset,"
                " e.g. 2026-11-26T09:15:02.123+07:00"
            )

    def created_at(self) -> datetime:
        """``created`` parsed: an aware datetime with the kiosk's UTC offset.

        Valid by construction. The instant may be implausible (a kiosk without
        a real-time clock); compare it with central's clock, never refuse it.
        """
        parsed = parse_datetime(self.created)
        if parsed is None:  # pragma: no cover - refused in __post_init__
            raise EnvelopeError("bad-envelope: created: not a date-time")
        return parsed

    def created_unix(self) -> float:
        """``created`` as seconds since 1970-01-01T00:00Z; never raises or overflows."""
        return unix_seconds(self.created_at())

    def encode(self) -> bytes:
        return _dumps(
            {
                "v": PROTOCOL_VERSION,
                "type": "record",
                "kind": self.kind,
                "kiosk": self.kiosk,
                "stream": self.stream,
                "seq": self.seq,
                "id": self.id,
                "created": self.created,
                "body": self.body,
            }
        )


def decode_record(payload: bytes, *, max_bytes: int = MAX_RECORD_BYTES) -> Record:
    """Parse and validate a record envelope; raise EnvelopeError with the reason."""
    return decode_record_object(payload, max_bytes=max_bytes)[0]


def decode_record_object(
    payload: bytes, *, max_bytes: int = MAX_RECORD_BYTES
) -> tuple[Record, dict[str, Any]]:
    """As :func:`decode_record`, with the decoded JSON object (its ``sig`` included):
    what the signature is checked against and what central keeps as evidence."""
    if len(payload) > max_bytes:
        raise EnvelopeError(f"oversize: {len(payload)} bytes > limit {max_bytes}")
    obj = _loads_object(payload)
    if obj.get("type") != "record":
        raise EnvelopeError(
            bounded_reason(f"bad-envelope: type: expected 'record', got {obj.get('type')!r}")
        )
    kind = _field(obj, "kind", str)
    if kind not in RECORD_KINDS:
        raise EnvelopeError(bounded_reason(f"unknown-kind: {kind!r}"))
    record = Record(
        kind=kind,
        kiosk=check_kiosk_id(_field(obj, "kiosk", str)),
        stream=_field(obj, "stream", str),
        seq=_field(obj, "seq", int),
        id=_field(obj, "id", str),
        created=_field(obj, "created", str),
        body=_field(obj, "body", dict),
    )
    return record, obj


@dataclass(frozen=True, kw_only=True)
class Rejection:
    id: str
    reason: str


DIGEST_RE = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")  # base64url of 32 bytes, no padding


@dataclass(frozen=True, kw_only=True)
class Ack:
    """An ack batch (central -> kiosk): ids committed, ids parked as rejected.

    ``kiosk`` names the kiosk it is for and ``digests[i]`` what central stored under
    ``acked[i]`` (:func:`sync.wire_signing.record_digest`); central signs the encoded ack
    (domain ``aps-ack-v1``), so a kiosk marks a record synced only on central's word that
    it holds exactly that record (docs/protocol.md, "Signed acks").
    """

    kiosk: str | None = None
    acked: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()

    def __post_init__(self) -> None:
        if len(self.acked) + len(self.rejected) > MAX_ACK_IDS:
            raise EnvelopeError(f"bad-envelope: ack: more than {MAX_ACK_IDS} ids; split it")
        if self.digests and len(self.digests) != len(self.acked):
            raise EnvelopeError("bad-envelope: digests: expected one digest per acked id")

    def to_object(self) -> dict[str, Any]:
        # Reasons are cut to MAX_REASON_CHARS, which decode_ack holds them to.
        obj: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "ack"}
        if self.kiosk is not None:
            obj["kiosk"] = self.kiosk
        obj["acked"] = list(self.acked)
        if self.digests:
            obj["digests"] = list(self.digests)
        obj["rejected"] = [{"id": r.id, "reason": bounded_reason(r.reason)} for r in self.rejected]
        return obj

    def encode(self) -> bytes:
        """The ack unsigned (central sends it signed: :func:`sync.wire_signing.sign_ack`)."""
        return _dumps(self.to_object())


def split_ack(
    acked: list[str],
    rejected: list[Rejection],
    *,
    kiosk: str | None = None,
    digests: dict[str, str] | None = None,
) -> list[Ack]:
    """Split ids into ack messages of at most MAX_ACK_IDS ids each."""
    out: list[Ack] = []
    items: list[str | Rejection] = [*acked, *rejected]
    for start in range(0, len(items), MAX_ACK_IDS):
        part = items[start : start + MAX_ACK_IDS]
        ids = tuple(i for i in part if isinstance(i, str))
        out.append(
            Ack(
                kiosk=kiosk,
                acked=ids,
                digests=tuple(digests[i] for i in ids) if digests is not None else (),
                rejected=tuple(i for i in part if isinstance(i, Rejection)),
            )
        )
    return out


def decode_ack(payload: bytes, *, max_bytes: int = MAX_ACK_BYTES) -> Ack:
    """Parse an ack batch: at most MAX_ACK_IDS ULIDs, reasons of at most MAX_REASON_CHARS."""
    return decode_ack_object(payload, max_bytes=max_bytes)[0]


def decode_ack_object(
    payload: bytes, *, max_bytes: int = MAX_ACK_BYTES
) -> tuple[Ack, dict[str, Any]]:
    """As :func:`decode_ack`, with the decoded object (for the signature check)."""
    if len(payload) > max_bytes:
        raise EnvelopeError(f"oversize: {len(payload)} bytes > limit {max_bytes}")
    obj = _loads_object(payload)
    if obj.get("type") != "ack":
        raise EnvelopeError(
            bounded_reason(f"bad-envelope: type: expected 'ack', got {obj.get('type')!r}")
        )
    kiosk = obj.get("kiosk")
    if kiosk is not None:
        check_kiosk_id(kiosk)
    acked = obj.get("acked", [])
    rejected = obj.get("rejected", [])
    digests = obj.get("digests", [])
    if not isinstance(acked, list) or not all(
        isinstance(i, str) and ULID_RE.match(i) for i in acked
    ):
        raise EnvelopeError("bad-envelope: acked: expected a list of 26-character ULIDs")
    if not isinstance(digests, list) or not all(
        isinstance(d, str) and DIGEST_RE.match(d) for d in digests
    ):
        raise EnvelopeError("bad-envelope: digests: expected a list of 43-character base64url")
    if digests and len(digests) != len(acked):
        raise EnvelopeError("bad-envelope: digests: expected one digest per acked id")
    if not isinstance(rejected, list):
        raise EnvelopeError("bad-envelope: rejected: expected a list")
    if len(acked) + len(rejected) > MAX_ACK_IDS:
        raise EnvelopeError(f"bad-envelope: ack: more than {MAX_ACK_IDS} ids")
    rej: list[Rejection] = []
    for item in rejected:
        if not isinstance(item, dict):
            raise EnvelopeError("bad-envelope: rejected: expected objects")
        rid = _field(item, "id", str)
        if not ULID_RE.match(rid):
            raise EnvelopeError("bad-envelope: rejected.id: expected a 26-character ULID")
        reason = item.get("reason", "")
        if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
            raise EnvelopeError(
                f"bad-envelope: rejected.reason: expected text of at most {MAX_REASON_CHARS}"
                " characters"
            )
        rej.append(Rejection(id=rid, reason=reason))
    ack = Ack(kiosk=kiosk, acked=tuple(acked), digests=tuple(digests), rejected=tuple(rej))
    return ack, obj


def encode_status(kiosk: str, state: str, ts: str, *, instance: str | None = None) -> bytes:
    body = {"v": PROTOCOL_VERSION, "type": "status", "kiosk": kiosk, "state": state, "ts": ts}
    if instance is not None:
        body["instance"] = instance
    return _dumps(body)


MACHINE_ID = Path("/etc/machine-id")


def new_instance(machine_id: Path = MACHINE_ID) -> str:
    """``<run>.<box>`` for a status message: new at each agent start, the box's stable.

    The box part is an application-specific hash of ``/etc/machine-id`` (the
    machine id itself is confidential, systemd says); without one it is zeros.
    Two boxes presenting one certificate show as two instances (docs/broker.md).
    """
    try:
        box = hmac.new(b"aps-kiosk-box", machine_id.read_bytes().strip(), "sha256").hexdigest()
    except OSError:
        box = "0" * 16
    return f"{secrets.token_hex(8)}.{box[:16]}"


def encode_heartbeat(kiosk: str, ts: str, **fields: Any) -> bytes:
    return _dumps({"v": PROTOCOL_VERSION, "type": "heartbeat", "kiosk": kiosk, "ts": ts, **fields})


def decode_object(payload: bytes) -> dict[str, Any]:
    """Decode any versioned protocol message to a dict (status, heartbeat, ...)."""
    return _loads_object(payload)


# -- central's presence (aps/v1/fleet/down/central/<collector>), docs/protocol.md ----------
CENTRAL_TOPICS = f"{TOPIC_ROOT}/fleet/down/central/+"


def central_topic(collector: str) -> str:
    """Where one collector says it is online (retained) or offline (its Last Will)."""
    return f"{TOPIC_ROOT}/fleet/down/central/{collector}"


def is_central_topic(mqtt_topic: str) -> bool:
    return mqtt_topic.startswith(f"{TOPIC_ROOT}/fleet/down/central/")


def encode_central(collector: str, state: str, session: str, ts: str) -> bytes:
    return _dumps(
        {
            "v": PROTOCOL_VERSION,
            "type": "central",
            "collector": collector,
            "state": state,
            "session": session,
            "ts": ts,
        }
    )
