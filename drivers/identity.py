"""The one identity record every identity source produces.

A citizen can identify themselves three ways at a kiosk: the QR code printed on
the CCCD card (``drivers.cccd_qr``), the machine-readable zone on its back
(``drivers.mrz``) or the chip, through a serial card reader
(``drivers.card_reader_protocol``). All three build an :class:`Identity`.

The ID number is personal data (architecture invariant 8): ``repr()`` and
``str()`` of an :class:`Identity` show it masked, so an identity that lands in a
log line by accident does not leak it. Only :meth:`Identity.to_json_dict`, meant
for the technician's ``decode`` command and the dossier store, carries it whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from drivers import DeviceError

__all__ = ["SEXES", "SOURCES", "Identity", "IdentityError", "Sex", "Source", "mask_id"]

Source = Literal["qr", "mrz", "chip"]
SOURCES: tuple[Source, ...] = ("qr", "mrz", "chip")

#: ICAO 9303 sex codes: M (male), F (female), X (unspecified).
Sex = Literal["M", "F", "X"]
SEXES: tuple[Sex, ...] = ("M", "F", "X")

#: Digits of an ID number left visible by :func:`mask_id`.
VISIBLE_DIGITS = 4


class IdentityError(DeviceError, ValueError):
    """An identity record was built with a field that cannot be right."""


def mask_id(id_number: str) -> str:
    """Return ``id_number`` with everything but its last 4 characters as ``*``.

    ``mask_id("001234561234") == "********1234"``. Numbers of 4 characters or
    fewer are masked entirely, so a short value never shows whole.
    """
    if len(id_number) <= VISIBLE_DIGITS:
        return "*" * len(id_number)
    hidden = len(id_number) - VISIBLE_DIGITS
    return "*" * hidden + id_number[hidden:]


def _require_text(name: str, value: object, *, allow_empty: bool) -> None:
    if not isinstance(value, str):
        raise IdentityError(f"{name}: expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise IdentityError(f"{name}: must not be empty")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise IdentityError(f"{name}: contains a control character; remove it")


@dataclass(frozen=True, kw_only=True, repr=False)
class Identity:
    """A citizen's identity as read from a card.

    Fields a source does not carry are ``None``: the QR has no expiry date,
    document number or nationality; the MRZ has no address, issue date or old
    ID number. ``sex`` uses the ICAO codes ``M``/``F``/``X``.
    """

    id_number: str
    old_id_number: str | None
    full_name: str
    date_of_birth: date
    sex: Sex
    address: str | None
    issue_date: date | None
    expiry_date: date | None
    document_number: str | None
    nationality: str | None
    source: Source

    def __post_init__(self) -> None:
        _require_text("id_number", self.id_number, allow_empty=False)
        _require_text("full_name", self.full_name, allow_empty=False)
        for name in ("old_id_number", "address", "document_number", "nationality"):
            value = getattr(self, name)
            if value is not None:
                _require_text(name, value, allow_empty=name == "address")
        for name in ("date_of_birth", "issue_date", "expiry_date"):
            value = getattr(self, name)
            if value is None and name != "date_of_birth":
                continue
            if not isinstance(value, date):
                raise IdentityError(f"{name}: expected a datetime.date, got {value!r}")
        if self.sex not in SEXES:
            raise IdentityError(f"sex: expected one of {', '.join(SEXES)}, got {self.sex!r}")
        if self.source not in SOURCES:
            raise IdentityError(
                f"source: expected one of {', '.join(SOURCES)}, got {self.source!r}"
            )

    @property
    def masked_id(self) -> str:
        """The ID number with only its last 4 digits shown (for paper and logs)."""
        return mask_id(self.id_number)

    def __repr__(self) -> str:
        # Only non-identifying fields and the masked number: repr ends up in logs.
        return (
            f"Identity(id_number={self.masked_id!r}, source={self.source!r}, "
            f"nationality={self.nationality!r})"
        )

    __str__ = __repr__

    def to_json_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: snake_case keys, ISO 8601 dates, ``None`` as null.

        The ID number is carried whole: this is for storage and the technician's
        ``decode`` command, never for logs.
        """
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.isoformat() if isinstance(value, date) else value
        return out
