from __future__ import annotations

import contextlib
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.mrz import (
    MrzCheckDigitError,
    MrzFields,
    MrzFormatError,
    check_digit,
    encode_td1,
    parse_td1,
)

TODAY = date(2026, 11, 27)

# ICAO Doc 9303 Part 5, TD1 specimen.
SPECIMEN = (
    "I<UTOD231458907<<<<<<<<<<<<<<<",
    "7408122F1204159UTO<<<<<<<<<<<6",
    "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
)

VN_FIELDS = MrzFields(
    document_code="ID",
    issuing_state="VNM",
    document_number="099012345",
    optional_data_1="001099012345",
    birth_yymmdd="900201",
    sex="F",
    expiry_yymmdd="300201",
    nationality="VNM",
    optional_data_2="",
    primary_identifier="NGUYEN",
    secondary_identifier="THI NGOC HUONG",
)


def replace_at(line: str, index: int, char: str) -> str:
    return line[:index] + char + line[index + 1 :]


@pytest.mark.parametrize(
    ("text", "digit"),
    [("D23145890", "7"), ("740812", "2"), ("120415", "9"), ("<<<", "0"), ("AB2134<<<", "5")],
)
def test_check_digit_table(text: str, digit: str) -> None:
    assert check_digit(text) == digit


def test_icao_specimen() -> None:
    identity = parse_td1(*SPECIMEN, today=TODAY)
    assert identity.to_json_dict() == {
        "id_number": "D23145890",
        "old_id_number": None,
        "full_name": "ERIKSSON ANNA MARIA",
        "date_of_birth": "1974-08-12",
        "sex": "F",
        "address": None,
        "issue_date": None,
        "expiry_date": "2012-04-15",
        "document_number": "D23145890",
        "nationality": "UTO",
        "source": "mrz",
    }


def test_encoder_reproduces_the_specimen() -> None:
    fields = MrzFields(
        document_code="I",
        issuing_state="UTO",
        document_number="D23145890",
        optional_data_1="",
        birth_yymmdd="740812",
        sex="F",
        expiry_yymmdd="120415",
        nationality="UTO",
        optional_data_2="",
        primary_identifier="ERIKSSON",
        secondary_identifier="ANNA MARIA",
    )
    assert encode_td1(fields) == SPECIMEN


def test_vietnamese_card_shape() -> None:
    lines = encode_td1(VN_FIELDS)
    assert lines[0].startswith("IDVNM099012345")
    assert lines[0][15:27] == "001099012345"
    identity = parse_td1(*lines, today=TODAY)
    assert identity.id_number == "001099012345"
    assert identity.document_number == "099012345"
    assert identity.full_name == "NGUYEN THI NGOC HUONG"
    assert identity.date_of_birth == date(1990, 2, 1)
    assert identity.expiry_date == date(2030, 2, 1)
    assert identity.nationality == "VNM"


def test_birth_century_follows_today() -> None:
    fields = MrzFields(**{**VN_FIELDS.__dict__, "birth_yymmdd": "200101"})
    identity = parse_td1(*encode_td1(fields), today=TODAY)
    assert identity.date_of_birth == date(2020, 1, 1)
    fields = MrzFields(**{**VN_FIELDS.__dict__, "birth_yymmdd": "261128"})
    assert parse_td1(*encode_td1(fields), today=TODAY).date_of_birth == date(1926, 11, 28)


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_td1(*(f"  {line}\r\n" for line in SPECIMEN), today=TODAY).id_number == "D23145890"


@pytest.mark.parametrize(
    ("line", "index", "field"),
    [
        (0, 14, "document_number"),
        (0, 7, "document_number"),
        (1, 6, "date_of_birth"),
        (1, 3, "date_of_birth"),
        (1, 14, "expiry_date"),
        (1, 10, "expiry_date"),
        (1, 29, "composite"),
        (0, 20, "composite"),
        (1, 20, "composite"),
    ],
)
def test_each_check_digit_names_its_field(line: int, index: int, field: str) -> None:
    lines = list(SPECIMEN)
    original = lines[line][index]
    lines[line] = replace_at(lines[line], index, "1" if original != "1" else "2")
    with pytest.raises(MrzCheckDigitError, match=f"^{field}: check digit") as info:
        parse_td1(*lines, today=TODAY)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((SPECIMEN[0][:29], SPECIMEN[1], SPECIMEN[2]), r"^line 1: expected 30 characters"),
        ((SPECIMEN[0], SPECIMEN[1] + "<", SPECIMEN[2]), r"^line 2: expected 30 characters"),
        ((SPECIMEN[0], SPECIMEN[1], SPECIMEN[2].lower()), r"^line 3: only 0-9, A-Z"),
        (("P" + SPECIMEN[0][1:], SPECIMEN[1], SPECIMEN[2]), r"^document_code"),
        ((SPECIMEN[0], SPECIMEN[1], "<" * 30), r"^name: line 3 holds no name"),
    ],
)
def test_rejects_malformed_lines(lines: tuple[str, str, str], message: str) -> None:
    with pytest.raises(MrzFormatError, match=message):
        parse_td1(*lines, today=TODAY)


def test_impossible_date_with_valid_check_digit_names_the_field() -> None:
    fields = MrzFields(**{**VN_FIELDS.__dict__, "birth_yymmdd": "900231"})
    with pytest.raises(MrzFormatError, match=r"^date_of_birth: '900231' is not a calendar"):
        parse_td1(*encode_td1(fields), today=TODAY)


def test_encoder_rejects_fields_that_do_not_fit() -> None:
    with pytest.raises(MrzFormatError, match=r"^document_number: 10 characters"):
        encode_td1(MrzFields(**{**VN_FIELDS.__dict__, "document_number": "0123456789"}))
    with pytest.raises(MrzFormatError, match=r"^line 3: only"):
        encode_td1(MrzFields(**{**VN_FIELDS.__dict__, "primary_identifier": "NGUYỄN"}))


ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
name_words = st.lists(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=6), max_size=3)


@st.composite
def td1_fields(draw: st.DrawFn) -> tuple[MrzFields, date, date]:
    birth = draw(st.dates(min_value=date(1927, 1, 1), max_value=TODAY))
    expiry = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
    primary = draw(name_words.filter(bool))
    secondary = draw(name_words)
    if len("<".join(primary)) + 2 + len("<".join(secondary)) > 30:
        secondary = []
    if len("<".join(primary)) > 28:
        primary = primary[:1]
    vietnamese = draw(st.booleans())
    if vietnamese:
        id12 = draw(st.text("0123456789", min_size=12, max_size=12))
        document_number, optional_1 = id12[3:], id12
    else:
        document_number = draw(st.text(ALNUM, min_size=1, max_size=9))
        optional_1 = draw(st.text(ALNUM + "<", max_size=11))
    fields = MrzFields(
        document_code=draw(st.sampled_from(["I", "ID", "IC", "A", "C"])),
        issuing_state=draw(st.sampled_from(["VNM", "UTO", "D"])),
        document_number=document_number,
        optional_data_1=optional_1,
        birth_yymmdd=birth.strftime("%y%m%d"),
        sex=draw(st.sampled_from(["M", "F", "<"])),
        expiry_yymmdd=expiry.strftime("%y%m%d"),
        nationality=draw(st.sampled_from(["VNM", "UTO", "D"])),
        optional_data_2=draw(st.text(ALNUM, max_size=11)),
        primary_identifier=" ".join(primary),
        secondary_identifier=" ".join(secondary),
    )
    return fields, birth, expiry


@given(td1_fields())
def test_round_trip(case: tuple[MrzFields, date, date]) -> None:
    fields, birth, expiry = case
    identity = parse_td1(*encode_td1(fields), today=TODAY)
    assert identity.date_of_birth == birth
    assert identity.expiry_date == expiry
    assert identity.document_number == fields.document_number
    assert {"M": "M", "F": "F", "<": "X"}[fields.sex] == identity.sex
    expected_name = " ".join(
        part for part in (fields.primary_identifier, fields.secondary_identifier) if part
    )
    assert identity.full_name == expected_name
    optional = fields.optional_data_1
    if len(optional) >= 12 and optional[:12].isdigit():
        assert identity.id_number == optional[:12]
    else:
        assert identity.id_number == fields.document_number


@given(td1_fields(), st.integers(0, 2), st.integers(0, 29), st.sampled_from(ALNUM + "<"))
def test_any_single_character_change_is_caught_or_harmless(
    case: tuple[MrzFields, date, date], line: int, index: int, char: str
) -> None:
    lines = list(encode_td1(case[0]))
    lines[line] = replace_at(lines[line], index, char)
    with contextlib.suppress(MrzFormatError):
        parse_td1(*lines, today=TODAY)


mrz_like = st.text(ALNUM + "<", min_size=30, max_size=30)


@given(st.text(max_size=40), st.text(max_size=40), st.text(max_size=40))
def test_arbitrary_text_raises_only_its_own_error(a: str, b: str, c: str) -> None:
    with contextlib.suppress(MrzFormatError):
        parse_td1(a, b, c, today=TODAY)


@given(mrz_like, mrz_like, mrz_like)
def test_arbitrary_mrz_alphabet_raises_only_its_own_error(a: str, b: str, c: str) -> None:
    with contextlib.suppress(MrzFormatError):
        parse_td1("I" + a[1:], b, c, today=TODAY)
