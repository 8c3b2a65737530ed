"""ICAO 9303 TD1 machine-readable zone (three lines of 30 characters).

Sans-I/O: three strings in, :class:`~drivers.identity.Identity` out.

Theory of operation
-------------------
Layout (0-based columns)::

    line 1: 0-1 document code, 2-4 issuing state, 5-13 document number,
            14 check digit, 15-29 optional data 1
    line 2: 0-5 birth YYMMDD, 6 check digit, 7 sex (M/F/<), 8-13 expiry YYMMDD,
            14 check digit, 15-17 nationality, 18-28 optional data 2,
            29 composite check digit
    line 3: primary identifier << secondary identifier, '<' as filler/space

A check digit is the sum of character values times the repeating weights 7, 3,
1, modulo 10, where 0-9 are themselves, A-Z are 10..35 and ``<`` is 0. The
composite covers line 1 columns 5-29, line 2 columns 0-6, 8-14 and 18-28.

Vietnamese CCCD cards put ``IDVNM``, the last 9 digits of the 12-digit ID as
document number, its check digit, then the full 12-digit ID at the start of
optional data 1. When optional data 1 starts with 12 digits, those are the
``id_number``; otherwise (foreign documents) the document number is.

Years have two digits: a birth year is placed in the latest century that does
not put the birth after ``today``; an expiry year is always 20YY.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from drivers import DeviceError
from drivers.identity import Identity, IdentityError, Sex

__all__ = [
    "LINE_LENGTH",
    "MrzCheckDigitError",
    "MrzFields",
    "MrzFormatError",
    "check_digit",
    "encode_td1",
    "parse_td1",
]

LINE_LENGTH = 30
_ALLOWED = re.compile(r"[0-9A-Z<]{30}")
_WEIGHTS = (7, 3, 1)


class MrzFormatError(DeviceError, ValueError):
    """The MRZ is malformed; the message names the line or field."""


class MrzCheckDigitError(MrzFormatError):
    """A check digit does not match its field; ``field`` names which one."""

    def __init__(self, field: str, expected: str, found: str) -> None:
        super().__init__(
            f"{field}: check digit is {found!r} but the field computes to {expected!r}; "
            "the MRZ was misread or altered, scan it again"
        )
        self.field = field
        self.expected = expected
        self.found = found


def _char_value(ch: str) -> int:
    if ch == "<":
        return 0
    if "0" <= ch <= "9":
        return ord(ch) - ord("0")
    if "A" <= ch <= "Z":
        return ord(ch) - ord("A") + 10
    raise MrzFormatError(f"check digit: character {ch!r} is not one of 0-9, A-Z, '<'")


def check_digit(text: str) -> str:
    """ICAO 9303 check digit of ``text`` (weights 7, 3, 1), as one character."""
    total = sum(_char_value(ch) * _WEIGHTS[i % 3] for i, ch in enumerate(text))
    return str(total % 10)


@dataclass(frozen=True, kw_only=True)
class MrzFields:
    """Raw TD1 fields, fillers removed; input of :func:`encode_td1`."""

    document_code: str
    issuing_state: str
    document_number: str
    optional_data_1: str
    birth_yymmdd: str
    sex: str
    expiry_yymmdd: str
    nationality: str
    optional_data_2: str
    primary_identifier: str
    secondary_identifier: str


def _field(value: str, width: int, name: str) -> str:
    if len(value) > width:
        raise MrzFormatError(f"{name}: {len(value)} characters exceeds the width of {width}")
    return value.ljust(width, "<")


def _name_part(text: str) -> str:
    return "<".join(text.split())


def encode_td1(fields: MrzFields) -> tuple[str, str, str]:
    """Build the three TD1 lines with correct check digits from ``fields``.

    Names are upper-case Latin letters separated by spaces; spaces become ``<``.
    Raises :class:`MrzFormatError` when a field does not fit.
    """
    doc_number = _field(fields.document_number, 9, "document_number")
    head = _field(fields.document_code, 2, "document_code") + _field(
        fields.issuing_state, 3, "issuing_state"
    )
    tail1 = (
        doc_number + check_digit(doc_number) + _field(fields.optional_data_1, 15, "optional_data_1")
    )
    line1 = head + tail1
    birth = _field(fields.birth_yymmdd, 6, "birth_date")
    expiry = _field(fields.expiry_yymmdd, 6, "expiry_date")
    part_birth = birth + check_digit(birth)
    part_expiry = expiry + check_digit(expiry)
    opt2 = _field(fields.optional_data_2, 11, "optional_data_2")
    composite = check_digit(tail1 + part_birth + part_expiry + opt2)
    line2 = (
        part_birth
        + _field(fields.sex, 1, "sex")
        + part_expiry
        + _field(fields.nationality, 3, "nationality")
        + opt2
        + composite
    )
    name = _name_part(fields.primary_identifier) + "<<" + _name_part(fields.secondary_identifier)
    line3 = _field(name, 30, "name")
    for number, line in enumerate((line1, line2, line3), start=1):
        if not _ALLOWED.fullmatch(line):
            raise MrzFormatError(f"line {number}: only 0-9, A-Z and '<' may appear in an MRZ")
    return line1, line2, line3


def _verify(field: str, data: str, digit: str) -> None:
    expected = check_digit(data)
    if digit != expected:
        raise MrzCheckDigitError(field, expected, digit)


def _yymmdd(text: str, field: str, century: int) -> date:
    if not (text.isascii() and text.isdigit()):
        raise MrzFormatError(f"{field}: expected 6 digits YYMMDD, got {text!r}")
    try:
        return date(century + int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        raise MrzFormatError(f"{field}: {text!r} is not a calendar date (YYMMDD)") from None


def _birth_date(text: str, today: date) -> date:
    candidate = _yymmdd(text, "date_of_birth", today.year // 100 * 100)
    if candidate > today:
        candidate = _yymmdd(text, "date_of_birth", today.year // 100 * 100 - 100)
    return candidate


def _strip(text: str) -> str:
    return text.rstrip("<").replace("<", " ").strip()


def parse_td1(line1: str, line2: str, line3: str, *, today: date | None = None) -> Identity:
    """Parse and verify a TD1 MRZ into an :class:`Identity` with ``source="mrz"``.

    Surrounding whitespace on each line is ignored. Every check digit (document
    number, birth date, expiry date, composite) must match; otherwise
    :class:`MrzCheckDigitError` names the field. ``today`` (default: the system
    date) resolves the birth century. Raises :class:`MrzFormatError` (a
    ``ValueError``) and nothing else.
    """
    today = today or date.today()
    lines = []
    for number, line in enumerate((line1, line2, line3), start=1):
        if not isinstance(line, str):
            raise MrzFormatError(f"line {number}: expected text, got {type(line).__name__}")
        line = line.strip()
        if len(line) != LINE_LENGTH:
            raise MrzFormatError(
                f"line {number}: expected {LINE_LENGTH} characters (TD1), got {len(line)}"
            )
        if not _ALLOWED.fullmatch(line):
            raise MrzFormatError(f"line {number}: only 0-9, A-Z and '<' may appear in an MRZ")
        lines.append(line)
    l1, l2, l3 = lines
    if l1[0] not in "IAC":
        raise MrzFormatError(
            f"document_code: TD1 identity cards start with I, A or C, got {l1[0]!r}"
        )
    _verify("document_number", l1[5:14], l1[14])
    _verify("date_of_birth", l2[0:6], l2[6])
    _verify("expiry_date", l2[8:14], l2[14])
    _verify("composite", l1[5:30] + l2[0:7] + l2[8:15] + l2[18:29], l2[29])

    document_number = _strip(l1[5:14])
    if not document_number:
        raise MrzFormatError("document_number: empty")
    optional_1 = _strip(l1[15:30])
    id_number = optional_1[:12] if optional_1[:12].isdigit() and len(optional_1) >= 12 else ""
    if not id_number:
        id_number = document_number
    sex_char = l2[7]
    sex: Sex = "M" if sex_char == "M" else "F" if sex_char == "F" else "X"
    nationality = _strip(l2[15:18])
    primary, _, secondary = l3.partition("<<")
    full_name = " ".join(part for part in (_strip(primary), _strip(secondary)) if part)
    if not full_name:
        raise MrzFormatError("name: line 3 holds no name")
    try:
        return Identity(
            id_number=id_number,
            old_id_number=None,
            full_name=full_name,
            date_of_birth=_birth_date(l2[0:6], today),
            sex=sex,
            address=None,
            issue_date=None,
            expiry_date=_yymmdd(l2[8:14], "expiry_date", 2000),
            document_number=document_number,
            nationality=nationality or None,
            source="mrz",
        )
    except IdentityError as exc:
        raise MrzFormatError(str(exc)) from None
