"""Due dates on the office's working-day calendar.

Rules (shared/reference/one-stop-office-facts.md, section 3; the Sa Đéc models
3 and 4), every one configurable per office (``[office]`` in agent.toml):

- limits run from receipt of a complete dossier, in working days; a dossier
  received after the cut-off (15:00, or the procedure's own) or on a day off
  counts as received at the start of the next working day;
- a deadline never falls on a day off: weekends, Vietnamese public holidays
  (the ``holidays`` package, which has the Tết closure), plus the office's
  ``extra_holidays``; make-up Saturdays (``holidays``' ``weekend_workdays``)
  and the office's ``extra_workdays`` are working days;
- the no-wait day: a dossier received (before the cut-off) on a configured
  weekday (Tuesday, Friday) for an eligible procedure whose limit is one of
  the configured lengths (3, 5, 7 working days) is settled the same day;
- Thursday, no appointment: a dossier received (before the cut-off) on the
  Thursday itself, for an eligible procedure whose limit is 1-5 working
  days, is settled while the citizen waits. A dossier filed on Wednesday
  evening counts as received on Thursday for the working-day count, but the
  citizen is not there waiting: the Thursday rule does not apply to it.

:func:`compute_due` says which rules applied, in English (``reason``, for
the CLI and logs) and in Vietnamese (``reason_vi``, for the slip).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol

import holidays

WEEKDAYS_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAYS_VI = ("thứ Hai", "thứ Ba", "thứ Tư", "thứ Năm", "thứ Sáu", "thứ Bảy", "Chủ nhật")
MAX_SCAN_DAYS = 3660  # a calendar with no working day in ten years is a configuration error


class CalendarError(ValueError):
    """The office calendar has no working day where one is needed."""


@lru_cache(maxsize=32)
def _vn_holidays(year: int) -> tuple[dict[date, str], frozenset[date]]:
    h: Any = holidays.country_holidays("VN", years=[year])
    workdays = frozenset(d for d in getattr(h, "weekend_workdays", ()) if d.year == year)
    return dict(h.items()), workdays


@dataclass(frozen=True, kw_only=True)
class OfficeRules:
    cutoff: time = time(15, 0)
    return_time: time = time(16, 0)
    no_wait_weekdays: frozenset[int] = frozenset({1, 4})  # Monday = 0: Tuesday, Friday
    no_wait_limits: frozenset[int] = frozenset({3, 5, 7})
    thursday_weekdays: frozenset[int] = frozenset({3})  # Thursday
    thursday_limits: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    extra_holidays: frozenset[date] = field(default_factory=frozenset)
    extra_workdays: frozenset[date] = field(default_factory=frozenset)


class WorkCalendar:
    def __init__(self, rules: OfficeRules) -> None:
        self.rules = rules

    def is_working_day(self, d: date) -> bool:
        if d in self.rules.extra_workdays:
            return True
        if d in self.rules.extra_holidays:
            return False
        days_off, makeup = _vn_holidays(d.year)
        if d in makeup:
            return True
        return d.weekday() < 5 and d not in days_off

    def day_off_name(self, d: date) -> str | None:
        """Why ``d`` is not a working day (English), or None if it is one."""
        if self.is_working_day(d):
            return None
        if d in self.rules.extra_holidays:
            return "office day off"
        name = _vn_holidays(d.year)[0].get(d)
        return name or WEEKDAYS_EN[d.weekday()]

    def next_working_day(self, d: date) -> date:
        for _ in range(MAX_SCAN_DAYS):
            d += timedelta(days=1)
            if self.is_working_day(d):
                return d
        raise CalendarError(f"no working day within {MAX_SCAN_DAYS} days after {d}")

    def add_working_days(self, start: date, n: int) -> date:
        d = start
        for _ in range(n):
            d = self.next_working_day(d)
        return d

    def days_off_between(self, start: date, end: date) -> list[tuple[date, str]]:
        """Weekday days off strictly between ``start`` and ``end`` (for the reason)."""
        out: list[tuple[date, str]] = []
        d = start + timedelta(days=1)
        while d < end:
            name = self.day_off_name(d)
            if name is not None and name not in WEEKDAYS_EN:
                out.append((d, name))
            d += timedelta(days=1)
        return out


@dataclass(frozen=True, kw_only=True)
class Due:
    at: datetime
    same_day: bool  # settled on the spot: due the very day it was filed
    rule: str  # same-day, thursday-no-appointment, no-wait-day, working-days
    reasons: tuple[str, ...] = ()
    reasons_vi: tuple[str, ...] = ()

    @property
    def on_the_spot(self) -> bool:
        return self.same_day

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def reason_vi(self) -> str:
        return "; ".join(self.reasons_vi)


def effective_receipt_day(
    received: datetime, cal: WorkCalendar, *, cutoff: time | None = None
) -> tuple[date, bool]:
    """The working day the clock starts on, and whether it is the filing day itself."""
    day = received.date()
    limit = cutoff or cal.rules.cutoff
    if cal.is_working_day(day) and received.time() < limit:
        return day, True
    return cal.next_working_day(day), False


def _hm(t: time) -> str:
    return t.strftime("%H:%M")


def _vi_date(d: date) -> str:
    return f"{WEEKDAYS_VI[d.weekday()]} {d.strftime('%d/%m/%Y')}"


def compute_due(
    received: datetime,
    *,
    same_day: bool,
    working_days: int,
    cal: WorkCalendar,
    no_wait_eligible: bool = True,
    thursday_eligible: bool = True,
    cutoff: time | None = None,
) -> Due:
    """When the result is due for a dossier received at ``received``.

    ``same_day``: the procedure's limit is the same day (as ``working_days == 0``);
    ``no_wait_eligible`` / ``thursday_eligible``: the procedure's catalogue flags;
    ``cutoff``: the procedure's own cut-off, else the office's.
    """
    rules = cal.rules
    limit = cutoff or rules.cutoff
    day, today = effective_receipt_day(received, cal, cutoff=limit)
    rt = rules.return_time
    tz = received.tzinfo
    filed = received.date()
    reasons: list[str] = []
    reasons_vi: list[str] = []

    def at(d: date) -> datetime:
        return datetime.combine(d, rt, tzinfo=tz)

    if today:
        reasons.append(
            f"received {filed.isoformat()} {_hm(received.time())} ({WEEKDAYS_EN[filed.weekday()]}),"
            f" before the {_hm(limit)} cut-off: counted from that day"
        )
        reasons_vi.append(f"Nhận hồ sơ trước {_hm(limit)} {_vi_date(filed)}")
    elif cal.is_working_day(filed):
        reasons.append(
            f"received {filed.isoformat()} {_hm(received.time())}, after the {_hm(limit)}"
            f" cut-off: counted from the next working day {day.isoformat()}"
        )
        reasons_vi.append(
            f"Nhận hồ sơ sau {_hm(limit)}: tính từ ngày làm việc tiếp theo, {_vi_date(day)}"
        )
    else:
        reasons.append(
            f"received {filed.isoformat()} on a day off ({cal.day_off_name(filed)}):"
            f" counted from the next working day {day.isoformat()}"
        )
        reasons_vi.append(
            f"Nhận hồ sơ vào ngày nghỉ: tính từ ngày làm việc tiếp theo, {_vi_date(day)}"
        )

    weekday = day.weekday()
    if same_day or working_days == 0:
        reasons.append(f"same-day procedure: due {day.isoformat()} at {_hm(rt)}")
        reasons_vi.append(f"Thủ tục giải quyết trong ngày: trả kết quả {_hm(rt)} {_vi_date(day)}")
        return Due(
            at=at(day),
            same_day=today,
            rule="same-day",
            reasons=tuple(reasons),
            reasons_vi=tuple(reasons_vi),
        )
    if (
        today
        and thursday_eligible
        and weekday in rules.thursday_weekdays
        and working_days in rules.thursday_limits
    ):
        reasons.append(
            f"{WEEKDAYS_EN[weekday]}, no appointment: a {working_days}-working-day procedure"
            f" received that day is settled while the citizen waits"
        )
        reasons_vi.append(
            f"{WEEKDAYS_VI[weekday].capitalize()} không hẹn:"
            " giải quyết và trả kết quả ngay trong ngày"
        )
        return Due(
            at=at(day),
            same_day=True,
            rule="thursday-no-appointment",
            reasons=tuple(reasons),
            reasons_vi=tuple(reasons_vi),
        )
    if (
        today
        and no_wait_eligible
        and weekday in rules.no_wait_weekdays
        and working_days in rules.no_wait_limits
    ):
        reasons.append(
            f"no-wait day ({WEEKDAYS_EN[weekday]}): a {working_days}-working-day procedure"
            f" is settled the same day"
        )
        reasons_vi.append(f"Ngày không chờ ({WEEKDAYS_VI[weekday]}): trả kết quả ngay trong ngày")
        return Due(
            at=at(day),
            same_day=True,
            rule="no-wait-day",
            reasons=tuple(reasons),
            reasons_vi=tuple(reasons_vi),
        )
    due = cal.add_working_days(day, working_days)
    reasons.append(
        f"{working_days} working day(s) after {day.isoformat()}: due {due.isoformat()} at {_hm(rt)}"
    )
    off = cal.days_off_between(filed, due)
    if off:
        names = list(dict.fromkeys(name for _, name in off))
        reasons.append(
            f"skipping {len(off)} weekday day(s) off ({', '.join(names)}, {off[0][0].isoformat()}"
            f"..{off[-1][0].isoformat()})"
        )
        reasons_vi.append(f"Không tính {len(off)} ngày nghỉ lễ, Tết")
    reasons_vi.append(f"Hẹn trả kết quả {_hm(rt)} {_vi_date(due)} ({working_days} ngày làm việc)")
    return Due(
        at=at(due),
        same_day=False,
        rule="working-days",
        reasons=tuple(reasons),
        reasons_vi=tuple(reasons_vi),
    )


class _Limits(Protocol):
    @property
    def working_days(self) -> int: ...
    @property
    def no_wait_day(self) -> bool: ...
    @property
    def thursday(self) -> bool: ...
    @property
    def cutoff(self) -> time | None: ...


def due_for(received: datetime, procedure: _Limits, cal: WorkCalendar) -> Due:
    """:func:`compute_due` with a catalogue procedure's limit and eligibility flags."""
    return compute_due(
        received,
        same_day=procedure.working_days == 0,
        working_days=procedure.working_days,
        cal=cal,
        no_wait_eligible=procedure.no_wait_day,
        thursday_eligible=procedure.thursday,
        cutoff=procedure.cutoff,
    )
