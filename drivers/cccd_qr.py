"""Parser of the QR code printed on the Vietnamese citizen identity card (CCCD).

Sans-I/O: text in, :class:`~drivers.identity.Identity` out. The text is what a
scanner in USB-CDC mode sends, already decoded from UTF-8::

    ID12|CMND9 or empty|Full name|DDMMYYYY birth|Nam/Nữ|Permanent address|DDMMYYYY issue

Seen in the wild and accepted: trailing spaces, CR/LF terminators, and extra
fields after the seventh (newer cards), which are ignored. Rejected, with an
error naming the field and what was expected: fewer than 7 fields, an ID that is
not 12 digits, an old ID that is neither empty nor 9 digits, an impossible date,
a sex other than Nam/Nữ, an empty name, control characters, and text longer
than :data:`MAX_QR_LENGTH`.
"""

from __future__ import annotations

import unicodedata
from datetime import date

from drivers import DeviceError
from drivers.identity import Identity, IdentityError, Sex

__all__ = [
    "MAX_QR_LENGTH",
    "MIN_FIELDS",
    "QrFormatError",
    "encode_cccd_qr",
    "looks_like_cccd_qr",
    "parse_cccd_qr",
    "parse_ddmmyyyy",
]

#: Fields a CCCD QR must carry; more are accepted and ignored.
MIN_FIELDS = 7
#: Longest QR text accepted (real ones are about 150 characters).
MAX_QR_LENGTH = 1024

_SEX_FROM_TEXT: dict[str, Sex] = {"nam": "M", "nữ": "F"}
_SEX_TO_TEXT: dict[Sex, str] = {"M": "Nam", "F": "Nữ"}


class QrFormatError(DeviceError, ValueError):
    """The text is not a well-formed CCCD QR; the message names the field."""


def _is_ascii_digits(text: str, length: int) -> bool:
    return len(text) == length and text.isascii() and text.isdigit()


def parse_ddmmyyyy(text: str, field: str) -> date:
    """Parse an 8-digit ``DDMMYYYY`` date; raise :class:`QrFormatError` naming ``field``."""
    if not _is_ascii_digits(text, 8):
        raise QrFormatError(f"{field}: expected 8 digits DDMMYYYY, got {text!r}")
    try:
        return date(int(text[4:]), int(text[2:4]), int(text[:2]))
    except ValueError:
        raise QrFormatError(f"{field}: {text!r} is not a calendar date (DDMMYYYY)") from None


def looks_like_cccd_qr(text: str) -> bool:
    """True when ``text`` starts like a CCCD QR (12 digits then ``|``).

    Lets a scanner tell an identity card from, say, a receipt tracking code
    before deciding whether a parse failure is an error worth reporting.
    """
    head = text.lstrip()[:13]
    return len(head) == 13 and head[12] == "|" and _is_ascii_digits(head[:12], 12)


def parse_cccd_qr(text: str) -> Identity:
    """Parse CCCD QR text into an :class:`Identity` with ``source="qr"``.

    Raises :class:`QrFormatError` (a ``ValueError``) and nothing else.
    """
    if not isinstance(text, str):
        raise QrFormatError(f"qr: expected text, got {type(text).__name__}")
    if len(text) > MAX_QR_LENGTH:
        raise QrFormatError(
            f"qr: {len(text)} characters exceeds the limit of {MAX_QR_LENGTH}; "
            "this is not a CCCD QR"
        )
    text = unicodedata.normalize("NFC", text.strip())
    fields = [part.strip() for part in text.split("|")]
    if len(fields) < MIN_FIELDS:
        raise QrFormatError(
            f"qr: expected at least {MIN_FIELDS} '|'-separated fields "
            f"(id|old id|name|birth|sex|address|issue date), got {len(fields)}"
        )
    id_number, old_id, full_name, birth, sex_text, address, issued = fields[:MIN_FIELDS]
    if not _is_ascii_digits(id_number, 12):
        raise QrFormatError(f"id_number: expected 12 digits, got {len(id_number)} characters")
    if old_id and not _is_ascii_digits(old_id, 9):
        raise QrFormatError("old_id_number: expected 9 digits or empty")
    sex = _SEX_FROM_TEXT.get(sex_text.casefold())
    if sex is None:
        raise QrFormatError(f"sex: expected 'Nam' or 'Nữ', got {sex_text!r}")
    date_of_birth = parse_ddmmyyyy(birth, "date_of_birth")
    issue_date = parse_ddmmyyyy(issued, "issue_date")
    try:
        return Identity(
            id_number=id_number,
            old_id_number=old_id or None,
            full_name=full_name,
            date_of_birth=date_of_birth,
            sex=sex,
            address=address,
            issue_date=issue_date,
            expiry_date=None,
            document_number=None,
            nationality=None,
            source="qr",
        )
    except IdentityError as exc:
        raise QrFormatError(str(exc)) from None


def encode_cccd_qr(identity: Identity) -> str:
    """Render ``identity`` as CCCD QR text (the inverse of :func:`parse_cccd_qr`).

    Used by the emulated scanner and by round-trip tests. Raises
    :class:`QrFormatError` when the identity cannot be expressed as a QR (no
    issue date, sex ``X``, a ``|`` inside a field).
    """
    if identity.issue_date is None:
        raise QrFormatError("issue_date: a CCCD QR needs an issue date")
    if identity.sex not in _SEX_TO_TEXT:
        raise QrFormatError("sex: a CCCD QR carries only Nam or Nữ")
    parts = [
        identity.id_number,
        identity.old_id_number or "",
        identity.full_name,
        identity.date_of_birth.strftime("%d%m") + f"{identity.date_of_birth.year:04d}",
        _SEX_TO_TEXT[identity.sex],
        identity.address or "",
        identity.issue_date.strftime("%d%m") + f"{identity.issue_date.year:04d}",
    ]
    for part in parts:
        if "|" in part:
            raise QrFormatError(f"qr: field {part!r} contains '|', which separates fields")
    return "|".join(parts)
