"""Check results and how a technician hears them: ``aps-agent selftest`` and ``doctor``.

Theory of operation
-------------------
Every check is a small function returning a :class:`CheckResult`: the check's
``name`` (a stable English id for scripts), its ``status`` (``ok``, ``warn``,
``fail`` or ``skip``), ``seen`` (what it saw, in plain words) and ``fix`` (what
to do about it, in plain words; ``None`` when nothing is to be done). ``seen``
and ``fix`` are :class:`Words`: the same sentence in Vietnamese and English, so
one run can be read aloud in either language (``--lang``). ``detail`` keeps the
technical message (a driver's error, a path, a port) for ``--json`` and logs
only: the table never shows it, because it may hold hex ids or numbers nobody
can read over the phone.

The table (:func:`render_table`) is built to be read aloud: one numbered block
per check, its name and verdict on the first line, what was seen, then the fix.
Durations are whole or one-decimal seconds ("3 giây", "3 s"), sizes MB or GB
with the language's decimal mark (:func:`duration`, :func:`size`); no epoch
times, no hex. :func:`overall` is ``fail`` when any check failed, and the
commands exit 0 only then not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CheckResult",
    "Lang",
    "Status",
    "Words",
    "duration",
    "overall",
    "render_json",
    "render_table",
    "size",
]

Lang = Literal["vi", "en"]
Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True, kw_only=True)
class Words:
    """One sentence in both languages."""

    vi: str
    en: str

    def pick(self, lang: Lang) -> str:
        return self.vi if lang == "vi" else self.en


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    name: str
    status: Status
    seen: Words
    fix: Words | None = None
    detail: str | None = None

    def to_json_dict(self, lang: Lang) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": TITLES.get(self.name, Words(vi=self.name, en=self.name)).pick(lang),
            "status": self.status,
            "seen": self.seen.pick(lang),
            "fix": None if self.fix is None else self.fix.pick(lang),
            "detail": self.detail,
        }


#: What each check is called when read aloud.
TITLES: dict[str, Words] = {
    "config": Words(vi="Tệp cấu hình", en="Configuration file"),
    "identity": Words(vi="Danh tính kiosk", en="Kiosk identity"),
    "printer": Words(vi="Máy in phiếu", en="Receipt printer"),
    "card_reader": Words(vi="Đầu đọc thẻ", en="Card reader"),
    "scanner": Words(vi="Máy quét mã QR", en="QR scanner"),
    "hid_scanner": Words(vi="Máy quét kiểu bàn phím", en="Keyboard-mode scanner"),
    "help_button": Words(vi="Nút gọi trợ giúp", en="Help button"),
    "document_camera": Words(vi="Camera chụp giấy tờ", en="Document camera"),
    "broker": Words(vi="Kết nối máy chủ trung tâm", en="Connection to central"),
    "broker_tls": Words(vi="Kết nối máy chủ tin nhắn", en="Message broker connection"),
    "central_https": Words(vi="Trang máy chủ trung tâm", en="Central's web address"),
    "clock": Words(vi="Đồng hồ", en="Clock"),
    "disk": Words(vi="Dung lượng ổ đĩa", en="Free disk space"),
    "permissions": Words(vi="Quyền truy cập tệp", en="File permissions"),
    "certificate": Words(vi="Chứng chỉ kết nối", en="Connection certificate"),
    "queue": Words(vi="Hàng đợi gửi hồ sơ", en="Sending queue"),
}

_VERDICT: dict[Status, Words] = {
    "ok": Words(vi="ĐẠT", en="PASS"),
    "warn": Words(vi="CẢNH BÁO", en="WARNING"),
    "fail": Words(vi="LỖI", en="FAIL"),
    "skip": Words(vi="BỎ QUA", en="SKIPPED"),
}


def _number(value: float, lang: Lang, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    if decimals and text.endswith("0" * decimals):
        text = text[: -(decimals + 1)]
    return text.replace(".", ",") if lang == "vi" else text


def duration(seconds: float, lang: Lang) -> str:
    """``3`` -> "3 giây" / "3 s"; under 10 s one decimal, "0,2 giây"; minutes, hours, days.

    Below 0.05 s: "dưới 0,1 giây" / "under 0.1 s" (never "0 giây").
    """
    s = abs(seconds)
    if s < 0.05:
        return "dưới 0,1 giây" if lang == "vi" else "under 0.1 s"
    if s < 10:
        n, vi, en = _number(s, lang, 1), "giây", "s"
    elif s < 120:
        n, vi, en = _number(s, lang, 0), "giây", "s"
    elif s < 7200:
        n, vi, en = _number(s / 60, lang, 0), "phút", "min"
    elif s < 172800:
        n, vi, en = _number(s / 3600, lang, 0), "giờ", "h"
    else:
        n, vi, en = _number(s / 86400, lang, 0), "ngày", "days"
    return f"{n} {vi if lang == 'vi' else en}"


def size(n_bytes: int, lang: Lang) -> str:
    """Bytes as "850 MB" or "12,3 GB" (1 MB = 1,048,576 bytes, as the config's MiB limits)."""
    mb = n_bytes / (1024 * 1024)
    if mb < 1024:
        return f"{_number(mb, lang, 0 if mb >= 10 else 1)} MB"
    return f"{_number(mb / 1024, lang, 1)} GB"


def overall(results: Sequence[CheckResult]) -> Status:
    """``fail`` if any check failed, else ``warn`` if any warned, else ``ok``."""
    statuses = {r.status for r in results}
    if "fail" in statuses:
        return "fail"
    return "warn" if "warn" in statuses else "ok"


_SUMMARY: dict[Status, Words] = {
    "ok": Words(vi="Kết quả chung: ĐẠT, không có lỗi.", en="Overall: PASS, nothing failed."),
    "warn": Words(
        vi="Kết quả chung: ĐẠT, nhưng có cảnh báo cần xem.",
        en="Overall: PASS, with warnings to look at.",
    ),
    "fail": Words(
        vi="Kết quả chung: CÓ LỖI, hãy làm theo cách sửa ở trên.",
        en="Overall: FAILED, follow the fixes above.",
    ),
    "skip": Words(vi="Kết quả chung: không kiểm tra gì.", en="Overall: nothing was checked."),
}


def render_table(results: Sequence[CheckResult], lang: Lang, heading: Words) -> str:
    """The report a technician reads aloud: numbered checks, verdict, what was seen, the fix."""
    fix_label = "Cách sửa" if lang == "vi" else "Fix"
    lines = [heading.pick(lang), ""]
    for i, r in enumerate(results, 1):
        title = TITLES.get(r.name, Words(vi=r.name, en=r.name)).pick(lang)
        lines.append(f"{i:>2}. {title}: {_VERDICT[r.status].pick(lang)}")
        lines.append(f"    {r.seen.pick(lang)}")
        if r.fix is not None:
            lines.append(f"    {fix_label}: {r.fix.pick(lang)}")
    lines += ["", _SUMMARY[overall(results)].pick(lang)]
    return "\n".join(lines)


def render_json(results: Sequence[CheckResult], lang: Lang) -> str:
    """One JSON object for scripts: ``{"overall": ..., "checks": [...]}``."""
    return json.dumps(
        {"overall": overall(results), "checks": [r.to_json_dict(lang) for r in results]},
        ensure_ascii=False,
    )
