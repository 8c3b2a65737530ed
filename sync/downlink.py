"""The typed downlink: every message of the state, nudge and RPC topics (docs/protocol.md).

Theory of operation
-------------------
Central never relies on retained MQTT messages for state (they are best
effort in clustered brokers): a kiosk *asks* for what changed since its
cursor (``up/state-request``) every time it connects, central *answers* from
its downlink log (``down/state``), and central *nudges* (``down/nudge``) a
kiosk when something new is there for it. Remote calls (remote signing) go
``up/rpc`` and come back on ``down/rpc``.

Every message here is a strict, bounded schema (pydantic ``TypedDict``s, as
:mod:`sync.schemas`, whose text and code validators it reuses), and each
item of a state reply carries a body whose schema depends on its ``kind``
(:data:`ITEM_SCHEMAS`). ``catalogue`` bodies are checked by whatever
validator the kiosk application registers (helper A's ``sync/catalogue.py``):
:class:`ItemValidators` holds the table; a kind without a validator is
refused, never applied unchecked.

Decoding is two-level on purpose: the reply's envelope is checked first, and
each item body on its own, so one bad item is reported (and skipped by the
kiosk's inbox) without throwing away the valid ones beside it.

:class:`DownlinkRouter` maps a topic to its handler. An unknown topic, a
message that does not decode, or a handler that raises is logged and counted
in :attr:`DownlinkRouter.counters`; it never propagates, so garbage from a
broker can never stop a kiosk's sync thread.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from sync import SyncError
from sync.envelope import KIOSK_ID_RE, PROTOCOL_VERSION, TOPIC_ROOT, check_kiosk_id
from sync.ids import ULID_RE
from sync.schemas import (
    _MULTI,
    _SINGLE,
    INT64_MAX,
    DateTimeText,
    DossierCode,
    FeeVnd,
    FieldProblem,
    FullName,
    LookupCode,
    LooseDateTime,
    Phone,
    ProcedureCode,
    SchemaError,
    _like,
    _problem,
    check_json_bounds,
    int_within_bounds,
)

log = logging.getLogger("aps.downlink")

# -- limits --------------------------------------------------------------------------
MAX_PAGE_ITEMS = 100  # items one state request may ask for, and a reply may carry
MAX_STATE_BYTES = 256 * 1024  # an encoded state reply, at most
#: An item whose encoding is over this never fits a reply; publishers refuse it
#: (:func:`check_item_size`), central skips one that got into the log anyway.
MAX_ITEM_BYTES = 240 * 1024
MAX_RPC_BYTES = 64 * 1024  # an rpc request or reply, encoded
MAX_NUDGE_BYTES = 1024
MAX_REQUEST_BYTES = 4 * 1024  # a state request, encoded
MAX_KEY_CHARS = 128
MAX_CURSOR = INT64_MAX
STATUS_NOTE_CHARS = 2000
ANSWER_CHARS = 8000
FAQ_QUESTION_CHARS = 500
NEWS_TITLE_CHARS = 300
NEWS_BODY_CHARS = 16000
TAG_CHARS = 64
MAX_TAGS = 32
PORTAL_CODE_CHARS = 64
ERROR_MESSAGE_CHARS = 500

AGENCY_RE_TEXT = r"\A[0-9A-Za-z.]{1,40}\Z"  # the agency part of a dossier code
METHOD_RE_TEXT = r"\A[a-z][a-z0-9_-]{0,31}(\.[a-z][a-z0-9_-]{0,31}){1,3}\Z"
KIND_RE_TEXT = r"\A[a-z][a-z0-9-]{0,31}\Z"
ITEM_ID_RE_TEXT = r"\A[0-9A-Za-z][0-9A-Za-z._-]{0,63}\Z"
ERROR_CODE_RE_TEXT = r"\A[a-z][a-z0-9_-]{0,39}\Z"

DOSSIER_STATES = (
    "submitted",
    "received",
    "processing",
    "additional-papers",
    "result-ready",
    "result-returned",
    "rejected",
    "withdrawn",
)


class DownlinkError(SyncError, ValueError):
    """A downlink message that cannot be used; ``reason`` names the field and the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- topics ----------------------------------------------------------------------------
UP_STATE_REQUEST = "state-request"
UP_RPC = "rpc"
DOWN_STATE = "state"
DOWN_NUDGE = "nudge"
DOWN_RPC = "rpc"
DOWN_ACKS = "acks"


def up_topic(kiosk: str, name: str) -> str:
    return f"{TOPIC_ROOT}/{check_kiosk_id(kiosk)}/up/{name}"


def down_topic(kiosk: str, name: str) -> str:
    return f"{TOPIC_ROOT}/{check_kiosk_id(kiosk)}/down/{name}"


def split_topic(mqtt_topic: str) -> tuple[str, str, str] | None:
    """``aps/v1/<k>/<up|down>/<name>`` -> (kiosk, direction, name), or None."""
    parts = mqtt_topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        return None
    if parts[3] not in ("up", "down") or not KIOSK_ID_RE.match(parts[2]):
        return None
    return parts[2], parts[3], parts[4]


# -- field types -----------------------------------------------------------------------
_strict = with_config(ConfigDict(strict=True, extra="ignore"))


def _pattern(text: str, rule: str) -> Any:
    return _like(re.compile(text), rule)


KioskId = Annotated[str, Field(max_length=63), _pattern(KIOSK_ID_RE.pattern, "expected a kiosk id")]
Ulid = Annotated[str, Field(max_length=26), _pattern(ULID_RE.pattern, "expected a ULID")]
Agency = Annotated[
    str,
    Field(max_length=40),
    _pattern(AGENCY_RE_TEXT, "expected an agency identifier such as 000.00.14.H56"),
]
Cursor = Annotated[int, Field(ge=0, le=MAX_CURSOR)]
ItemCursor = Annotated[int, Field(ge=1, le=MAX_CURSOR)]
PageLimit = Annotated[int, Field(ge=1, le=MAX_PAGE_ITEMS)]
Method = Annotated[
    str,
    Field(max_length=100),
    _pattern(METHOD_RE_TEXT, "expected a method name such as sign.start"),
]
Kind = Annotated[
    str, Field(max_length=32), _pattern(KIND_RE_TEXT, "expected a kind such as dossier-status")
]
ItemKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS), _SINGLE]
ItemId = Annotated[
    str, Field(max_length=64), _pattern(ITEM_ID_RE_TEXT, "expected an id of 0-9 A-Z a-z . _ -")
]
ErrorCode = Annotated[
    str, Field(max_length=40), _pattern(ERROR_CODE_RE_TEXT, "expected an error code")
]


ErrorMessage = Annotated[str, Field(max_length=ERROR_MESSAGE_CHARS), _SINGLE]
PortalCode = Annotated[str, Field(max_length=PORTAL_CODE_CHARS), _SINGLE]
StatusNote = Annotated[str, Field(max_length=STATUS_NOTE_CHARS), _MULTI]
AnswerText = Annotated[str, Field(min_length=1, max_length=ANSWER_CHARS), _MULTI]
ScreenMessage = Annotated[str, Field(min_length=1, max_length=4000), _MULTI]
Question = Annotated[str, Field(min_length=1, max_length=FAQ_QUESTION_CHARS), _SINGLE]
Tag = Annotated[str, Field(min_length=1, max_length=TAG_CHARS), _SINGLE]
NewsTitle = Annotated[str, Field(min_length=1, max_length=NEWS_TITLE_CHARS), _SINGLE]
NewsText = Annotated[str, Field(min_length=1, max_length=NEWS_BODY_CHARS), _MULTI]


# -- messages ---------------------------------------------------------------------------
@_strict
class StateRequestMessage(TypedDict):
    v: Literal[1]
    type: Literal["state-request"]
    kiosk: KioskId
    request: Ulid
    cursor: Cursor
    office: Agency
    limit: PageLimit


@_strict
class ItemWire(TypedDict):
    cursor: ItemCursor
    kind: Kind
    key: ItemKey
    body: dict[str, Any]


@_strict
class StateReplyMessage(TypedDict):
    v: Literal[1]
    type: Literal["state"]
    request: Ulid
    items: Annotated[list[ItemWire], Field(max_length=MAX_PAGE_ITEMS)]
    next_cursor: Cursor
    more: bool
    ts: NotRequired[LooseDateTime | None]


@_strict
class NudgeMessage(TypedDict):
    v: Literal[1]
    type: Literal["nudge"]
    cursor: Cursor
    ts: NotRequired[LooseDateTime | None]


@_strict
class RpcRequestMessage(TypedDict):
    v: Literal[1]
    type: Literal["rpc"]
    kiosk: KioskId
    request: Ulid
    method: Method
    params: dict[str, Any]


@_strict
class RpcErrorBody(TypedDict):
    code: ErrorCode
    message: ErrorMessage


@_strict
class RpcReplyMessage(TypedDict):
    v: Literal[1]
    type: Literal["rpc-reply"]
    request: Ulid
    ok: bool
    result: NotRequired[dict[str, Any] | None]
    error: NotRequired[RpcErrorBody | None]


# -- item bodies ------------------------------------------------------------------------
@_strict
class DossierStatusBody(TypedDict):
    code: DossierCode
    state: Literal[
        "submitted",
        "received",
        "processing",
        "additional-papers",
        "result-ready",
        "result-returned",
        "rejected",
        "withdrawn",
    ]
    paid: bool
    paid_amount_vnd: NotRequired[FeeVnd | None]
    paid_at: NotRequired[DateTimeText | None]
    portal_code: NotRequired[PortalCode | None]
    note: NotRequired[StatusNote | None]
    changed_at: DateTimeText
    due: NotRequired[DateTimeText | None]


@_strict
class AnswerBody(TypedDict):
    lookup_code: LookupCode
    category: Literal["question", "feedback", "petition"]
    answer: AnswerText
    answered_at: DateTimeText
    answered_by: NotRequired[FullName | None]


@_strict
class SupportReplyBody(TypedDict):
    lookup_code: LookupCode
    status: Literal["assigned", "no-one-on-duty", "resolved"]
    staff_name: NotRequired[FullName | None]
    channel: NotRequired[Literal["desk", "hotline", "zalo"] | None]
    hotline: NotRequired[Phone | None]
    message: ScreenMessage
    at: DateTimeText


@_strict
class FaqBody(TypedDict):
    id: ItemId
    question: Question
    answer: AnswerText
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)]
    procedure: NotRequired[ProcedureCode | None]
    published_at: DateTimeText
    withdrawn: bool


@_strict
class NewsBody(TypedDict):
    id: ItemId
    title: NewsTitle
    body: NewsText
    published_at: DateTimeText
    withdrawn: bool


#: Which body field must equal the item's key, per kind.
KEY_FIELDS: dict[str, str] = {
    "dossier-status": "code",
    "answer": "lookup_code",
    "support-reply": "lookup_code",
    "faq": "id",
    "news": "id",
}

ITEM_SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "dossier-status": TypeAdapter(DossierStatusBody),
    "answer": TypeAdapter(AnswerBody),
    "support-reply": TypeAdapter(SupportReplyBody),
    "faq": TypeAdapter(FaqBody),
    "news": TypeAdapter(NewsBody),
}
KINDS = (*ITEM_SCHEMAS, "catalogue")

_MESSAGES: dict[str, TypeAdapter[Any]] = {
    "state-request": TypeAdapter(StateRequestMessage),
    "state": TypeAdapter(StateReplyMessage),
    "nudge": TypeAdapter(NudgeMessage),
    "rpc": TypeAdapter(RpcRequestMessage),
    "rpc-reply": TypeAdapter(RpcReplyMessage),
}


def _schema_error(kind: str, exc: ValidationError, root: str) -> SchemaError:
    problems = tuple(_problem(e) for e in exc.errors(include_url=False, include_input=False))
    return SchemaError(kind, problems, root=root)


BodyValidator = Callable[[dict[str, Any]], None]


def _typed(kind: str) -> BodyValidator:
    schema = ITEM_SCHEMAS[kind]

    def check(body: dict[str, Any]) -> None:
        try:
            schema.validate_python(body)
        except ValidationError as exc:
            raise _schema_error(kind, exc, "body") from None

    return check


class ItemValidators:
    """Body validators by item kind; the five typed kinds built in, ``catalogue`` registered.

    A validator raises (:class:`SchemaError`, or any ``ValueError``) to refuse
    a body. :meth:`check` also holds every body to the generic JSON bounds and
    its key to the body's own identifier (``code``, ``lookup_code``, ``id``).
    """

    def __init__(self) -> None:
        self._by_kind: dict[str, BodyValidator] = {k: _typed(k) for k in ITEM_SCHEMAS}

    def register(self, kind: str, validator: BodyValidator) -> None:
        """Add (or replace) the validator of ``kind`` (the app registers ``catalogue``)."""
        if not _match(KIND_RE_TEXT, kind):
            raise DownlinkError(f"kind {kind!r}: expected a kind such as dossier-status")
        self._by_kind[kind] = validator

    def kinds(self) -> frozenset[str]:
        return frozenset(self._by_kind)

    def check(self, kind: str, key: str, body: Any) -> None:
        """Raise :class:`DownlinkError` unless ``body`` is valid for ``kind`` under ``key``."""
        validator = self._by_kind.get(kind)
        if validator is None:
            raise DownlinkError(
                f"item kind {kind!r}: no validator registered on this kiosk "
                f"(known: {', '.join(sorted(self._by_kind))})"
            )
        if not isinstance(body, dict):
            raise DownlinkError(f"{kind} {key}: body: expected an object")
        bound = check_json_bounds(body, level=1)
        if bound is not None:
            raise DownlinkError(f"{kind} {key}: {bound.describe('body')}")
        try:
            validator(body)
        except SchemaError as exc:
            raise DownlinkError(f"{kind} {key}: {exc.reason}") from None
        except (ValueError, TypeError) as exc:
            raise DownlinkError(f"{kind} {key}: {exc}") from None
        key_field = KEY_FIELDS.get(kind)
        if key_field is not None and body.get(key_field) != key:
            raise DownlinkError(
                f"{kind} {key}: body.{key_field} is {body.get(key_field)!r}, must equal the "
                "item's key"
            )


def _match(pattern: str, text: str) -> bool:
    return re.match(pattern, text) is not None


def check_item_size(kind: str, key: str, body: Mapping[str, Any]) -> int:
    """The encoded size of one item; :class:`DownlinkError` if it could never be sent."""
    size = len(encode_json({"cursor": MAX_CURSOR, "kind": kind, "key": key, "body": body}))
    if size > MAX_ITEM_BYTES:
        raise DownlinkError(
            f"{kind} {key}: {size} bytes encoded, over the downlink item limit of "
            f"{MAX_ITEM_BYTES} bytes; split it or shrink it"
        )
    return size


# -- encoding and decoding ---------------------------------------------------------------
def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


_DECODER = json.JSONDecoder(
    parse_float=_finite, parse_constant=_no_constant, parse_int=int_within_bounds
)


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _decode(payload: bytes, expected: str, max_bytes: int) -> dict[str, Any]:
    if len(payload) > max_bytes:
        raise DownlinkError(f"oversize: {len(payload)} bytes, the limit is {max_bytes}")
    try:
        text = payload.decode("utf-8")
        obj = _DECODER.decode(text)
        if "\\u" in text:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")  # lone surrogates
    except (ValueError, OverflowError, RecursionError) as exc:
        raise DownlinkError(f"bad-json: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise DownlinkError("not-an-object")
    if obj.get("v") != PROTOCOL_VERSION or isinstance(obj.get("v"), bool):
        raise DownlinkError(f"unknown-version: {obj.get('v')!r}")
    if obj.get("type") != expected:
        raise DownlinkError(f"type: expected {expected!r}, got {obj.get('type')!r}")
    # Generic bounds for everything but item bodies, which are bounded one by one.
    outer = obj
    if expected == "state" and isinstance(obj.get("items"), list):
        outer = {
            **obj,
            "items": [{**i, "body": {}} if isinstance(i, dict) else i for i in obj["items"]],
        }
    problem = check_json_bounds(outer)
    if problem is not None:
        raise DownlinkError(problem.describe(""))
    try:
        _MESSAGES[expected].validate_python(obj)
    except ValidationError as exc:
        raise DownlinkError(_schema_error(expected, exc, "").reason) from None
    return obj


@dataclass(frozen=True, kw_only=True)
class StateRequest:
    kiosk: str
    request: str
    cursor: int
    office: str
    limit: int = MAX_PAGE_ITEMS

    def encode(self) -> bytes:
        return encode_json(
            {
                "v": PROTOCOL_VERSION,
                "type": "state-request",
                "kiosk": self.kiosk,
                "request": self.request,
                "cursor": self.cursor,
                "office": self.office,
                "limit": self.limit,
            }
        )


def decode_state_request(payload: bytes) -> StateRequest:
    obj = _decode(payload, "state-request", MAX_REQUEST_BYTES)
    return StateRequest(
        kiosk=obj["kiosk"],
        request=obj["request"],
        cursor=obj["cursor"],
        office=obj["office"],
        limit=obj["limit"],
    )


@dataclass(frozen=True, kw_only=True)
class Item:
    """One downlink item as a kiosk receives it (body not yet checked by kind)."""

    cursor: int
    kind: str
    key: str
    body: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "kind": self.kind, "key": self.key, "body": self.body}


@dataclass(frozen=True, kw_only=True)
class StateReply:
    request: str
    items: tuple[Item, ...]
    next_cursor: int
    more: bool
    ts: str | None = None

    def encode(self) -> bytes:
        return encode_json(
            {
                "v": PROTOCOL_VERSION,
                "type": "state",
                "request": self.request,
                "items": [i.wire() for i in self.items],
                "next_cursor": self.next_cursor,
                "more": self.more,
                "ts": self.ts or now_iso(),
            }
        )


def decode_state_reply(payload: bytes) -> StateReply:
    """The reply's envelope, checked; item bodies are checked later, one by one."""
    obj = _decode(payload, "state", MAX_STATE_BYTES)
    items = tuple(
        Item(cursor=i["cursor"], kind=i["kind"], key=i["key"], body=i["body"]) for i in obj["items"]
    )
    cursors = [i.cursor for i in items]
    if cursors != sorted(cursors) or len(set(cursors)) != len(cursors):
        raise DownlinkError("items: cursors must strictly increase")
    if items and obj["next_cursor"] < items[-1].cursor:
        raise DownlinkError("next_cursor: below the last item's cursor")
    return StateReply(
        request=obj["request"],
        items=items,
        next_cursor=obj["next_cursor"],
        more=obj["more"],
        ts=obj.get("ts"),
    )


@dataclass(frozen=True, kw_only=True)
class Nudge:
    cursor: int
    ts: str | None = None

    def encode(self) -> bytes:
        return encode_json(
            {
                "v": PROTOCOL_VERSION,
                "type": "nudge",
                "cursor": self.cursor,
                "ts": self.ts or now_iso(),
            }
        )


def decode_nudge(payload: bytes) -> Nudge:
    obj = _decode(payload, "nudge", MAX_NUDGE_BYTES)
    return Nudge(cursor=obj["cursor"], ts=obj.get("ts"))


@dataclass(frozen=True, kw_only=True)
class RpcRequest:
    kiosk: str
    request: str
    method: str
    params: dict[str, Any]

    def encode(self) -> bytes:
        return encode_json(
            {
                "v": PROTOCOL_VERSION,
                "type": "rpc",
                "kiosk": self.kiosk,
                "request": self.request,
                "method": self.method,
                "params": self.params,
            }
        )


def decode_rpc_request(payload: bytes) -> RpcRequest:
    obj = _decode(payload, "rpc", MAX_RPC_BYTES)
    return RpcRequest(
        kiosk=obj["kiosk"], request=obj["request"], method=obj["method"], params=obj["params"]
    )


@dataclass(frozen=True, kw_only=True)
class RpcReply:
    request: str
    ok: bool
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "type": "rpc-reply",
            "request": self.request,
            "ok": self.ok,
        }
        if self.ok:
            obj["result"] = self.result or {}
        else:
            obj["error"] = {
                "code": self.error_code or "error",
                "message": (self.error_message or "")[:ERROR_MESSAGE_CHARS],
            }
        return encode_json(obj)


def decode_rpc_reply(payload: bytes) -> RpcReply:
    obj = _decode(payload, "rpc-reply", MAX_RPC_BYTES)
    if obj["ok"]:
        if not isinstance(obj.get("result"), dict):
            raise DownlinkError("result: required (an object) when ok is true")
        return RpcReply(request=obj["request"], ok=True, result=obj["result"])
    error = obj.get("error")
    if not isinstance(error, dict):
        raise DownlinkError("error: required ({code, message}) when ok is false")
    return RpcReply(
        request=obj["request"], ok=False, error_code=error["code"], error_message=error["message"]
    )


# -- the router ----------------------------------------------------------------------------
Handler = Callable[[str, bytes], object]


@dataclass
class RouterCounters:
    routed: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    unknown_topics: int = 0
    handler_errors: int = 0


class DownlinkRouter:
    """One table from a kiosk's ``down/<name>`` (or any exact topic) to its handler.

    :meth:`dispatch` never raises: an unknown topic, a :class:`DownlinkError`
    (or any ``EnvelopeError``/``ValueError``) from the handler's decode, or any
    other exception is logged and counted, and the next message is handled
    as usual. Log lines are rate-limited by nothing but their level: a
    flooding broker shows in the counters, the log gets one WARNING per
    message (at most what the broker delivers).
    """

    def __init__(self, kiosk: str) -> None:
        self.kiosk = check_kiosk_id(kiosk)
        self._names: dict[str, Handler] = {}
        self._exact: dict[str, Handler] = {}
        self._prefixes: list[tuple[str, Handler]] = []
        self.counters = RouterCounters()

    def on(self, name: str, handler: Handler) -> None:
        """Route ``aps/v1/<this kiosk>/down/<name>`` to ``handler(topic, payload)``."""
        self._names[name] = handler

    def on_prefix(self, prefix: str, handler: Handler) -> None:
        """Route every topic starting with ``prefix`` (fleet topics) to ``handler``."""
        self._prefixes.append((prefix, handler))

    def handler_for(self, mqtt_topic: str) -> tuple[str, Handler] | None:
        parts = split_topic(mqtt_topic)
        if parts is not None and parts[0] == self.kiosk and parts[1] == "down":
            handler = self._names.get(parts[2])
            if handler is not None:
                return parts[2], handler
        for prefix, handler in self._prefixes:
            if mqtt_topic.startswith(prefix):
                return prefix, handler
        return None

    def dispatch(self, mqtt_topic: str, payload: bytes) -> bool:
        """Handle one message; True if a handler took it without error."""
        found = self.handler_for(mqtt_topic)
        if found is None:
            self.counters.unknown_topics += 1
            log.warning("ignored a message on an unknown topic %r", mqtt_topic[:200])
            return False
        name, handler = found
        try:
            handler(mqtt_topic, payload)
        except (DownlinkError, ValueError) as exc:
            self.counters.invalid[name] += 1
            reason = getattr(exc, "reason", None) or str(exc)
            log.warning("ignored an invalid message on %s: %s", mqtt_topic, reason[:300])
            return False
        except Exception:
            self.counters.handler_errors += 1
            log.exception("the handler of %s failed; the message is dropped", mqtt_topic)
            return False
        self.counters.routed[name] += 1
        return True


__all__ = [
    "DownlinkError",
    "DownlinkRouter",
    "FieldProblem",
    "Item",
    "ItemValidators",
    "Nudge",
    "RpcReply",
    "RpcRequest",
    "StateReply",
    "StateRequest",
]
