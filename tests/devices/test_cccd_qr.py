from __future__ import annotations

import contextlib
import unicodedata
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cccd_qr import (
    MAX_QR_LENGTH,
    QrFormatError,
    encode_cccd_qr,
    looks_like_cccd_qr,
    parse_cccd_qr,
)
from drivers.identity import Identity

from .strategies import qr_identities

GOOD = (
    "001099012345|123456789|Nguyễn Thị Ngọc Hường|01021990|Nữ|"
    "Số 1 Lý Thái Tổ, Phường Hoàn Kiếm, Hà Nội|15082021"
)


def test_parses_a_full_qr() -> None:
    identity = parse_cccd_qr(GOOD)
    assert identity.to_json_dict() == {
        "id_number": "001099012345",
        "old_id_number": "123456789",
        "full_name": "Nguyễn Thị Ngọc Hường",
        "date_of_birth": "1990-02-01",
        "sex": "F",
        "address": "Số 1 Lý Thái Tổ, Phường Hoàn Kiếm, Hà Nội",
        "issue_date": "2021-08-15",
        "expiry_date": None,
        "document_number": None,
        "nationality": None,
        "source": "qr",
    }


@pytest.mark.parametrize(
    "text",
    [
        GOOD + "   ",
        GOOD + "\r",
        GOOD + "\r\n",
        GOOD + "\n",
        GOOD + "|extra field from a newer card",
        GOOD + "|a|b|c\r",
        GOOD.replace("|Nữ|", "| Nữ |"),
        unicodedata.normalize("NFD", GOOD),
    ],
)
def test_tolerates_what_real_cards_send(text: str) -> None:
    assert parse_cccd_qr(text) == parse_cccd_qr(GOOD)


def test_empty_old_id_and_male() -> None:
    identity = parse_cccd_qr("079203000111||Đặng Quốc Việt|31121999|Nam|Huế|01012022")
    assert identity.old_id_number is None
    assert identity.sex == "M"
    assert identity.date_of_birth == date(1999, 12, 31)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"^qr: expected at least 7 .* got 1"),
        ("001099012345|123456789|Name|01021990|Nữ|Addr", r"^qr: .* got 6"),
        (GOOD.replace("001099012345", "00109901234"), r"^id_number: expected 12 digits"),
        (GOOD.replace("001099012345", "00109901234X"), r"^id_number: expected 12 digits"),
        (GOOD.replace("001099012345", "００１０９９０１２３４５"), r"^id_number"),
        (GOOD.replace("123456789", "12345678"), r"^old_id_number: expected 9 digits or empty"),
        (GOOD.replace("01021990", "31021990"), r"^date_of_birth: '31021990' is not a calendar"),
        (GOOD.replace("01021990", "1990-02-01"), r"^date_of_birth: expected 8 digits DDMMYYYY"),
        (GOOD.replace("15082021", "15132021"), r"^issue_date: '15132021' is not a calendar"),
        (GOOD.replace("15082021", ""), r"^issue_date: expected 8 digits"),
        (GOOD.replace("Nữ", "Female"), r"^sex: expected 'Nam' or 'Nữ'"),
        (GOOD.replace("Nguyễn Thị Ngọc Hường", ""), r"^full_name: must not be empty"),
        (GOOD.replace("Nguyễn", "Ng\x1buyễn"), r"^full_name: contains a control character"),
        (GOOD + "|" + "x" * MAX_QR_LENGTH, r"^qr: \d+ characters exceeds the limit of 1024"),
    ],
)
def test_rejects_malformed_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(QrFormatError, match=message):
        parse_cccd_qr(text)


def test_looks_like_cccd_qr() -> None:
    assert looks_like_cccd_qr(GOOD)
    assert looks_like_cccd_qr("001099012345|garbage")
    assert not looks_like_cccd_qr("APS-TRACK-000.00.14.H56-200203-0118")
    assert not looks_like_cccd_qr("")


def test_encoder_refuses_what_a_qr_cannot_carry() -> None:
    identity = parse_cccd_qr(GOOD)
    with pytest.raises(QrFormatError, match=r"^issue_date"):
        encode_cccd_qr(Identity(**{**identity.__dict__, "issue_date": None}))
    with pytest.raises(QrFormatError, match=r"^sex"):
        encode_cccd_qr(Identity(**{**identity.__dict__, "sex": "X"}))
    with pytest.raises(QrFormatError, match="contains '\\|'"):
        encode_cccd_qr(Identity(**{**identity.__dict__, "address": "a|b"}))


@given(qr_identities())
def test_round_trip(identity: Identity) -> None:
    assert parse_cccd_qr(encode_cccd_qr(identity)) == identity


@given(qr_identities(), st.sampled_from(["", " ", "\r", "\r\n", "|x", "|x|y  \r"]))
def test_round_trip_with_real_world_suffixes(identity: Identity, suffix: str) -> None:
    assert parse_cccd_qr(encode_cccd_qr(identity) + suffix) == identity


@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_its_own_error(text: str) -> None:
    with contextlib.suppress(QrFormatError):
        parse_cccd_qr(text)


@given(st.lists(st.text(max_size=20), min_size=7, max_size=9).map("|".join))
def test_arbitrary_fields_raise_only_its_own_error(text: str) -> None:
    with contextlib.suppress(QrFormatError):
        parse_cccd_qr(text)
