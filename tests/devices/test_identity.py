from __future__ import annotations

import dataclasses
import logging
from datetime import date

import pytest

from drivers import DeviceError
from drivers.identity import Identity, IdentityError, mask_id


def make(**overrides: object) -> Identity:
    fields: dict[str, object] = {
        "id_number": "001099012345",
        "old_id_number": "123456789",
        "full_name": "Đặng Quốc Việt",
        "date_of_birth": date(1990, 2, 1),
        "sex": "M",
        "address": "Hà Nội",
        "issue_date": date(2021, 8, 15),
        "expiry_date": None,
        "document_number": None,
        "nationality": None,
        "source": "qr",
    }
    fields.update(overrides)
    return Identity(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("001099012345", "********2345"),
        ("D23145890", "*****5890"),
        ("12345", "*2345"),
        ("1234", "****"),
        ("", ""),
    ],
)
def test_mask_id(raw: str, masked: str) -> None:
    assert mask_id(raw) == masked


def test_repr_and_str_mask_the_id_number(caplog: pytest.LogCaptureFixture) -> None:
    identity = make()
    assert "001099012345" not in repr(identity)
    assert "001099012345" not in str(identity)
    assert "********2345" in repr(identity)
    assert "Đặng" not in repr(identity)
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("read %s / %r", identity, identity)
    assert "001099012345" not in caplog.text


def test_is_frozen_and_keyword_only() -> None:
    identity = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.full_name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Identity("001099012345")  # type: ignore[call-arg,misc]


def test_to_json_dict_uses_snake_case_and_iso_dates() -> None:
    assert make().to_json_dict() == {
        "id_number": "001099012345",
        "old_id_number": "123456789",
        "full_name": "Đặng Quốc Việt",
        "date_of_birth": "1990-02-01",
        "sex": "M",
        "address": "Hà Nội",
        "issue_date": "2021-08-15",
        "expiry_date": None,
        "document_number": None,
        "nationality": None,
        "source": "qr",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id_number": ""}, "id_number"),
        ({"full_name": "  "}, "full_name"),
        ({"full_name": "A\x1b[0m"}, "full_name"),
        ({"address": "x\x00"}, "address"),
        ({"sex": "Nam"}, "sex"),
        ({"source": "nfc"}, "source"),
        ({"date_of_birth": "1990-01-01"}, "date_of_birth"),
        ({"expiry_date": 5}, "expiry_date"),
    ],
)
def test_rejects_bad_fields_naming_them(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(IdentityError, match=f"^{field}:") as info:
        make(**overrides)
    assert isinstance(info.value, DeviceError)
    assert isinstance(info.value, ValueError)
