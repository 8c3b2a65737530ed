"""One schema per record kind, and the bounds of every protocol message.

Shared by the kiosk and central (docs/protocol.md, "Kinds" and "Bounds"), so
the two sides cannot disagree about what a valid record is: the kiosk's
outbox refuses to queue a body its kind's schema refuses
(``sync.outbox.Transaction.add``), and central dead-letters and rejects the
same bodies (``central.ingest.classify``). Nothing a kiosk promises to a
citizen can then be refused by central.

Theory of operation
-------------------
Two depths, both sans-I/O:

1. :func:`check_json_bounds` is generic: any decoded protocol message (record,
   ack, heartbeat, status) has integers within SQLite's signed 64-bit range,
   strings, keys and containers bounded by length, and nesting bounded by
   depth. ``sync.envelope`` applies it at decode, before anyone looks at a
   field.
2. Per-kind schemas (pydantic TypedDicts, strict: no coercion, ``"7"`` is not 7)
   bound every field the protocol names: lengths, patterns, ranges, item
   counts. Fields a schema does not name are ignored (docs/protocol.md,
   "Versioning"), but the generic bounds still hold for them.

Citizen text (names, addresses, messages, form values) must be NFC and free of
Unicode control and format characters (categories Cc, Cf, Cs, Zl, Zp: bidi
overrides, zero-width characters, NUL...); newline and tab are allowed only
in multi-line message fields. The schema *refuses*, it never rewrites: central
stores the bytes it received. Normalising (NFC, trimming) is the kiosk's job,
before it builds a body (:func:`normalize_text`).

A failure is a :class:`SchemaError` carrying :class:`FieldProblem` items
(path, code, limit), so a caller can say in plain words which field broke
which rule (``edge_agent.dossiers`` does it in Vietnamese).

All limits are the constants below; docs/protocol.md lists them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from sync import SyncError
from sync import jobs as _jobs
from sync import remote_config as _remote_config
from sync.ids import ULID_RE

# -- limits (docs/protocol.md, "Bounds" and "Kinds") ----------------------------------

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1  # SQLite's INTEGER range: a bigger value cannot be stored
MAX_JSON_DEPTH = 8  # the envelope is level 1, its body 2, body.applicant 3
MAX_JSON_ITEMS = 1024  # items of any one JSON array or object
MAX_JSON_KEY_CHARS = 256 * 1024  # keys are strings, bounded alike (schemas bound known keys)
MAX_JSON_STRING_CHARS = 256 * 1024  # so any payload up to 256 KiB meets it
MAX_REASON_CHARS = 300  # a dead letter's or a rejection's reason

MAX_COUNT = 10**9  # sane upper bound of a count (queued, rejected, pending receipts)
MAX_BYTES_FIELD = 2**62  # sane upper bound of a byte count (db_bytes, disk_free_bytes)
MAX_SECONDS = 10**11  # sane upper bound of a duration in seconds (about 3,000 years)
MAX_DATETIME_CHARS = 40
MAX_VERSION_CHARS = 64

FULL_NAME_CHARS = 200
ADDRESS_CHARS = 300
PHONE_CHARS = 20
DOSSIER_CODE_CHARS = 64
PROCEDURE_CHARS = 32
FORM_KEYS = 64
FORM_KEY_CHARS = 64
FORM_VALUE_CHARS = 2000
FORM_INT_ABS = 10**15
FEE_VND_MAX = 10**12
MAX_ATTACHMENTS = 32
ATTACHMENT_NAME_CHARS = 200
MIME_CHARS = 100
MAX_ATTACHMENT_FILE_BYTES = 2**40  # sanity only: central enforces the configured limit
MAX_CHUNKS = 100_000  # sanity only: central enforces the configured limit
MAX_CHUNK_BYTES = 192 * 1024  # base64 of it (256 Ki characters) fits in a 256 KiB record
MESSAGE_CHARS = 4000
TOPIC_CHARS = 100
CONTACT_CHARS = 200
CHANNEL_CHARS = 32
MAX_DEVICES = 16
DEVICE_STATE_CHARS = 32
DEVICE_ERROR_CHARS = 2000

# The same values as the Literal types of RatingBody and FeedbackBody (a test checks).
RATING_LEVELS = ("rat_hai_long", "hai_long", "khong_hai_long")
FEEDBACK_CATEGORIES = ("question", "feedback", "petition")
SUPPORT_TYPES = ("help", "home-visit")
SIGNATURE_METHODS = ("handwritten", "remote")
REASON_CHARS = 500  # a rating's or a home visit's reason
TRANSACTION_CHARS = 128  # a remote-signing provider's transaction id
SIGNATURE_VALUE_CHARS = 16 * 1024  # base64 of a signature value or a certificate
MAX_PAGES = 10_000  # pages of one certification request
MAX_COPIES = 1_000

# Unicode categories refused in citizen text: controls, format characters
# (bidi overrides and isolates, zero-width space/joiners, BOM), lone
# surrogates, line and paragraph separators (newlines in disguise).
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
MULTILINE_ALLOWED = frozenset("\n\t")

ID_NUMBER_RE = re.compile(r"\A(?:[0-9]{12}|[0-9]{9})\Z")  # CCCD 12 digits, old CMND 9
PHONE_RE = re.compile(r"\A\+?[0-9][0-9 .()-]{2,19}\Z")
# A lookup code the kiosk gives a question, feedback, petition or support request:
# two letters (HT question, PA feedback, KN petition, HO help, TN home visit),
# YYMMDD, then slot*1000 + n like a dossier code, so kiosks of one office never collide.
LOOKUP_CODE_RE = re.compile(r"\A[A-Z]{2}-[0-9]{6}-[0-9]{4}\Z")
DOSSIER_CODE_RE = re.compile(r"\A[0-9A-Za-z.]{1,40}-[0-9]{6}-[0-9]{4}\Z")
PROCEDURE_RE = re.compile(r"\A[0-9A-Za-z._-]{1,32}\Z")
SLUG_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,39}\Z")
FORM_KEY_RE = re.compile(r"\A[a-z][a-z0-9_]{0,63}\Z")
MIME_RE = re.compile(r"\A[A-Za-z0-9.+-]{1,49}/[A-Za-z0-9.+-]{1,50}\Z")
SHA256_RE = re.compile(r"\A[0-9a-f]{64}\Z")
DATE_RE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
# What the kiosk writes: datetime.now().astimezone().isoformat(timespec=...),
# seconds and fractions optional, a UTC offset (or Z) required.
DATETIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])"
)
MAX_OFFSET = timedelta(hours=14)  # UTC-12:00 .. UTC+14:00 exist; allow +-14:00


# -- errors ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FieldProblem:
    """One field that breaks one rule.

    ``path`` is where (``("applicant", "full_name")``), ``code`` which rule
    (``missing``, ``type``, ``too-long``, ``too-short``, ``too-many``, ``range``,
    ``pattern``, ``choice``, ``control-char``, ``not-nfc``, ``datetime``,
    ``date``, ``hash``, ``depth``), ``limit`` the number in the rule if there is
    one, and ``detail`` the rule in English.
    """

    path: tuple[str | int, ...]
    code: str
    detail: str
    limit: int | None = None

    def where(self, root: str = "body") -> str:
        return format_path((root, *self.path) if root else self.path) or "message"

    def describe(self, root: str = "body") -> str:
        return f"{self.where(root)}: {self.detail}"


class SchemaError(SyncError, ValueError):
    """A record body (or a fleet message) breaks its kind's schema.

    ``problems`` lists every field at fault, first one first; ``str(exc)`` is
    ``"<kind> body: body.<field>: <rule>"`` with the first problem.
    """

    def __init__(
        self, kind: str, problems: tuple[FieldProblem, ...], *, root: str = "body"
    ) -> None:
        self.kind = kind
        self.problems = problems
        self.root = root
        super().__init__(f"{kind} {root}: {problems[0].describe(root)}")

    @property
    def first(self) -> FieldProblem:
        return self.problems[0]

    @property
    def reason(self) -> str:
        """The dead-letter reason: ``bad-body: body.<field>: <rule>``."""
        first = self.first
        if first.code == "hash":
            return bounded_reason(f"chunk-hash-mismatch: {first.describe(self.root)}")
        prefix = "bad-body" if self.root == "body" else "bad-envelope"
        return bounded_reason(f"{prefix}: {first.describe(self.root)}")


_PLAIN_KEY = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


def format_path(path: tuple[str | int, ...]) -> str:
    """``body.applicant.full_name``, ``body.attachments[2].mime``; odd keys quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            shown = ascii(part[:40] + ("..." if len(part) > 40 else ""))
            out += f"[{shown}]"
    return out


def bounded_reason(reason: str) -> str:
    """A reason cut to MAX_REASON_CHARS (what acks and dead letters may carry)."""
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - 3] + "..."


# -- the generic bounds --------------------------------------------------------------


class _Bound(Exception):
    def __init__(self, code: str, detail: str, limit: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.limit = limit
        self.path: list[str | int] = []


def check_json_bounds(value: Any, *, level: int = 1) -> FieldProblem | None:
    """Return the first bound a decoded JSON value breaks, or None.

    Integers within -2^63..2^63-1, strings up to MAX_JSON_STRING_CHARS, keys up
    to MAX_JSON_KEY_CHARS, arrays and objects up to MAX_JSON_ITEMS items,
    nesting up to MAX_JSON_DEPTH levels (``value`` itself is at ``level``: 1
    for a whole message, 2 for a record's body).
    """
    if _within_bounds(value, level):
        return None
    try:  # out of bounds somewhere: walk again, slowly, to say where
        _walk(value, level)
    except _Bound as b:
        return FieldProblem(
            path=tuple(reversed(b.path)), code=b.code, detail=b.detail, limit=b.limit
        )
    return None


def shape_within_bounds(payload: bytes) -> bool:
    """True if the raw bytes alone prove depth, item counts and string lengths bounded.

    Three scans in C: nesting cannot be deeper than the number of brackets,
    no container can hold more items than there are commas plus one, and no
    string is longer than the payload. Integers are not covered (see
    ``sync.envelope``, which checks them as it parses). False means only
    "walk the decoded value": most messages (a dossier has six containers)
    never need the walk.
    """
    return (
        len(payload) <= min(MAX_JSON_STRING_CHARS, MAX_JSON_KEY_CHARS)
        and payload.count(b"[") + payload.count(b"{") <= MAX_JSON_DEPTH
        and payload.count(b",") < MAX_JSON_ITEMS
    )


def int_within_bounds(text: str) -> int:
    """``parse_int`` for json.loads: the integer; OverflowError outside SQLite's range."""
    value = int(text)
    if len(text) >= 19 and not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError(text)
    return value


def _within_bounds(value: Any, level: int) -> bool:
    """The fast path of check_json_bounds: no recursion, no path, exact types.

    What json.loads makes has exactly these types; anything else (a subclass,
    a tuple built in memory) falls back to the thorough walk.
    """
    stack: list[tuple[Any, int]] = [(value, level)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict or kind is list:
            if depth > MAX_JSON_DEPTH or len(node) > MAX_JSON_ITEMS:
                return False
            if kind is dict:
                for key in node:
                    if type(key) is not str or len(key) > MAX_JSON_KEY_CHARS:
                        return False
                items = node.values()
            else:
                items = node
            for item in items:
                t = type(item)
                if t is str:
                    if len(item) > MAX_JSON_STRING_CHARS:
                        return False
                elif t is int:
                    if not INT64_MIN <= item <= INT64_MAX:
                        return False
                elif t is dict or t is list:
                    stack.append((item, depth + 1))
                elif t is float:
                    if not math.isfinite(item):
                        return False
                elif t is not bool and item is not None:
                    return False
        elif kind is str:
            if len(node) > MAX_JSON_STRING_CHARS:
                return False
        elif kind is int:
            if not INT64_MIN <= node <= INT64_MAX:
                return False
        elif kind is float:
            if not math.isfinite(node):
                return False
        elif kind is not bool and node is not None:
            return False
    return True


def _walk(value: Any, depth: int) -> None:
    if isinstance(value, str):
        if len(value) > MAX_JSON_STRING_CHARS:
            raise _Bound(
                "too-long", f"longer than {MAX_JSON_STRING_CHARS} characters", MAX_JSON_STRING_CHARS
            )
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Bound("type", "not a finite number")
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise _Bound("range", "integer outside -2^63..2^63-1 (SQLite's range)")
    elif isinstance(value, dict | list):
        if depth > MAX_JSON_DEPTH:
            raise _Bound("depth", f"nested deeper than {MAX_JSON_DEPTH} levels", MAX_JSON_DEPTH)
        if len(value) > MAX_JSON_ITEMS:
            raise _Bound("too-many", f"more than {MAX_JSON_ITEMS} items", MAX_JSON_ITEMS)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            try:
                if isinstance(value, dict) and not isinstance(key, str):
                    raise _Bound("type", "object key is not text")
                if isinstance(key, str) and len(key) > MAX_JSON_KEY_CHARS:
                    raise _Bound(
                        "too-long",
                        f"key longer than {MAX_JSON_KEY_CHARS} characters",
                        MAX_JSON_KEY_CHARS,
                    )
                _walk(item, depth + 1)
            except _Bound as b:
                b.path.append(key if isinstance(key, int) else str(key)[:MAX_JSON_KEY_CHARS])
                raise
    else:
        raise _Bound("type", f"{type(value).__name__} is not a JSON value")


# -- text and value rules ------------------------------------------------------------


def normalize_text(value: str, *, multiline: bool = False) -> str:
    """What the kiosk does to citizen or card text before building a body.

    NFC; single-line text has its runs of whitespace (tabs, newlines included)
    collapsed to one space and is trimmed; multi-line text has CRLF/CR turned
    into LF and is trimmed. Control and format characters are left in place,
    for the schema to refuse: they are not silently dropped.
    """
    text = unicodedata.normalize("NFC", value)
    if multiline:
        return text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return " ".join(text.split())


def text_problem(value: str, *, multiline: bool = False) -> tuple[str, str] | None:
    """(code, detail) if ``value`` is not acceptable citizen text, else None."""
    if not value.isprintable():  # fast path in C: False for every refused category
        for ch in value:
            if multiline and ch in MULTILINE_ALLOWED:
                continue
            category = unicodedata.category(ch)
            if category in REFUSED_CATEGORIES:
                allowed = " (only newline and tab are allowed here)" if multiline else ""
                return (
                    "control-char",
                    f"contains control or format character U+{ord(ch):04X} ({category}){allowed}",
                )
    if not unicodedata.is_normalized("NFC", value):
        return ("not-nfc", "not in Unicode normalisation form NFC")
    return None


def _single_line(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PydanticCustomError(problem[0], problem[1])
    return value


def _multi_line(value: str) -> str:
    problem = text_problem(value, multiline=True)
    if problem is not None:
        raise PydanticCustomError(problem[0], problem[1])
    return value


def parse_datetime(value: str) -> datetime | None:
    """An ISO 8601 date-time with a UTC offset, as the kiosk writes it; None if not.

    A well-formed but implausible instant (year 9999, 1970) is returned, not
    refused: a kiosk with a wrong clock must not lose its records.
    """
    if len(value) > MAX_DATETIME_CHARS or DATETIME_RE.fullmatch(value) is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:  # month 13, hour 25...
        return None
    offset = parsed.utcoffset()
    if offset is None or abs(offset) > MAX_OFFSET:  # +14:01 .. +14:59
        return None
    return parsed


def unix_seconds(value: datetime) -> float:
    """Seconds since 1970-01-01T00:00Z of an aware datetime; never overflows.

    ``datetime.timestamp()`` and UTC conversion raise for instants that only
    an offset pushes past year 9999 or before year 1; this does plain
    arithmetic instead.
    """
    offset = value.utcoffset()
    naive = value.replace(tzinfo=None) - datetime(1970, 1, 1)
    return naive.total_seconds() - (offset.total_seconds() if offset is not None else 0.0)


def _datetime(value: str) -> str:
    if parse_datetime(value) is None:
        raise PydanticCustomError(
            "datetime",
            "expected an ISO 8601 date-time with a UTC offset, e.g. {example}",
            {"example": "2026-11-26T09:15:02.123+07:00"},
        )
    return value


def _date(value: str) -> str:
    try:
        if DATE_RE.match(value):
            date.fromisoformat(value)
            return value
    except ValueError:
        pass
    raise PydanticCustomError("date", "expected a date YYYY-MM-DD")


def _ulid(value: str) -> str:
    if not ULID_RE.match(value):
        raise PydanticCustomError("pattern", "expected a 26-character ULID")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _form_value(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > FORM_VALUE_CHARS:
            raise PydanticCustomError(
                "too-long", "longer than {limit} characters", {"limit": FORM_VALUE_CHARS}
            )
        return _single_line(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > FORM_INT_ABS:
            raise PydanticCustomError(
                "range", "must be between -{limit} and {limit}", {"limit": FORM_INT_ABS}
            )
        return value
    raise PydanticCustomError("type", "expected text, a whole number or true/false")


def _str_or_int(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_VERSION_CHARS:
            raise PydanticCustomError(
                "too-long", "longer than {limit} characters", {"limit": MAX_VERSION_CHARS}
            )
        return _single_line(value)
    if _is_int(value) and 0 <= value <= INT64_MAX:
        return value
    raise PydanticCustomError("type", "expected text or a whole number >= 0")


def _number(limit: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PydanticCustomError("type", "expected a number")
        if not 0 <= value <= limit:
            raise PydanticCustomError("range", "must be between 0 and {limit}", {"limit": limit})
        return value

    return check


_SINGLE = AfterValidator(_single_line)
_MULTI = AfterValidator(_multi_line)


_PATTERN_RULES: dict[str, str] = {}


def _like(pattern: re.Pattern[str], rule: str) -> Any:
    """The pattern, checked by pydantic-core's own (Rust) regex engine: no Python call.

    ``\\A``/``\\Z`` become ``^``/``$``, which in that engine match only at the
    ends of the text (no trailing newline is allowed, unlike Python's ``$``).
    """
    native = pattern.pattern.replace("\\A", "^").replace("\\Z", "$")
    _PATTERN_RULES[native] = rule
    return Field(pattern=native)


# Citizen text: bounded, NFC, no control/format characters (newline and tab
# only where the text is multi-line).
FullName = Annotated[str, Field(min_length=1, max_length=FULL_NAME_CHARS), _SINGLE]
Address = Annotated[str, Field(max_length=ADDRESS_CHARS), _SINGLE]
AttachmentName = Annotated[str, Field(max_length=ATTACHMENT_NAME_CHARS), _SINGLE]
Message = Annotated[str, Field(min_length=1, max_length=MESSAGE_CHARS), _MULTI]
TopicText = Annotated[str, Field(max_length=TOPIC_CHARS), _SINGLE]
Contact = Annotated[str, Field(max_length=CONTACT_CHARS), _SINGLE]
Channel = Annotated[str, Field(max_length=CHANNEL_CHARS), _SINGLE]
Reason = Annotated[str, Field(max_length=REASON_CHARS), _SINGLE]
# Codes and identifiers: bounded, and a pattern.
IdNumber = Annotated[
    str,
    Field(max_length=12),
    _like(ID_NUMBER_RE, "expected 12 digits (CCCD) or 9 digits (old CMND)"),
]
Phone = Annotated[
    str,
    Field(max_length=PHONE_CHARS),
    _like(PHONE_RE, "expected a phone number: digits, optional +, spaces, . - ( )"),
]
Mime = Annotated[
    str, Field(max_length=MIME_CHARS), _like(MIME_RE, "expected a media type such as image/jpeg")
]
Sha256 = Annotated[
    str, Field(max_length=64), _like(SHA256_RE, "expected 64 lower-case hex digits (SHA-256)")
]
#: A kiosk agent's run: 16 hex digits new at each start, a dot, 16 hex digits of its box
#: (docs/broker.md, "Two boxes with one identity").
INSTANCE_RE = re.compile(r"\A[0-9a-f]{16}\.[0-9a-f]{16}\Z")
Instance = Annotated[
    str, Field(max_length=33), _like(INSTANCE_RE, "expected <16 hex>.<16 hex> (run.box)")
]
FormKey = Annotated[
    str,
    Field(max_length=FORM_KEY_CHARS),
    _like(FORM_KEY_RE, "expected a lower-case field name of a-z, 0-9 and _"),
]
DossierCode = Annotated[
    str,
    Field(max_length=DOSSIER_CODE_CHARS),
    _like(DOSSIER_CODE_RE, "expected a national dossier code <agency>-YYMMDD-NNNN"),
]
ProcedureCode = Annotated[
    str,
    Field(max_length=PROCEDURE_CHARS),
    _like(PROCEDURE_RE, "expected a procedure code such as 1.001193"),
]
LookupCode = Annotated[
    str,
    Field(max_length=14),
    _like(LOOKUP_CODE_RE, "expected a lookup code such as PA-261201-1004"),
]
RuleName = Annotated[
    str, Field(max_length=40), _like(SLUG_RE, "expected a short rule name of a-z, 0-9 and -")
]
# The alphabet is checked by base64.b64decode(validate=True) in _chunk_rules.
Base64 = Annotated[str, Field(max_length=MAX_CHUNK_BYTES * 4 // 3)]
DateTimeText = Annotated[str, Field(max_length=MAX_DATETIME_CHARS), AfterValidator(_datetime)]
DateText = Annotated[str, Field(max_length=10), AfterValidator(_date)]
Ulid = Annotated[str, Field(max_length=26), AfterValidator(_ulid)]
FormValue = Annotated[Any, AfterValidator(_form_value)]
VersionValue = Annotated[Any, AfterValidator(_str_or_int)]
Seconds = Annotated[Any, AfterValidator(_number(MAX_SECONDS))]
Counter = Annotated[int, Field(ge=0, le=MAX_COUNT)]
ByteCount = Annotated[int, Field(ge=0, le=MAX_BYTES_FIELD)]
FileSize = Annotated[int, Field(ge=0, le=MAX_ATTACHMENT_FILE_BYTES)]
ChunkCount = Annotated[int, Field(ge=1, le=MAX_CHUNKS)]
ChunkIndex = Annotated[int, Field(ge=0, le=MAX_CHUNKS - 1)]
ChunkSize = Annotated[int, Field(ge=0, le=MAX_CHUNK_BYTES)]
FeeVnd = Annotated[int, Field(ge=0, le=FEE_VND_MAX)]
ShortText = Annotated[str, Field(max_length=DEVICE_STATE_CHARS)]
ErrorText = Annotated[str, Field(max_length=DEVICE_ERROR_CHARS)]
VersionText = Annotated[str, Field(max_length=MAX_VERSION_CHARS)]
LooseDateTime = Annotated[str, Field(max_length=MAX_DATETIME_CHARS)]


# -- the schemas -------------------------------------------------------------------
# TypedDicts, not models: validated in place (about twice as fast as building
# model instances), nothing is rewritten. Strict: no coercion ("7" is not 7,
# true is not 1). Fields not named here are ignored (docs/protocol.md,
# "Versioning") but still generically bounded.
_strict = with_config(ConfigDict(strict=True, extra="ignore"))


@_strict
class ApplicantSchema(TypedDict):
    full_name: FullName
    id_number: IdNumber
    date_of_birth: NotRequired[DateText | None]
    phone: NotRequired[Phone | None]
    address: NotRequired[Address | None]


@_strict
class AttachmentMeta(TypedDict):
    att: Ulid
    name: AttachmentName
    mime: Mime
    size: FileSize
    sha256: Sha256
    chunks: ChunkCount


@_strict
class FeeDetail(TypedDict):
    """How ``fee_vnd`` was computed from the procedure's fee rule and the form."""

    rule: RuleName  # free, flat, per-page, per-copy, per-case
    amount_vnd: FeeVnd
    pages: NotRequired[Annotated[int, Field(ge=0, le=MAX_PAGES)] | None]
    copies: NotRequired[Annotated[int, Field(ge=0, le=MAX_COPIES)] | None]


SignatureValue = Annotated[str, Field(min_length=1, max_length=SIGNATURE_VALUE_CHARS)]


@_strict
class SignatureSchema(TypedDict):
    """The citizen's signature over ``document_sha256`` (the dossier's signed content).

    handwritten: strokes (JSON) and the rendered PNG are attachments of the same
    dossier, named by their ``att`` ids; remote: what the provider returned.
    """

    method: Literal["handwritten", "remote"]
    document_sha256: Sha256
    signed_at: NotRequired[DateTimeText | None]
    strokes_att: NotRequired[Ulid | None]
    image_att: NotRequired[Ulid | None]
    provider: NotRequired[RuleName | None]
    transaction: NotRequired[Annotated[str, Field(max_length=TRANSACTION_CHARS)] | None]
    value: NotRequired[SignatureValue | None]
    certificate: NotRequired[SignatureValue | None]


@_strict
class DossierBody(TypedDict):
    code: DossierCode
    procedure: ProcedureCode
    procedure_version: NotRequired[VersionValue | None]
    form: Annotated[dict[FormKey, FormValue], Field(max_length=FORM_KEYS)]
    applicant: ApplicantSchema
    fee_vnd: NotRequired[FeeVnd | None]
    received_at: NotRequired[DateTimeText | None]
    due: NotRequired[DateTimeText | None]
    due_rule: NotRequired[RuleName | None]
    attachments: NotRequired[Annotated[list[AttachmentMeta], Field(max_length=MAX_ATTACHMENTS)]]
    fee: NotRequired[FeeDetail | None]
    signature: NotRequired[SignatureSchema | None]
    identity_source: NotRequired[RuleName | None]  # qr, mrz, chip, typed
    # The code of an earlier filing of this citizen that was committed but never
    # confirmed as seen (crash before the code was shown): staff may merge the two.
    unconfirmed_before: NotRequired[DossierCode | None]


@_strict
class SupportBody(TypedDict):
    message: Message
    topic: NotRequired[TopicText | None]
    contact: NotRequired[Contact | None]
    channel: NotRequired[Channel | None]
    type: NotRequired[Literal["help", "home-visit"] | None]  # absent: help
    lookup_code: NotRequired[LookupCode | None]
    source: NotRequired[RuleName | None]  # screen, button
    full_name: NotRequired[FullName | None]
    phone: NotRequired[Phone | None]
    address: NotRequired[Address | None]  # home visit: where
    reason: NotRequired[Reason | None]  # home visit: elderly, disabled, seriously ill...


@_strict
class FeedbackBody(TypedDict):
    category: Literal["question", "feedback", "petition"]
    message: Message
    contact: NotRequired[Contact | None]
    lookup_code: NotRequired[LookupCode | None]
    procedure: NotRequired[ProcedureCode | None]  # the procedure it is about, if any


@_strict
class RatingBody(TypedDict):
    level: Literal["rat_hai_long", "hai_long", "khong_hai_long"]
    dossier_code: NotRequired[DossierCode | None]
    reason: NotRequired[Reason | None]


@_strict
class ChunkBody(TypedDict):
    att: Ulid
    index: ChunkIndex
    total: ChunkCount
    size: ChunkSize
    sha256: Sha256
    data: Base64
    file_sha256: NotRequired[Sha256 | None]
    file_size: NotRequired[FileSize | None]


def _chunk_rules(body: Mapping[str, Any]) -> FieldProblem | None:
    if body["index"] >= body["total"]:
        return FieldProblem(
            path=("index",), code="range", detail="must be below body.total (0-based)"
        )
    try:
        raw = base64.b64decode(body["data"], validate=True)
    except (binascii.Error, ValueError):
        return FieldProblem(path=("data",), code="pattern", detail="not valid base64")
    if len(raw) != body["size"]:
        return FieldProblem(
            path=("size",), code="range", detail=f"says {body['size']} bytes, data holds {len(raw)}"
        )
    if hashlib.sha256(raw).hexdigest() != body["sha256"]:
        return FieldProblem(path=("sha256",), code="hash", detail="does not match body.data")
    return None


BODY_SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "dossier": TypeAdapter(DossierBody),
    "support": TypeAdapter(SupportBody),
    "feedback": TypeAdapter(FeedbackBody),
    "rating": TypeAdapter(RatingBody),
    "chunk": TypeAdapter(ChunkBody),
    # Fleet operations (issue 10): job reports and remote-configuration reports.
    "job": _jobs.JOB_REPORT,
    "config": _remote_config.CONFIG_REPORT,
}
_EXTRA_RULES: dict[str, Callable[[Mapping[str, Any]], FieldProblem | None]] = {
    "chunk": _chunk_rules
}


def check_body(kind: str, body: Any, *, bounds_checked: bool = False) -> None:
    """Raise :class:`SchemaError` unless ``body`` is valid for record ``kind``.

    Checks the generic bounds too, so a body built in memory (the kiosk) is
    held to exactly what a decoded one (central) is; ``bounds_checked=True``
    skips them for a body that ``sync.envelope`` decoded (and so checked).
    """
    schema = BODY_SCHEMAS.get(kind)
    if schema is None:
        raise SchemaError(
            kind, (FieldProblem(path=(), code="choice", detail=f"unknown record kind {kind!r}"),)
        )
    if not isinstance(body, dict):
        raise SchemaError(kind, (FieldProblem(path=(), code="type", detail="expected an object"),))
    if not bounds_checked:
        bound = check_json_bounds(body, level=2)  # as inside its envelope
        if bound is not None:
            raise SchemaError(kind, (bound,))
    _validate(kind, schema, body)
    extra = _EXTRA_RULES.get(kind)
    if extra is not None:
        problem = extra(body)
        if problem is not None:
            raise SchemaError(kind, (problem,))


def _validate(kind: str, schema: TypeAdapter[Any], obj: dict[str, Any], root: str = "body") -> None:
    try:
        schema.validate_python(obj)
    except ValidationError as exc:
        problems = tuple(_problem(e) for e in exc.errors(include_url=False, include_input=False))
        raise SchemaError(kind, problems, root=root) from None


# pydantic's error types -> our codes and plain English rules.
def _problem(err: Any) -> FieldProblem:
    path = tuple(p for p in err["loc"] if p != "[key]")
    etype: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    if etype == "missing":
        return FieldProblem(path=path, code="missing", detail="missing")
    if etype in ("string_too_long", "too_long"):
        n = int(ctx.get("max_length", 0))
        what = "characters" if etype == "string_too_long" else "items"
        return FieldProblem(
            path=path,
            code="too-long" if etype == "string_too_long" else "too-many",
            detail=f"more than {n} {what}" if what == "items" else f"longer than {n} characters",
            limit=n,
        )
    if etype == "string_too_short":
        n = int(ctx.get("min_length", 0))
        detail = "empty" if n == 1 else f"shorter than {n} characters"
        return FieldProblem(path=path, code="too-short", detail=detail, limit=n)
    if etype in ("less_than_equal", "greater_than_equal"):
        le, ge = ctx.get("le"), ctx.get("ge")
        bound = le if le is not None else ge
        detail = f"must be at most {le}" if le is not None else f"must be at least {ge}"
        return FieldProblem(
            path=path, code="range", detail=detail, limit=bound if _is_int(bound) else None
        )
    if etype == "string_pattern_mismatch":
        rule = _PATTERN_RULES.get(str(ctx.get("pattern")), "does not have the expected form")
        return FieldProblem(path=path, code="pattern", detail=rule)
    if etype == "literal_error":
        return FieldProblem(path=path, code="choice", detail=f"expected {ctx.get('expected')}")
    if etype.endswith("_type"):
        expected = {
            "string_type": "text",
            "int_type": "a whole number",
            "dict_type": "an object",
            "list_type": "a list",
            "model_type": "an object",
            "bool_type": "true or false",
        }.get(etype, etype.removesuffix("_type"))
        return FieldProblem(path=path, code="type", detail=f"expected {expected}")
    limit = ctx.get("limit")
    return FieldProblem(
        path=path, code=etype, detail=str(err["msg"]), limit=limit if _is_int(limit) else None
    )


# -- fleet messages (status, heartbeat) ---------------------------------------------------


# ``ts`` of fleet messages is informational (central uses its own clock): bounded text.
@_strict
class StatusMessage(TypedDict):
    state: Literal["online", "offline"]
    ts: NotRequired[LooseDateTime | None]
    instance: NotRequired[Instance | None]


@_strict
class DeviceHealth(TypedDict):
    state: ShortText
    last_error: NotRequired[ErrorText | None]
    since: NotRequired[LooseDateTime | None]
    pending_receipts: NotRequired[Counter | None]


@_strict
class CatalogueHealth(TypedDict):
    """The kiosk's active catalogue and the last one it refused (docs/catalogue.md)."""

    version: NotRequired[VersionText | None]
    rejected_version: NotRequired[VersionText | None]
    error: NotRequired[ErrorText | None]


@_strict
class UpdateHealth(TypedDict):
    """Where the box's software update stands (docs/updates.md); absent when none ran.

    ``state`` is one of ``idle``, ``downloading``, ``building``, ``switching``,
    ``restarting``, ``checking`` (the new release is on trial), ``committed``,
    ``rolled-back``, ``failed`` (nothing was switched) and ``inconsistent`` (the update and
    its rollback both failed: a technician is needed).
    """

    state: ShortText
    version: NotRequired[VersionText | None]  # the release being installed or just settled
    previous: NotRequired[VersionText | None]  # the release it replaces (the rollback target)
    step: NotRequired[ShortText | None]
    reason: NotRequired[ErrorText | None]
    at: NotRequired[LooseDateTime | None]


@_strict
class HeartbeatMessage(TypedDict):
    ts: NotRequired[LooseDateTime | None]
    queued: NotRequired[Counter | None]
    rejected: NotRequired[Counter | None]
    oldest_queued: NotRequired[DateTimeText | None]
    oldest_queued_s: NotRequired[Seconds | None]
    disk_free_bytes: NotRequired[ByteCount | None]
    db_bytes: NotRequired[ByteCount | None]
    uptime_s: NotRequired[Seconds | None]
    agent_version: NotRequired[VersionText | None]
    reconnects: NotRequired[Counter | None]
    identity_conflicts: NotRequired[Counter | None]
    subscribe_failures: NotRequired[Counter | None]
    deaf_reconnects: NotRequired[Counter | None]
    downlink_cursor: NotRequired[Annotated[int, Field(ge=0, le=INT64_MAX)] | None]
    catalogue: NotRequired[CatalogueHealth | None]
    # Fleet operations (issue 10): the remote configuration version the kiosk runs, its
    # software update, and the last error it logged (one line).
    config_version: NotRequired[VersionText | None]
    update: NotRequired[UpdateHealth | None]
    last_error: NotRequired[ErrorText | None]
    devices: NotRequired[
        Annotated[
            dict[Annotated[str, Field(max_length=32)], DeviceHealth],
            Field(max_length=MAX_DEVICES),
        ]
    ]


FLEET_SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "status": TypeAdapter(StatusMessage),
    "heartbeat": TypeAdapter(HeartbeatMessage),
}


def check_fleet_message(kind: str, obj: dict[str, Any]) -> None:
    """Raise :class:`SchemaError` (root ``""``: paths are top-level field names)."""
    schema = FLEET_SCHEMAS[kind]
    _validate(kind, schema, obj, root="")
