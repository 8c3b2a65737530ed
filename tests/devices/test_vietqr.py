"""VietQR payload builder and parser: test vectors, round-trip, arbitrary input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.vietqr import (
    VietQR,
    VietQRError,
    build_payload,
    crc16_ccitt_false,
    parse_payload,
    parse_tlv,
)


def _crc16_bitwise(data: bytes) -> int:
    """The CRC spelled out bit by bit from its definition: an independent reference."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        (b"123456789", 0x29B1),  # the catalogue check value of CRC-16/CCITT-FALSE
        (b"", 0xFFFF),
        (b"A", 0xB915),
        (bytes(range(256)), 0x3FBD),
    ],
)
def test_crc_vectors(data: bytes, crc: int) -> None:
    assert crc16_ccitt_false(data) == crc
    assert _crc16_bitwise(data) == crc


@given(st.binary(max_size=300))
def test_crc_matches_the_bitwise_definition(data: bytes) -> None:
    assert crc16_ccitt_false(data) == _crc16_bitwise(data)


def test_exact_static_payload() -> None:
    # Fixed vector: every character, the CRC included, written out by hand.
    assert build_payload("970415", "1010101010") == (
        "000201010211"
        "38540010A00000072701240006970415011010101010100208QRIBFTTA"
        "5303704"
        "5802VN"
        "630479FD"
    )


def test_exact_payload_with_amount_and_purpose() -> None:
    payload = build_payload("970436", "0011002345678", 8000, "HS 000.00.14.H56-261126-0001")
    body = (
        "000201"
        "010212"
        "3857"
        "0010A000000727"
        "0127"
        "0006970436"
        "01130011002345678"
        "0208QRIBFTTA"
        "5303704"
        "54048000"
        "5802VN"
        "6232"
        "0828HS 000.00.14.H56-261126-0001"
        "6304"
    )
    assert payload == body + "B221"
    assert _crc16_bitwise(body.encode()) == 0xB221


def test_static_payload_has_no_amount() -> None:
    payload = build_payload("970436", "123456")
    assert "010211" in payload
    fields = dict(parse_tlv(payload))
    assert "54" not in fields and "62" not in fields


def test_round_trip_example() -> None:
    qr = VietQR(bank_bin="970415", account="1010101010", amount_vnd=50_000, purpose="LE PHI")
    assert parse_payload(qr.payload()) == qr
    assert parse_payload(qr.payload().encode()) == qr


@given(
    bank_bin=st.from_regex(r"[0-9]{6}", fullmatch=True),
    account=st.from_regex(r"[0-9A-Za-z]{1,19}", fullmatch=True),
    amount=st.none() | st.integers(1, 9_999_999_999_999),
    purpose=st.none()
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=50),
)
def test_round_trip(bank_bin: str, account: str, amount: int | None, purpose: str | None) -> None:
    qr = VietQR(bank_bin=bank_bin, account=account, amount_vnd=amount, purpose=purpose)
    assert parse_payload(qr.payload()) == qr


def test_damaged_crc_is_refused_with_reason() -> None:
    payload = build_payload("970436", "123456", 2000)
    damaged = payload[:-1] + ("0" if payload[-1] != "0" else "1")
    with pytest.raises(VietQRError, match="CRC"):
        parse_payload(damaged)


def test_truncated_field_is_refused() -> None:
    with pytest.raises(VietQRError, match="truncated"):
        parse_tlv("0002010105")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bank_bin": "97043", "account": "1"}, "bank_bin"),
        ({"bank_bin": "970436", "account": "12-34"}, "account"),
        ({"bank_bin": "970436", "account": "1", "amount_vnd": 0}, "amount_vnd"),
        ({"bank_bin": "970436", "account": "1", "purpose": "Lệ phí"}, "purpose"),
    ],
)
def test_invalid_fields_are_named(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(VietQRError, match=field):
        VietQR(**kwargs)  # type: ignore[arg-type]


@given(st.binary(max_size=600))
def test_parser_on_arbitrary_bytes_raises_only_its_error(data: bytes) -> None:
    with contextlib.suppress(VietQRError):
        parse_payload(data)


@given(st.text(max_size=600))
def test_parser_on_arbitrary_text_raises_only_its_error(text: str) -> None:
    with contextlib.suppress(VietQRError):
        parse_payload(text)


@given(st.binary(max_size=200))
def test_parser_on_arbitrary_body_with_valid_crc(data: bytes) -> None:
    body = data.decode("latin-1") + "6304"
    text = body + f"{crc16_ccitt_false(body.encode('latin-1')):04X}"
    with contextlib.suppress(VietQRError):
        parse_payload(text)
