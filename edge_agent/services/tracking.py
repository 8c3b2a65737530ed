"""Tracking a dossier by its code, typed or scanned from the slip's QR.

The answer comes from the kiosk's cache of ``dossier-status`` items central
sent to every kiosk of the office (so a dossier filed at another kiosk there
is found too), else from this kiosk's own ``dossiers`` table (filed here, no
status from the office yet: "submitted"). It works offline: the result says
how old the cache is (``downlink_state.last_reply_at``: the last time central
answered), and the screen says so when that is long ago.

A scanned slip QR holds ``[kiosk] tracking_url`` + the code, or the bare code;
:func:`code_from_scan` takes either (and anything else the scanner read is
refused with a clear message).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent import CitizenError, downlink_cache
from sync.dossier_status import LABELS_VI
from sync.outbox import Outbox
from sync.schemas import DOSSIER_CODE_RE

#: Vietnamese labels of the lifecycle states: the shared table, so central and kiosks agree.
STATE_VI: dict[str, str] = {str(k): v for k, v in LABELS_VI.items()}
NOT_FOUND = (
    "Không tìm thấy hồ sơ {code}. Xin Ông/Bà kiểm tra lại mã trên giấy hẹn "
    "hoặc hỏi cán bộ tại quầy."
)
BAD_CODE = "Mã hồ sơ không đúng. Xin mời quét mã QR trên giấy hẹn hoặc nhập lại mã."
STALE_AFTER_S = 3600.0
STALE = " (Thông tin cập nhật lần cuối cách đây {age}; máy đang mất kết nối.)"


def code_from_scan(text: str, tracking_url: str = "") -> str:
    """The dossier code in a typed or scanned text; CitizenError if there is none."""
    t = text.strip()
    if tracking_url and t.startswith(tracking_url):
        t = t[len(tracking_url) :]
    elif "=" in t and "://" in t:
        t = t.rsplit("=", 1)[1]
    t = t.strip()
    if not DOSSIER_CODE_RE.match(t):
        raise CitizenError(f"not a dossier code: {text[:80]!r}", BAD_CODE)
    return t


def _age_vi(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)} phút"
    if seconds < 86400:
        return f"{int(seconds // 3600)} giờ"
    return f"{int(seconds // 86400)} ngày"


@dataclass(frozen=True, kw_only=True)
class TrackingResult:
    code: str
    found: bool
    state: str | None
    state_vi: str | None
    paid: bool | None
    paid_amount_vnd: int | None
    due: str | None
    note: str | None
    changed_at: str | None
    source: str  # "office" (a status from the back office), "kiosk" (filed here), "none"
    cache_age_s: float | None
    screen_text: str

    def to_json_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TrackingService:
    def __init__(
        self, outbox: Outbox, *, tracking_url: str = "", wall: Callable[[], float] = time.time
    ) -> None:
        self.outbox, self.tracking_url, self.wall = outbox, tracking_url, wall

    def lookup(self, text: str) -> TrackingResult:
        """Look a dossier up by its code or the slip's scanned QR text."""
        code = code_from_scan(text, self.tracking_url)
        with self.outbox.reading() as conn:
            status = downlink_cache.item(conn, "dossier-status", code)
            replied = downlink_cache.last_reply_at(conn)
            own = None
            if status is None:
                own = conn.execute(
                    "SELECT due, fee_vnd FROM dossiers WHERE code = ?", (code,)
                ).fetchone()
        age = None if replied is None else max(0.0, self.wall() - replied)
        stale = STALE.format(age=_age_vi(age)) if age is not None and age > STALE_AFTER_S else ""
        if status is not None:
            state = str(status.get("state"))
            label = STATE_VI.get(state, state)
            text_vi = f"Hồ sơ {code}: {label}."
            if status.get("paid"):
                text_vi += " Đã nộp lệ phí."
            if status.get("note"):
                text_vi += f" {status['note']}"
            return TrackingResult(
                code=code,
                found=True,
                state=state,
                state_vi=label,
                paid=bool(status.get("paid")),
                paid_amount_vnd=status.get("paid_amount_vnd"),
                due=status.get("due"),
                note=status.get("note"),
                changed_at=status.get("changed_at"),
                source="office",
                cache_age_s=age,
                screen_text=text_vi + stale,
            )
        if own is not None:
            label = STATE_VI["submitted"]
            return TrackingResult(
                code=code,
                found=True,
                state="submitted",
                state_vi=label,
                paid=None,
                paid_amount_vnd=None,
                due=own[0],
                note=None,
                changed_at=None,
                source="kiosk",
                cache_age_s=age,
                screen_text=f"Hồ sơ {code}: {label}.{stale}",
            )
        return TrackingResult(
            code=code,
            found=False,
            state=None,
            state_vi=None,
            paid=None,
            paid_amount_vnd=None,
            due=None,
            note=None,
            changed_at=None,
            source="none",
            cache_age_s=age,
            screen_text=NOT_FOUND.format(code=code) + stale,
        )
