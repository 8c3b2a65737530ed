"""What every kiosk service shares: the outbox, the office, the clock, refusal messages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from edge_agent import CitizenError
from sync.outbox import Outbox, OutboxFull, RecordTooLarge, Transaction
from sync.schemas import SchemaError, normalize_text

log = logging.getLogger("aps.services")

#: Citizen-facing names of record fields, for refusal messages.
FIELD_LABELS = {
    "message": "Nội dung",
    "contact": "Thông tin liên hệ",
    "topic": "Chủ đề",
    "full_name": "Họ và tên",
    "phone": "Số điện thoại",
    "address": "Địa chỉ",
    "reason": "Lý do",
    "procedure": "Thủ tục",
    "dossier_code": "Mã hồ sơ",
    "level": "Mức độ hài lòng",
    "category": "Loại ý kiến",
}


@dataclass(frozen=True, kw_only=True)
class Office:
    """The kiosk's place in its office: agency, slot (codes), time zone, hotline."""

    agency: str
    slot: int
    tz: tzinfo
    hotline: str
    now: Callable[[], datetime] | None = None

    def clock(self) -> datetime:
        return self.now() if self.now is not None else datetime.now(self.tz)


def clean_text(value: str | None) -> str | None:
    """NFC, whitespace collapsed per line; empty is None (multi-line text keeps its lines)."""
    if value is None:
        return None
    lines = [normalize_text(line) for line in value.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines).strip("\n")
    return text or None


def refusal(exc: SchemaError) -> CitizenError:
    """A Vietnamese message naming the field of a schema failure."""
    p = exc.first
    name = str(p.path[0]) if p.path else ""
    label = FIELD_LABELS.get(name, "Thông tin")
    if p.code in ("missing", "too-short"):
        text = f"Vui lòng nhập «{label}»."
    elif p.code == "too-long" and p.limit is not None:
        text = f"«{label}» dài quá {p.limit} ký tự."
    elif name == "phone":
        text = f"«{label}» chỉ gồm chữ số, có thể bắt đầu bằng dấu +."
    elif p.code in ("control-char", "not-nfc"):
        text = f"«{label}» có ký tự ẩn hoặc ký tự điều khiển không hợp lệ."
    else:
        text = f"«{label}» không hợp lệ."
    return CitizenError(p.describe(root="body"), text)


@contextmanager
def queued(outbox: Outbox) -> Iterator[Transaction]:
    """A transaction whose failures become citizen messages (nothing kept, nothing promised)."""
    try:
        with outbox.transaction() as tx:
            yield tx
    except SchemaError as exc:
        log.warning("refused: %s", exc)
        raise refusal(exc) from exc
    except OutboxFull as exc:
        log.error("refused: %s", exc)
        raise CitizenError(
            str(exc),
            "Máy tạm thời không nhận thêm yêu cầu (bộ nhớ đầy). "
            "Xin mời Ông/Bà đến quầy Một cửa để được hỗ trợ.",
        ) from exc
    except RecordTooLarge as exc:
        raise CitizenError(str(exc), "Nội dung quá dài. Xin mời Ông/Bà rút gọn.") from exc


def drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}
