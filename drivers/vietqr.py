"""VietQR payloads: EMVCo merchant-presented QR (TLV) for Vietnamese bank transfers.

Theory of operation
-------------------
A payload is a flat sequence of TLV fields: a two-digit tag, a two-digit length
(in characters) and the value. Some values are themselves TLV sequences
(tag ``38`` merchant account information, tag ``62`` additional data). The
payload ends with tag ``63`` whose value is a CRC-16/CCITT-FALSE (polynomial
0x1021, initial value 0xFFFF, no reflection, no final XOR) over every character
up to and including ``6304``, written as four upper-case hex digits.

Fields we build (see FIELD-NOTES "VietQR")::

    00 02 01                      payload format indicator
    01 02 11|12                   static (no amount) | dynamic (with amount)
    38 .. 00 A000000727           NAPAS GUID
          01 .. 00 <bank BIN> 01 <account>
          02 08 QRIBFTTA          transfer to account
    53 03 704                     currency VND
    54 .. <amount>                only with an amount
    58 02 VN
    62 .. 08 <purpose>            only with a purpose
    63 04 <CRC>

Everything here is pure: strings in, strings or values out. :func:`parse_payload`
accepts anything (``str`` or ``bytes``) and raises only :class:`VietQRError`.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from drivers import DeviceError

NAPAS_GUID = "A000000727"
SERVICE_TO_ACCOUNT = "QRIBFTTA"
CURRENCY_VND = "704"
COUNTRY_VN = "VN"

#: Longest amount we accept, in VND (13 digits fits EMVCo's 13-character limit).
MAX_AMOUNT_VND = 9_999_999_999_999
#: Longest transfer purpose; banks truncate or reject longer ones.
MAX_PURPOSE_CHARS = 50
#: Longest payload we parse (EMVCo payloads are at most 512 characters).
MAX_PAYLOAD_CHARS = 512

_BIN_RE = re.compile(r"[0-9]{6}")
_ACCOUNT_RE = re.compile(r"[0-9A-Za-z]{1,19}")
_PURPOSE_RE = re.compile(r"[ -~]*")  # printable ASCII: bank apps mangle diacritics


class VietQRError(DeviceError, ValueError):
    """A VietQR payload could not be built or parsed; the message says which field."""


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value: ``b"123456789"`` -> 0x29B1).

    The standard library's ``binascii.crc_hqx`` is this CRC (polynomial 0x1021,
    MSB first, no final XOR) with the initial value as its second argument; it
    runs in C, so there is no table or bit loop of our own to get wrong.
    """
    return binascii.crc_hqx(data, 0xFFFF)


def _tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise VietQRError(
            f"VietQR field {tag} is {len(value)} characters; the limit is 99: shorten it"
        )
    return f"{tag}{len(value):02d}{value}"


@dataclass(frozen=True, kw_only=True)
class VietQR:
    """What a VietQR payload says: pay ``amount_vnd`` to ``account`` at bank ``bank_bin``.

    ``amount_vnd`` None makes a static code (the payer types the amount);
    ``purpose`` None leaves the transfer note empty.
    """

    bank_bin: str
    account: str
    amount_vnd: int | None = None
    purpose: str | None = None

    def __post_init__(self) -> None:
        if not _BIN_RE.fullmatch(self.bank_bin):
            raise VietQRError(
                f"VietQR bank_bin {self.bank_bin!r} must be the bank's 6-digit NAPAS BIN "
                "(e.g. '970436')"
            )
        if not _ACCOUNT_RE.fullmatch(self.account):
            raise VietQRError(
                f"VietQR account {self.account!r} must be 1-19 letters or digits, "
                "no spaces or dashes"
            )
        if self.amount_vnd is not None and not 0 < self.amount_vnd <= MAX_AMOUNT_VND:
            raise VietQRError(
                f"VietQR amount_vnd {self.amount_vnd} must be between 1 and {MAX_AMOUNT_VND}; "
                "use None for a code without an amount"
            )
        if self.purpose is not None and (
            len(self.purpose) > MAX_PURPOSE_CHARS or not _PURPOSE_RE.fullmatch(self.purpose)
        ):
            raise VietQRError(
                f"VietQR purpose {self.purpose!r} must be at most {MAX_PURPOSE_CHARS} printable "
                "ASCII characters (no diacritics: bank apps mangle them)"
            )

    def payload(self) -> str:
        """The payload string to put in the QR code, CRC included."""
        beneficiary = _tlv("00", self.bank_bin) + _tlv("01", self.account)
        merchant = _tlv("00", NAPAS_GUID) + _tlv("01", beneficiary) + _tlv("02", SERVICE_TO_ACCOUNT)
        parts = [
            _tlv("00", "01"),
            _tlv("01", "11" if self.amount_vnd is None else "12"),
            _tlv("38", merchant),
            _tlv("53", CURRENCY_VND),
        ]
        if self.amount_vnd is not None:
            parts.append(_tlv("54", str(self.amount_vnd)))
        parts.append(_tlv("58", COUNTRY_VN))
        if self.purpose:
            parts.append(_tlv("62", _tlv("08", self.purpose)))
        body = "".join(parts) + "6304"
        return body + f"{crc16_ccitt_false(body.encode('ascii')):04X}"


def build_payload(
    bank_bin: str, account: str, amount_vnd: int | None = None, purpose: str | None = None
) -> str:
    """Shortcut for ``VietQR(...).payload()``."""
    return VietQR(
        bank_bin=bank_bin, account=account, amount_vnd=amount_vnd, purpose=purpose
    ).payload()


def parse_tlv(text: str) -> list[tuple[str, str]]:
    """Split one level of TLV fields; raises :class:`VietQRError` on malformed input."""
    fields: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        header = text[pos : pos + 4]
        if len(header) < 4 or not header.isdigit() or not header.isascii():
            raise VietQRError(
                f"VietQR TLV header at offset {pos} is {header!r}; "
                "expected 2-digit tag + 2-digit length"
            )
        tag, length = header[:2], int(header[2:])
        value = text[pos + 4 : pos + 4 + length]
        if len(value) != length:
            raise VietQRError(
                f"VietQR field {tag} at offset {pos} declares {length} characters "
                f"but only {len(value)} remain: the payload is truncated"
            )
        fields.append((tag, value))
        pos += 4 + length
    return fields


def _one(fields: list[tuple[str, str]], tag: str, where: str) -> str | None:
    values = [v for t, v in fields if t == tag]
    if len(values) > 1:
        raise VietQRError(f"VietQR {where} field {tag} appears {len(values)} times; expected once")
    return values[0] if values else None


def _required(fields: list[tuple[str, str]], tag: str, where: str) -> str:
    value = _one(fields, tag, where)
    if value is None:
        raise VietQRError(f"VietQR {where} field {tag} is missing")
    return value


def parse_payload(raw: str | bytes) -> VietQR:
    """Parse and verify a VietQR payload; raises only :class:`VietQRError`."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise VietQRError(
                f"VietQR payload is not ASCII (byte {exc.start}): not a VietQR code"
            ) from None
    else:
        text = raw
    if len(text) > MAX_PAYLOAD_CHARS:
        raise VietQRError(
            f"VietQR payload is {len(text)} characters; the limit is {MAX_PAYLOAD_CHARS}"
        )
    if not text.isascii():
        raise VietQRError("VietQR payload contains non-ASCII characters: not a VietQR code")
    if len(text) < 8 or text[-8:-4] != "6304":
        raise VietQRError("VietQR payload does not end with the CRC field '6304XXXX'")
    expected = f"{crc16_ccitt_false(text[:-4].encode('ascii')):04X}"
    if text[-4:].upper() != expected:
        raise VietQRError(
            f"VietQR CRC is {text[-4:]!r} but the payload's CRC is {expected!r}: "
            "the code is damaged or altered"
        )
    fields = parse_tlv(text)
    if _required(fields, "00", "top-level") != "01":
        raise VietQRError("VietQR field 00 (payload format) must be '01'")
    method = _required(fields, "01", "top-level")
    if method not in ("11", "12"):
        raise VietQRError(f"VietQR field 01 (initiation method) is {method!r}; expected 11 or 12")
    if _required(fields, "53", "top-level") != CURRENCY_VND:
        raise VietQRError("VietQR field 53 (currency) must be 704 (VND)")
    if _required(fields, "58", "top-level") != COUNTRY_VN:
        raise VietQRError("VietQR field 58 (country) must be VN")
    merchant = parse_tlv(_required(fields, "38", "top-level"))
    if _required(merchant, "00", "merchant (38)") != NAPAS_GUID:
        raise VietQRError(f"VietQR field 38.00 must be the NAPAS GUID {NAPAS_GUID}")
    beneficiary = parse_tlv(_required(merchant, "01", "merchant (38)"))
    bank_bin = _required(beneficiary, "00", "beneficiary (38.01)")
    account = _required(beneficiary, "01", "beneficiary (38.01)")
    amount_text = _one(fields, "54", "top-level")
    amount: int | None = None
    if amount_text is not None:
        if not amount_text.isdigit():
            raise VietQRError(
                f"VietQR field 54 (amount) is {amount_text!r}; VND amounts are whole numbers"
            )
        amount = int(amount_text)
    purpose: str | None = None
    extra = _one(fields, "62", "top-level")
    if extra is not None:
        purpose = _one(parse_tlv(extra), "08", "additional data (62)")
    return VietQR(bank_bin=bank_bin, account=account, amount_vnd=amount, purpose=purpose)
