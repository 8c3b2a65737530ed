"""The typed downlink's parsers and router (sync/downlink.py), under hypothesis."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.downlink import (
    MAX_ITEM_BYTES,
    MAX_PAGE_ITEMS,
    MAX_STATE_BYTES,
    DownlinkError,
    DownlinkRouter,
    Item,
    ItemValidators,
    Nudge,
    RpcReply,
    RpcRequest,
    StateReply,
    StateRequest,
    check_item_size,
    decode_nudge,
    decode_rpc_reply,
    decode_rpc_request,
    decode_state_reply,
    decode_state_request,
    down_topic,
)
from sync.ids import new_ulid

K = "k-msg-01"
AT = "2026-12-01T09:00:00+07:00"
ULIDS = st.builds(new_ulid)
CURSORS = st.integers(0, 2**63 - 1)
KIOSKS = st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,20}\Z")
AGENCIES = st.from_regex(r"\A[0-9A-Za-z.]{1,40}\Z")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
DECODERS = [
    decode_state_request,
    decode_state_reply,
    decode_nudge,
    decode_rpc_request,
    decode_rpc_reply,
]


@given(kiosk=KIOSKS, request=ULIDS, cursor=CURSORS, office=AGENCIES, limit=st.integers(1, 100))
def test_a_state_request_round_trips(
    kiosk: str, request: str, cursor: int, office: str, limit: int
) -> None:
    msg = StateRequest(kiosk=kiosk, request=request, cursor=cursor, office=office, limit=limit)
    assert decode_state_request(msg.encode()) == msg


@given(
    request=ULIDS,
    cursors=st.lists(st.integers(1, 2**62 - 1), max_size=MAX_PAGE_ITEMS, unique=True),
    more=st.booleans(),
    extra=st.integers(0, 2**62),
)
def test_a_state_reply_round_trips(
    request: str, cursors: list[int], more: bool, extra: int
) -> None:
    items = tuple(
        Item(cursor=c, kind="news", key=f"n{c}", body={"x": [c]}) for c in sorted(cursors)
    )
    next_cursor = (items[-1].cursor if items else 0) + extra
    msg = StateReply(request=request, items=items, next_cursor=next_cursor, more=more, ts=AT)
    assert decode_state_reply(msg.encode()) == msg


@given(request=ULIDS, ok=st.booleans(), text=st.text(max_size=600))
def test_rpc_messages_round_trip(request: str, ok: bool, text: str) -> None:
    call = RpcRequest(kiosk=K, request=request, method="sign.start", params={"h": text})
    assert decode_rpc_request(call.encode()) == call
    reply = RpcReply(
        request=request,
        ok=ok,
        result={"t": text} if ok else None,
        error_code=None if ok else "rejected",
        error_message=None if ok else "Từ chối",
    )
    got = decode_rpc_reply(reply.encode())
    assert got.ok == ok and got.request == request
    assert (got.result == {"t": text}) if ok else (got.error_code == "rejected")


@given(payload=st.binary(max_size=300))
def test_any_bytes_decode_or_raise_a_downlink_error(payload: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(DownlinkError):
            decode(payload)


@given(
    kind=st.sampled_from(["state-request", "state", "nudge", "rpc", "rpc-reply"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "kiosk",
                "request",
                "cursor",
                "office",
                "limit",
                "items",
                "next_cursor",
                "more",
                "method",
                "params",
                "ok",
                "result",
                "error",
                "ts",
            ]
        ),
        JSON,
    ),
)
def test_any_json_message_decodes_or_raises_a_downlink_error(
    kind: str, fields: dict[str, Any]
) -> None:
    try:
        payload = json.dumps({"v": 1, "type": kind, **fields}).encode()
    except ValueError:
        return
    for decode in DECODERS:
        with contextlib.suppress(DownlinkError):
            decode(payload)


def _reply(items: list[dict[str, Any]], next_cursor: int) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "type": "state",
            "request": new_ulid(),
            "items": items,
            "next_cursor": next_cursor,
            "more": False,
        }
    ).encode()


def test_state_reply_limits_name_the_field() -> None:
    item = {"cursor": 5, "kind": "news", "key": "n1", "body": {}}
    with pytest.raises(DownlinkError, match="cursors must strictly increase"):
        decode_state_reply(_reply([item, {**item, "cursor": 4}], 9))
    with pytest.raises(DownlinkError, match="next_cursor"):
        decode_state_reply(_reply([item], 4))
    with pytest.raises(DownlinkError, match="items"):
        decode_state_reply(_reply([{**item, "cursor": i} for i in range(1, 102)], 200))
    with pytest.raises(DownlinkError, match="oversize"):
        decode_state_reply(_reply([{**item, "body": {"x": "a" * MAX_STATE_BYTES}}], 5))
    with pytest.raises(DownlinkError, match="cursor"):
        decode_state_reply(_reply([{**item, "cursor": 0}], 5))
    with pytest.raises(DownlinkError, match="unknown-version"):
        decode_nudge(b'{"v":2,"type":"nudge","cursor":1}')
    with pytest.raises(DownlinkError, match="type"):
        decode_nudge(b'{"v":1,"type":"state","cursor":1}')
    with pytest.raises(DownlinkError, match="result"):
        decode_rpc_reply(
            json.dumps({"v": 1, "type": "rpc-reply", "request": new_ulid(), "ok": True}).encode()
        )
    with pytest.raises(DownlinkError, match="error"):
        decode_rpc_reply(
            json.dumps({"v": 1, "type": "rpc-reply", "request": new_ulid(), "ok": False}).encode()
        )
    with pytest.raises(DownlinkError, match="method"):
        decode_rpc_request(
            RpcRequest(kiosk=K, request=new_ulid(), method="Sign", params={}).encode()
        )


def test_a_deep_catalogue_body_gets_its_own_eight_levels() -> None:
    deep: Any = 1
    for _ in range(7):
        deep = [deep]
    reply = StateReply(
        request=new_ulid(),
        items=(Item(cursor=1, kind="catalogue", key="catalogue", body={"d": deep}),),
        next_cursor=1,
        more=False,
    )
    assert decode_state_reply(reply.encode()).items[0].body == {"d": deep}


# -- item bodies ----------------------------------------------------------------------------
def _status(**over: Any) -> dict[str, Any]:
    return {
        "code": "000.00.14.H56-261201-1001",
        "state": "received",
        "paid": False,
        "changed_at": AT,
        **over,
    }


def _answer(**over: Any) -> dict[str, Any]:
    return {
        "lookup_code": "HT-261201-1001",
        "category": "question",
        "answer": "Có.\nMang CCCD.",
        "answered_at": AT,
        "answered_by": "Nguyễn Thị Hồng",
        **over,
    }


VALID = {
    "dossier-status": (
        "000.00.14.H56-261201-1001",
        _status(paid=True, paid_amount_vnd=10000, paid_at=AT, note="Đã có kết quả"),
    ),
    "answer": ("HT-261201-1001", _answer()),
    "support-reply": (
        "HO-261201-1001",
        {
            "lookup_code": "HO-261201-1001",
            "status": "assigned",
            "staff_name": "Chị Lan",
            "channel": "hotline",
            "hotline": "0277 3851 234",
            "message": "Đang tới.",
            "at": AT,
        },
    ),
    "faq": (
        "faq-1",
        {
            "id": "faq-1",
            "question": "Làm khai sinh cần gì?",
            "answer": "Tờ khai.",
            "tags": ["hộ tịch"],
            "procedure": "1.001193",
            "published_at": AT,
            "withdrawn": False,
        },
    ),
    "news": (
        "n-1",
        {
            "id": "n-1",
            "title": "Nghỉ lễ",
            "body": "Nghỉ ngày 2/9.",
            "published_at": AT,
            "withdrawn": True,
        },
    ),
}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_kind_accepts_its_body(kind: str) -> None:
    key, body = VALID[kind]
    ItemValidators().check(kind, key, body)


@pytest.mark.parametrize(
    ("kind", "key", "body", "says"),
    [
        ("dossier-status", "000.00.14.H56-261201-1001", _status(state="lost"), "body.state"),
        ("dossier-status", "000.00.14.H56-261201-1002", _status(), "must equal the item's key"),
        ("dossier-status", "000.00.14.H56-261201-1001", _status(paid="yes"), "body.paid"),
        (
            "dossier-status",
            "000.00.14.H56-261201-1001",
            _status(paid_amount_vnd=-1),
            "body.paid_amount_vnd",
        ),
        ("answer", "HT-261201-1001", _answer(answer="a\x07b"), "U+0007"),
        ("answer", "HT-261201-1001", _answer(answer="Tra\u0300 lời"), "NFC"),
        ("answer", "HT-261201-1001", _answer(answer="x" * 8001), "longer than 8000"),
        ("answer", "HT-261201-1001", _answer(answered_at="hôm qua"), "body.answered_at"),
        ("answer", "HT-261201-1001", _answer(category="complaint"), "body.category"),
        ("news", "n-1", {**VALID["news"][1], "title": "a\nb"}, "U+000A"),
        ("faq", "faq-1", {**VALID["faq"][1], "tags": ["t"] * 33}, "more than 32"),
        ("catalogue", "catalogue", {"version": 1}, "no validator registered"),
        ("mystery", "x", {}, "no validator registered"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(
    kind: str, key: str, body: dict[str, Any], says: str
) -> None:
    with pytest.raises(DownlinkError, match=re.escape(says)):
        ItemValidators().check(kind, key, body)


@given(kind=st.sampled_from([*VALID, "catalogue"]), body=JSON)
def test_any_body_is_accepted_or_refused_with_a_downlink_error(kind: str, body: Any) -> None:
    validators = ItemValidators()
    validators.register("catalogue", lambda b: None if "version" in b else _fail())
    with contextlib.suppress(DownlinkError):
        validators.check(kind, "k", body)


def _fail() -> None:
    raise ValueError("body.version: missing")


def test_an_item_too_big_to_send_is_refused_before_publishing() -> None:
    assert check_item_size("news", "n", {"body": "x" * 1000}) < 2000
    with pytest.raises(DownlinkError, match=str(MAX_ITEM_BYTES)):
        check_item_size("catalogue", "catalogue", {"p": "x" * MAX_ITEM_BYTES})


# -- the router -----------------------------------------------------------------------------------
@given(
    topics=st.lists(
        st.sampled_from(
            [
                down_topic(K, "state"),
                down_topic(K, "nudge"),
                down_topic("k-other-1", "nudge"),
                "aps/v1/fleet/down/central/c1",
                "aps/v2/x",
                "",
                "#",
                down_topic(K, "boom"),
            ]
        )
        | st.text(max_size=30),
        max_size=20,
    ),
    payloads=st.lists(st.binary(max_size=60), min_size=20, max_size=20),
)
def test_the_router_never_raises_and_counts_everything(
    topics: list[str], payloads: list[bytes]
) -> None:
    router = DownlinkRouter(K)
    seen: list[int] = []
    router.on("state", lambda t, p: decode_state_reply(p) and None)
    router.on("nudge", lambda t, p: seen.append(decode_nudge(p).cursor))
    router.on("boom", lambda t, p: 1 // 0 and None)
    router.on_prefix("aps/v1/fleet/down/central/", lambda t, p: None)
    handled = 0
    for mqtt_topic, payload in zip(topics, payloads, strict=False):
        handled += router.dispatch(mqtt_topic, payload)
    c = router.counters
    total = handled + sum(c.invalid.values()) + c.unknown_topics + c.handler_errors
    assert total == len(topics)
    assert sum(c.routed.values()) == handled


def test_the_router_takes_a_valid_nudge_and_drops_another_kiosks() -> None:
    router = DownlinkRouter(K)
    seen: list[int] = []
    router.on("nudge", lambda t, p: seen.append(decode_nudge(p).cursor))
    assert router.dispatch(down_topic(K, "nudge"), Nudge(cursor=7).encode())
    assert not router.dispatch(down_topic("k-other-1", "nudge"), Nudge(cursor=8).encode())
    assert seen == [7] and router.counters.unknown_topics == 1
