"""ESC/POS real-time status replies: exact bytes, state precedence, arbitrary input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.printer_status import (
    PrinterState,
    StatusQuery,
    StatusReplyError,
    derive_state,
    parse_status_reply,
    status_request,
)


def test_requests_are_dle_eot_n() -> None:
    assert status_request(StatusQuery.PRINTER) == b"\x10\x04\x01"
    assert status_request(StatusQuery.OFFLINE_CAUSE) == b"\x10\x04\x02"
    assert status_request(StatusQuery.ERROR_CAUSE) == b"\x10\x04\x03"
    assert status_request(StatusQuery.PAPER) == b"\x10\x04\x04"


@pytest.mark.parametrize(
    ("query", "reply", "flags"),
    [
        (StatusQuery.PRINTER, b"\x12", {}),
        (StatusQuery.PRINTER, b"\x1a", {"offline": True}),
        (StatusQuery.PRINTER, b"\x16", {}),  # drawer pin high: not our business
        (StatusQuery.OFFLINE_CAUSE, b"\x12", {}),
        (StatusQuery.OFFLINE_CAUSE, b"\x56", {"cover_open": True, "error": True}),
        (StatusQuery.OFFLINE_CAUSE, b"\x72", {"paper_end_stop": True, "error": True}),
        (StatusQuery.OFFLINE_CAUSE, b"\x1a", {"feed_button": True}),
        (StatusQuery.ERROR_CAUSE, b"\x1a", {"autocutter_error": True}),
        (
            StatusQuery.ERROR_CAUSE,
            b"\x72",
            {"unrecoverable_error": True, "recoverable_error": True},
        ),
        (StatusQuery.PAPER, b"\x12", {}),
        (StatusQuery.PAPER, b"\x1e", {"paper_near_end": True}),
        (StatusQuery.PAPER, b"\x7e", {"paper_near_end": True, "paper_out": True}),
        (StatusQuery.PAPER, b"\x72", {"paper_out": True}),
    ],
)
def test_reply_bits(query: StatusQuery, reply: bytes, flags: dict[str, bool]) -> None:
    parsed = parse_status_reply(query, reply)
    assert parsed.query is query and parsed.raw == reply[0]
    for name in (
        "offline", "cover_open", "feed_button", "paper_end_stop", "error", "autocutter_error",
        "unrecoverable_error", "recoverable_error", "paper_near_end", "paper_out",
    ):  # fmt: skip
        assert getattr(parsed, name) is flags.get(name, False), name


def test_silence_is_an_error_not_ok() -> None:
    with pytest.raises(StatusReplyError, match="did not answer") as info:
        parse_status_reply(StatusQuery.PAPER, b"")
    assert info.value.silent


@pytest.mark.parametrize("reply", [b"\x00", b"\xff", b"\x13", b"\x92", b"\x12\x12"])
def test_garbage_is_refused(reply: bytes) -> None:
    with pytest.raises(StatusReplyError) as info:
        parse_status_reply(StatusQuery.PRINTER, reply)
    assert not info.value.silent


def _state(printer: bytes, cause: bytes, paper: bytes) -> PrinterState:
    return derive_state(
        parse_status_reply(StatusQuery.PRINTER, printer),
        parse_status_reply(StatusQuery.OFFLINE_CAUSE, cause),
        parse_status_reply(StatusQuery.PAPER, paper),
    )[0]


def test_state_precedence() -> None:
    assert _state(b"\x12", b"\x12", b"\x12") is PrinterState.OK
    assert _state(b"\x12", b"\x12", b"\x1e") is PrinterState.PAPER_NEAR_END
    assert _state(b"\x1a", b"\x72", b"\x7e") is PrinterState.PAPER_OUT
    assert _state(b"\x1a", b"\x76", b"\x7e") is PrinterState.COVER_OPEN
    assert _state(b"\x1a", b"\x52", b"\x12") is PrinterState.OFFLINE
    assert derive_state(
        parse_status_reply(StatusQuery.PRINTER, b"\x12"),
        None,
        parse_status_reply(StatusQuery.PAPER, b"\x12"),
    ) == (PrinterState.OK, None)
    assert PrinterState.PAPER_NEAR_END.can_print and not PrinterState.PAPER_OUT.can_print


@given(st.sampled_from(list(StatusQuery)), st.binary(max_size=20))
def test_parser_on_arbitrary_bytes_raises_only_its_error(query: StatusQuery, data: bytes) -> None:
    try:
        reply = parse_status_reply(query, data)
    except StatusReplyError:
        return
    assert len(data) == 1 and data[0] & 0x93 == 0x12 and reply.raw == data[0]


@given(st.sampled_from(list(StatusQuery)), st.lists(st.integers(-300, 300), max_size=4))
def test_parser_on_arbitrary_int_sequences(query: StatusQuery, data: list[int]) -> None:
    with contextlib.suppress(StatusReplyError):
        parse_status_reply(query, data)
