"""The shared record schemas (sync/schemas.py): one truth for kiosk and central.

- Every bounded field of every kind, at and one past each bound (hypothesis
  draws values around both ends): the kiosk's ``Transaction.add`` refuses
  exactly what central's ``classify`` dead-letters, naming the same field, so
  nothing a kiosk promises can be refused at central.
- The generic bounds of any message (integers in SQLite's range, strings,
  keys, item counts, nesting depth).
- Citizen text: NFC, no control or format characters (newline and tab only in
  messages), refused on both sides, never rewritten by central.
- ``created``: ISO 8601 with a UTC offset, implausible clocks kept, the parsed
  instant exposed; acks bounded.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.ingest import Accept, DeadLetter
from central.store import SQLiteStore
from sync.envelope import (
    MAX_ACK_IDS,
    Ack,
    EnvelopeError,
    Record,
    Rejection,
    decode_ack,
    decode_record,
    records_topic,
)
from sync.ids import new_ulid
from sync.outbox import Outbox
from sync.schemas import (
    ADDRESS_CHARS,
    ATTACHMENT_NAME_CHARS,
    CHANNEL_CHARS,
    CONTACT_CHARS,
    FEE_VND_MAX,
    FORM_INT_ABS,
    FORM_KEYS,
    FORM_VALUE_CHARS,
    FULL_NAME_CHARS,
    INT64_MAX,
    INT64_MIN,
    MAX_ATTACHMENT_FILE_BYTES,
    MAX_ATTACHMENTS,
    MAX_CHUNK_BYTES,
    MAX_CHUNKS,
    MAX_JSON_DEPTH,
    MAX_JSON_ITEMS,
    MAX_JSON_STRING_CHARS,
    MAX_REASON_CHARS,
    MESSAGE_CHARS,
    PHONE_CHARS,
    TOPIC_CHARS,
    SchemaError,
    check_body,
    check_json_bounds,
    parse_datetime,
)
from tests import identity as keyring

KIOSK = "k-schema-01"
TOPIC = records_topic(KIOSK)
STREAM = "9f2c41d07a3e55b1"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILE_SHA = hashlib.sha256(b"photo").hexdigest()


def dossier() -> dict[str, Any]:
    return {
        "code": "000.00.14.H56-261126-3017",
        "procedure": "1.001193",
        "procedure_version": "2026.11",
        "form": {"ho_ten_tre": "Nguyễn Thị Ngọc Hường", "so_ban": 2, "co_ban_sao": True},
        "applicant": {
            "full_name": "Nguyễn Thị Ngọc Hường",
            "id_number": "079123456789",
            "date_of_birth": "1990-02-28",
            "phone": "0912 345 678",
            "address": "Phường 1, TP. Sa Đéc, Đồng Tháp",
        },
        "fee_vnd": 0,
        "received_at": "2026-11-26T09:15:02+07:00",
        "due": "2026-11-27T17:00+07:00",
        "due_rule": "working-days",
        "attachments": [
            {
                "att": new_ulid(),
                "name": "trang-1.jpg",
                "mime": "image/jpeg",
                "size": 5,
                "sha256": FILE_SHA,
                "chunks": 1,
            }
        ],
    }


def chunk(raw: bytes = b"photo", **changes: Any) -> dict[str, Any]:
    body = {
        "att": new_ulid(),
        "index": 0,
        "total": 1,
        "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "data": base64.b64encode(raw).decode(),
        "file_sha256": hashlib.sha256(raw).hexdigest(),
        "file_size": len(raw),
    }
    body.update(changes)
    return body


BASE: dict[str, Any] = {
    "dossier": dossier(),
    "support": {
        "topic": "máy in",
        "message": "Hết giấy\nở quầy 2",
        "contact": "",
        "channel": "kiosk",
    },
    "feedback": {"category": "petition", "message": "Kiến nghị:\tthêm ghế", "contact": "0909"},
    "rating": {"level": "khong_hai_long", "dossier_code": "000.00.14.H56-261126-3017"},
    "chunk": chunk(),
}


def with_value(kind: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE[kind])
    node = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return body


class _Rollback(Exception):
    pass


@pytest.fixture(scope="module")
def outbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outbox]:
    ob = Outbox(tmp_path_factory.mktemp("kiosk") / "k.db", KIOSK, min_free_disk_bytes=0)
    yield ob
    ob.close()


def kiosk_accepts(ob: Outbox, kind: str, body: dict[str, Any]) -> SchemaError | None:
    """What Transaction.add says (rolled back, so the shared outbox stays empty)."""
    try:
        with contextlib.suppress(_Rollback), ob.transaction() as tx:
            tx.add(kind, body)
            raise _Rollback
    except SchemaError as exc:
        return exc
    return None


def central_says(kind: str, body: dict[str, Any]) -> Accept | DeadLetter:
    rec = Record(
        kind=kind,
        kiosk=KIOSK,
        stream=STREAM,
        seq=1,
        id=new_ulid(),
        created="2026-11-26T09:15:02.123+07:00",
        body=body,
    )
    return keyring.classify(TOPIC, rec.encode())


def both_sides(ob: Outbox, kind: str, body: dict[str, Any]) -> SchemaError | None:
    """Kiosk and central must decide alike, and name the same field and rule."""
    kiosk = kiosk_accepts(ob, kind, body)
    central = central_says(kind, body)
    if kiosk is None:
        assert isinstance(central, Accept), central
        return None
    assert isinstance(central, DeadLetter), central
    if central.reason.startswith("not-canonical"):
        # A float has no canonical bytes, so no kiosk can sign it (and none sends it):
        # central refuses it naming the field, and tells no kiosk to drop a record.
        assert "a float" in central.reason and not central.reject, central
        return kiosk
    assert central.reject, central
    # The same field and rule. Central finds generic bounds (depth, SQLite's
    # integer range) while decoding the envelope: "bad-envelope" there.
    prefix, _, rule = central.reason.partition(": ")
    assert rule == kiosk.reason.partition(": ")[2], (central.reason, kiosk.reason)
    assert rule.startswith("body.")
    assert prefix in ("bad-body", "chunk-hash-mismatch", "bad-envelope")
    return kiosk


# -- the bodies the project itself sends stay valid --------------------------------


@pytest.mark.parametrize("kind", sorted(BASE))
def test_base_bodies_are_valid_on_both_sides(outbox: Outbox, kind: str) -> None:
    assert both_sides(outbox, kind, BASE[kind]) is None


def test_minimal_bodies_of_the_existing_tests_stay_valid(outbox: Outbox) -> None:
    from tests.stack import dossier_body
    from tests.stateful_sync import VALID_BODIES

    for kind, bodies in VALID_BODIES.items():
        for body in bodies:
            assert both_sides(outbox, kind, body) is None
    assert both_sides(outbox, "dossier", dossier_body(7)) is None
    assert both_sides(outbox, "support", {"message": "kill me 3"}) is None


# -- every bounded field, at and one past each bound -----------------------------------

STRING_FIELDS: list[tuple[str, tuple[Any, ...], int, str]] = [
    ("dossier", ("applicant", "full_name"), FULL_NAME_CHARS, "Ư"),
    ("dossier", ("applicant", "address"), ADDRESS_CHARS, "ả"),
    ("dossier", ("applicant", "phone"), PHONE_CHARS, "0"),
    ("dossier", ("form", "ho_ten_tre"), FORM_VALUE_CHARS, "ệ"),
    ("dossier", ("attachments", 0, "name"), ATTACHMENT_NAME_CHARS, "n"),
    ("support", ("message",), MESSAGE_CHARS, "ờ"),
    ("support", ("topic",), TOPIC_CHARS, "t"),
    ("support", ("contact",), CONTACT_CHARS, "c"),
    ("support", ("channel",), CHANNEL_CHARS, "k"),
    ("feedback", ("message",), MESSAGE_CHARS, "ữ"),
    ("feedback", ("contact",), CONTACT_CHARS, "9"),
]


@FUZZ
@given(
    case=st.sampled_from(STRING_FIELDS),
    delta=st.integers(-3, 3),
)
def test_strings_at_and_past_their_limit(
    outbox: Outbox, case: tuple[str, tuple[Any, ...], int, str], delta: int
) -> None:
    kind, path, limit, filler = case
    value = filler * (limit + delta)
    err = both_sides(outbox, kind, with_value(kind, path, value))
    if delta <= 0:
        assert err is None
    else:
        assert err is not None and err.first.path == path and err.first.code == "too-long"
        assert err.first.limit == limit and f"longer than {limit} characters" in err.reason


INT_FIELDS: list[tuple[str, tuple[Any, ...], int, int]] = [
    ("dossier", ("fee_vnd",), 0, FEE_VND_MAX),
    ("dossier", ("form", "so_ban"), -FORM_INT_ABS, FORM_INT_ABS),
    ("dossier", ("attachments", 0, "size"), 0, MAX_ATTACHMENT_FILE_BYTES),
    ("dossier", ("attachments", 0, "chunks"), 1, MAX_CHUNKS),
    ("chunk", ("total",), 1, MAX_CHUNKS),
]


def around(low: int, high: int) -> st.SearchStrategy[int]:
    return (
        st.integers(low - 3, low + 3)
        | st.integers(high - 3, high + 3)
        | st.sampled_from([INT64_MIN, INT64_MIN - 1, INT64_MAX, INT64_MAX + 1, 2**64, 2**70])
    )


@FUZZ
@given(data=st.data(), case=st.sampled_from(INT_FIELDS))
def test_integers_at_and_past_their_bounds(
    outbox: Outbox, data: st.DataObject, case: tuple[str, tuple[Any, ...], int, int]
) -> None:
    kind, path, low, high = case
    value = data.draw(around(low, high))
    err = both_sides(outbox, kind, with_value(kind, path, value))
    if low <= value <= high:
        assert err is None
    else:
        assert err is not None and err.first.path == path and err.first.code == "range"


@FUZZ
@given(
    case=st.sampled_from(
        [(("form",), FORM_KEYS), (("attachments",), MAX_ATTACHMENTS)],
    ),
    delta=st.integers(-2, 2),
)
def test_item_counts_at_and_past_their_limit(
    outbox: Outbox, case: tuple[tuple[str, ...], int], delta: int
) -> None:
    path, limit = case
    n = limit + delta
    if path == ("form",):
        value: Any = {f"f{i}": "x" for i in range(n)}
    else:
        value = [BASE["dossier"]["attachments"][0]] * n
    err = both_sides(outbox, "dossier", with_value("dossier", path, value))
    if delta <= 0:
        assert err is None
    else:
        assert err is not None and err.first.path == path and err.first.code == "too-many"


@pytest.mark.parametrize(
    ("id_number", "ok"),
    [
        ("079123456789", True),  # CCCD: 12 digits
        ("212345678", True),  # old CMND: 9 digits
        ("1" * 5000, False),  # went through end to end before
        ("07912345678", False),
        ("0791234567890", False),
        ("07912345678X", False),
        ("０７９１２３４５６７８９", False),  # full-width digits are not ASCII digits
        ("", False),
    ],
)
def test_id_number_is_a_cccd_or_cmnd(outbox: Outbox, id_number: str, ok: bool) -> None:
    err = both_sides(
        outbox, "dossier", with_value("dossier", ("applicant", "id_number"), id_number)
    )
    assert (err is None) is ok
    if not ok:
        assert err is not None and err.first.path == ("applicant", "id_number")


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (("applicant", "full_name"), "", "too-short"),
        (("applicant", "date_of_birth"), "28/02/1990", "date"),
        (("applicant", "date_of_birth"), "1990-02-30", "date"),
        (("applicant", "phone"), "call me", "pattern"),
        (("applicant",), {"full_name": "A"}, "missing"),
        (("code",), "X", "pattern"),
        (("procedure",), "1.001193; DROP", "pattern"),
        (("form",), {"Ho Ten": "x"}, "pattern"),
        (("form", "ho_ten_tre"), ["a"], "type"),
        (("form", "ho_ten_tre"), None, "type"),
        (("form", "ho_ten_tre"), 1.5, "type"),
        (("fee_vnd",), "0", "type"),  # strict: no coercion
        (("fee_vnd",), True, "type"),
        (("received_at",), "yesterday", "datetime"),
        (("due",), "2026-11-27T17:00", "datetime"),  # no UTC offset
        (("attachments", 0, "mime"), "image/jpeg; x", "pattern"),
        (("attachments", 0, "sha256"), "A" * 64, "pattern"),
        (("attachments", 0, "att"), "not-a-ulid", "pattern"),
    ],
)
def test_dossier_rules_name_the_field(
    outbox: Outbox, path: tuple[Any, ...], value: Any, code: str
) -> None:
    err = both_sides(outbox, "dossier", with_value("dossier", path, value))
    assert err is not None
    problem = err.first
    assert problem.code == code, err.problems
    assert problem.path[: len(path)] == path[: len(problem.path)]


@pytest.mark.parametrize(
    ("body", "field", "prefix"),
    [
        (chunk(index=1), "index", "bad-body"),  # 0 <= index < total
        (chunk(total=2**70), "total", "bad-body"),
        (chunk(size=4), "size", "bad-body"),
        (chunk(data="cGhvdG8"), "data", "bad-body"),  # missing padding
        (chunk(sha256="0" * 64), "sha256", "chunk-hash-mismatch"),
    ],
)
def test_chunk_rules(outbox: Outbox, body: dict[str, Any], field: str, prefix: str) -> None:
    err = both_sides(outbox, "chunk", body)
    assert err is not None and err.first.path[0] == field and err.reason.startswith(prefix)


def test_a_chunk_bigger_than_a_record_is_refused_by_the_schema() -> None:
    raw = b"x" * (MAX_CHUNK_BYTES + 1)
    with pytest.raises(SchemaError) as err:
        check_body("chunk", chunk(raw))
    assert err.value.first.path in (("size",), ("data",))


def test_rating_and_feedback_choices(outbox: Outbox) -> None:
    for body in ({"level": "so-so"}, {"level": 1}, {}):
        err = both_sides(outbox, "rating", body)
        assert err is not None and err.first.path == ("level",)
    err = both_sides(outbox, "feedback", {"category": "spam", "message": "x"})
    assert err is not None and err.first.path == ("category",)


# -- the generic bounds (any field, any message kind) -----------------------------------


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@FUZZ
@given(
    extra=st.one_of(
        st.integers(-3, 3).map(lambda d: ("depth", MAX_JSON_DEPTH - 2 + d)),
        st.integers(-3, 3).map(lambda d: ("items", MAX_JSON_ITEMS + d)),
        st.sampled_from([INT64_MIN - 1, INT64_MIN, INT64_MAX, INT64_MAX + 1, -(2**70)]).map(
            lambda v: ("int", v)
        ),
    )
)
def test_unknown_fields_are_generically_bounded(outbox: Outbox, extra: tuple[str, int]) -> None:
    """A field no schema names is ignored (versioning) but still bounded."""
    what, n = extra
    body = dict(BASE["support"])
    if what == "depth":  # body is level 2; the list holding 1 adds n levels
        body["x"] = nested(n)
        ok = 2 + n <= MAX_JSON_DEPTH
    elif what == "items":
        body["x"] = list(range(n))
        ok = n <= MAX_JSON_ITEMS
    else:
        body["x"] = n
        ok = INT64_MIN <= n <= INT64_MAX
    err = both_sides(outbox, "support", body)
    assert (err is None) is ok, (what, n, err)
    if err is not None:
        assert err.first.code in ("depth", "too-many", "too-long", "range")


def test_generic_bounds_hold_for_the_envelope_itself() -> None:
    """decode_record refuses an envelope with an out-of-range integer anywhere."""
    env = json.loads(
        Record(
            kind="rating",
            kiosk=KIOSK,
            stream=STREAM,
            seq=1,
            id=new_ulid(),
            created="2026-11-26T09:15:02+07:00",
            body={"level": "hai_long"},
        ).encode()
    )
    env["future_field"] = 2**63
    with pytest.raises(EnvelopeError) as err:
        decode_record(json.dumps(env).encode())
    assert err.value.reason.startswith("bad-envelope: future_field: integer outside")
    item = keyring.classify(TOPIC, json.dumps(env).encode())
    assert isinstance(item, DeadLetter) and item.reject and item.record_id == env["id"]


# -- citizen text ---------------------------------------------------------------------

REFUSED = [
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u202a",
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u2069",
    "\u200b",  # ZERO WIDTH SPACE
    "\u200d",  # ZERO WIDTH JOINER
    "\ufeff",  # BOM
    "\x00",
    "\x1b",  # ESC: printer commands
    "\x7f",
    "\x85",
    "\u2028",  # LINE SEPARATOR
    "\r",
]
TEXT_FIELDS = [
    ("dossier", ("applicant", "full_name"), False),
    ("dossier", ("applicant", "address"), False),
    ("dossier", ("form", "ho_ten_tre"), False),
    ("dossier", ("attachments", 0, "name"), False),
    ("support", ("message",), True),
    ("support", ("topic",), False),
    ("feedback", ("message",), True),
    ("feedback", ("contact",), False),
]


@FUZZ
@given(
    case=st.sampled_from(TEXT_FIELDS),
    bad=st.sampled_from([*REFUSED, "\n", "\t"])
    | st.characters(categories=["Cc", "Cf", "Zl", "Zp"]),
    where=st.integers(0, 4),
)
def test_control_and_format_characters_are_refused_on_both_sides(
    outbox: Outbox, case: tuple[str, tuple[Any, ...], bool], bad: str, where: int
) -> None:
    kind, path, multiline = case
    text = "Nguyễn Văn An"
    value = text[:where] + bad + text[where:]
    err = both_sides(outbox, kind, with_value(kind, path, value))
    if multiline and bad in "\n\t":
        assert err is None  # newline and tab belong in a message
    else:
        assert err is not None and err.first.path == path
        assert err.first.code == "control-char" and f"U+{ord(bad):04X}" in err.reason


@pytest.mark.parametrize(("kind", "path", "_"), TEXT_FIELDS)
def test_non_nfc_text_is_refused_and_central_stores_bytes_unchanged(
    outbox: Outbox, kind: str, path: tuple[Any, ...], _: bool
) -> None:
    decomposed = unicodedata.normalize("NFD", "Nguyễn Thị Hường")
    err = both_sides(outbox, kind, with_value(kind, path, decomposed))
    assert err is not None and err.first.code == "not-nfc" and err.first.path == path
    composed = unicodedata.normalize("NFC", decomposed)
    assert both_sides(outbox, kind, with_value(kind, path, composed)) is None


def test_text_refused_at_central_is_dead_lettered_not_rewritten(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "central.db")
    body = {"message": "Hết giấy \u202egnưhn", "contact": ""}
    item = central_says("support", body)
    assert isinstance(item, DeadLetter) and "U+202E" in item.reason
    store.ingest([item])
    assert store.count() == 0 and len(store.dead_letters()) == 1
    store.close()


# -- created -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "created",
    [
        "2026-11-26T09:15:02.123+07:00",  # what the kiosk writes
        "2026-11-26T09:15:02+07:00",
        "2026-11-26T09:15+07:00",
        "2026-11-26T02:15:02.123456Z",
        "2026-11-26T09:15:02.123-05:30",
        "9999-12-31T23:59:59.999-14:00",  # implausible but well-formed: kept
        "0001-01-01T00:00:00.000+14:00",
        "1970-01-01T00:00:00.000+00:00",  # a Pi without RTC after boot
    ],
)
def test_created_well_formed_is_kept_and_its_instant_exposed(created: str) -> None:
    rec = Record(
        kind="rating",
        kiosk=KIOSK,
        stream=STREAM,
        seq=1,
        id=new_ulid(),
        created=created,
        body={"level": "hai_long"},
    )
    assert isinstance(keyring.classify(TOPIC, rec.encode()), Accept)
    parsed = rec.created_at()
    assert parsed.tzinfo is not None and parsed == parse_datetime(created)
    unix = rec.created_unix()  # never overflows, even at year 1 or 9999 with an offset
    assert -62_200_000_000 < unix < 253_403_000_000


@pytest.mark.parametrize(
    "created",
    [
        "hello",
        "",
        "2026-11-26",
        "2026-11-26T09:15:02",  # no UTC offset
        "2026-11-26 09:15:02+07:00",
        "2026-13-45T09:15:02+07:00",
        "2026-11-26T25:15:02+07:00",
        "2026-11-26T09:15:02+15:00",
        "2026-11-26T09:15:02+07:60",
        "2026-11-26T09:15:02.1234567+07:00",
        "2026-11-26T09:15:02+07:00\n",
        "２０２６-11-26T09:15:02+07:00",
        "x" * 5000,
    ],
)
def test_created_that_is_not_a_datetime_is_refused(created: str) -> None:
    env = json.loads(
        Record(
            kind="rating",
            kiosk=KIOSK,
            stream=STREAM,
            seq=1,
            id=new_ulid(),
            created="2026-11-26T09:15:02+07:00",
            body={"level": "hai_long"},
        ).encode()
    )
    env["created"] = created
    item = keyring.classify(TOPIC, json.dumps(env).encode())
    assert isinstance(item, DeadLetter) and item.reason.startswith("bad-envelope: created:")
    assert item.reject and item.record_id == env["id"]  # the kiosk stops resending it


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=45))
def test_parse_datetime_never_raises(text: str) -> None:
    parsed = parse_datetime(text)
    assert parsed is None or parsed.tzinfo is not None


# -- acks --------------------------------------------------------------------------------


def _ack(rejected: list[dict[str, Any]], acked: list[Any] | None = None) -> bytes:
    return json.dumps(
        {"v": 1, "type": "ack", "acked": acked or [], "rejected": rejected}, ensure_ascii=False
    ).encode()


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_ack_reasons_are_bounded(delta: int) -> None:
    reason = "ố" * (MAX_REASON_CHARS + delta)
    payload = _ack([{"id": new_ulid(), "reason": reason}])
    if delta <= 0:
        assert decode_ack(payload).rejected[0].reason == reason
    else:
        with pytest.raises(EnvelopeError, match=r"rejected\.reason"):
            decode_ack(payload)


@pytest.mark.parametrize(
    "payload",
    [
        _ack([], acked=["not-a-ulid"]),
        _ack([], acked=[1]),
        _ack([{"id": "x", "reason": "r"}]),
        _ack([{"id": new_ulid(), "reason": 7}]),
        _ack([], acked=[new_ulid() for _ in range(MAX_ACK_IDS + 1)]),
        _ack([{"id": new_ulid(), "reason": "r", "deep": nested(MAX_JSON_DEPTH)}]),
    ],
)
def test_bad_acks_are_refused(payload: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode_ack(payload)


@settings(max_examples=100, deadline=None)
@given(
    reason=st.text(max_size=20)
    | st.builds(
        lambda t, n: (t or "ố") * n, st.text(max_size=3), st.integers(0, 2 * MAX_REASON_CHARS)
    ),
    n=st.integers(1, 3),
)
def test_central_never_sends_an_ack_the_kiosk_refuses(reason: str, n: int) -> None:
    """Ack.encode cuts reasons to what decode_ack accepts, whatever central wrote."""
    ack = Ack(
        acked=(new_ulid(),),
        rejected=tuple(Rejection(id=new_ulid(), reason=reason) for _ in range(n)),
    )
    decoded = decode_ack(ack.encode())
    assert len(decoded.rejected) == n
    assert all(len(r.reason) <= MAX_REASON_CHARS for r in decoded.rejected)
    if len(reason) <= MAX_REASON_CHARS:
        assert decoded.rejected[0].reason == reason


def test_dead_letter_reasons_are_bounded() -> None:
    env = json.loads(central_says("rating", {"level": "hai_long"}).record.encode())  # type: ignore[union-attr]
    env["kind"] = "k" * 10_000
    item = keyring.classify(TOPIC, json.dumps(env).encode())
    assert isinstance(item, DeadLetter) and len(item.reason) <= MAX_REASON_CHARS


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.floats()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=3)
    | st.just("s" * (MAX_JSON_STRING_CHARS + 1)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=3) | st.just("k" * 65), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=json_like, level=st.integers(1, 3))
def test_generic_bounds_fast_path_agrees_with_the_thorough_walk(value: Any, level: int) -> None:
    from sync.schemas import _walk, _within_bounds

    try:
        _walk(value, level)
        thorough = True
    except Exception:
        thorough = False
    assert _within_bounds(value, level) is thorough
    assert (check_json_bounds(value, level=level) is None) is thorough


def test_the_choice_constants_match_the_schemas() -> None:
    from typing import get_args, get_type_hints

    from sync.schemas import FEEDBACK_CATEGORIES, RATING_LEVELS, FeedbackBody, RatingBody

    assert get_args(get_type_hints(RatingBody)["level"]) == RATING_LEVELS
    assert get_args(get_type_hints(FeedbackBody)["category"]) == FEEDBACK_CATEGORIES


@FUZZ
@given(
    seq=st.integers(-2, 2) | st.integers(INT64_MAX - 2, INT64_MAX + 2) | st.just(2**64),
    kiosk_len=st.integers(1, 3) | st.integers(61, 65),
    created_pad=st.integers(0, 16),
)
def test_envelope_fields_at_and_past_their_bounds(
    seq: int, kiosk_len: int, created_pad: int
) -> None:
    kiosk = ("k" + "0" * 70)[:kiosk_len]
    created = "2026-11-26T09:15:02." + "1" * created_pad + "+07:00"  # 26 + pad characters
    env = {
        "v": 1,
        "type": "record",
        "kind": "rating",
        "kiosk": kiosk,
        "stream": STREAM,
        "seq": seq,
        "id": new_ulid(),
        "created": created,
        "body": {"level": "hai_long"},
    }
    item = keyring.classify(records_topic(kiosk), json.dumps(env).encode())
    ok = 1 <= seq <= INT64_MAX and 2 <= kiosk_len <= 63 and 1 <= created_pad <= 6
    assert isinstance(item, Accept) is ok, (item, seq, kiosk_len, created_pad)
    if not ok:
        assert isinstance(item, DeadLetter) and item.reason.startswith("bad-envelope: ")
