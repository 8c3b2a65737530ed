"""Due dates on the office's working-day calendar.

Rules (shared/reference/one-stop-office-facts.md, section 3):
- limits run from receipt of a complete dossier, in working days; a dossier
  received after the cut-off (15:00) or on a day off counts as received at the
  start of the next working day;
- a deadline never falls on a day off (weekends, Vietnamese public holidays
  from the ``holidays`` package, plus the office's own override list);
  make-up Saturdays (``weekend_workdays``) are working days;
- the no-wait day: on the configured weekdays (Tuesday, Friday) a procedure
  whose limit is one of the configured lengths (3, 5, 7 working days) is
  settled the same day;
- Thursday, no appointment: on the configured weekdays every dossier is
  settled while the citizen waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

import holidays


@lru_cache(maxsize=32)
def _vn_holidays(year: int) -> tuple[frozenset[date], frozenset[date]]:
    h: Any = holidays.country_holidays("VN", years=[year])
    workdays = frozenset(d for d in getattr(h, "weekend_workdays", ()) if d.year == year)
    return frozenset(h.keys()), workdays


@dataclass(frozen=True, kw_only=True)
class OfficeRules:
    cutoff: time = time(15, 0)
    return_time: time = time(16, 0)
    no_wait_weekdays: frozenset[int] = frozenset({1, 4})  # Monday = 0: Tuesday, Friday
    no_wait_limits: frozenset[int] = frozenset({3, 5, 7})
    same_day_weekdays: frozenset[int] = frozenset({3})  # Thursday
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

    def next_working_day(self, d: date) -> date:
        d += timedelta(days=1)
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def add_working_days(self, start: date, n: int) -> date:
        d = start
        for _ in range(n):
            d = self.next_working_day(d)
        return d


@dataclass(frozen=True, kw_only=True)
class Due:
    at: datetime
    same_day: bool
    rule: str


def effective_receipt_day(received: datetime, cal: WorkCalendar) -> tuple[date, bool]:
    """The working day the clock starts on, and whether it is the filing day itself."""
    day = received.date()
    if cal.is_working_day(day) and received.time() < cal.rules.cutoff:
        return day, True
    return cal.next_working_day(day), False


def compute_due(received: datetime, *, same_day: bool, working_days: int, cal: WorkCalendar) -> Due:
    day, today = effective_receipt_day(received, cal)
    rt = cal.rules.return_time
    tz = received.tzinfo

    def at(d: date) -> datetime:
        return datetime.combine(d, rt, tzinfo=tz)

    weekday = day.weekday()
    if same_day or working_days == 0:
        return Due(at=at(day), same_day=today, rule="same-day")
    if weekday in cal.rules.same_day_weekdays:
        return Due(at=at(day), same_day=today, rule="thursday-no-appointment")
    if weekday in cal.rules.no_wait_weekdays and working_days in cal.rules.no_wait_limits:
        return Due(at=at(day), same_day=today, rule="no-wait-day")
    return Due(at=at(cal.add_working_days(day, working_days)), same_day=False, rule="working-days")
