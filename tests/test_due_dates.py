"""Due-date rules per office: Thursday and no-wait eligibility, Tết, office days off, config."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.catalogue import bundled_catalogue
from edge_agent.config import AgentConfig
from edge_agent.due_date import OfficeRules, WorkCalendar, compute_due, due_for
from sync.config import ConfigError, load

VN = ZoneInfo("Asia/Ho_Chi_Minh")
CAL = WorkCalendar(OfficeRules())
CAT = bundled_catalogue()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=VN)


@pytest.mark.parametrize(
    ("code", "received", "due", "spot", "rule"),
    [
        # Friday 13/02/2026 10:30, the last working day before Tết (16-20/02 off).
        ("1.004873", "2026-02-13T10:30", "2026-02-13", True, "no-wait-day"),  # 3 WD, Friday
        ("2.001035", "2026-02-13T10:30", "2026-02-24", False, "working-days"),  # 2 WD over Tết
        ("2.000815", "2026-02-13T10:30", "2026-02-13", True, "same-day"),
        ("1.004194", "2026-02-13T10:30", "2026-02-13", True, "no-wait-day"),  # 7 WD
        ("1.001776", "2026-02-13T10:30", "2026-03-13", False, "working-days"),  # 15 WD
        # After the cut-off on the eve of Tết: counted from Monday 23/02.
        ("1.004873", "2026-02-13T15:00", "2026-02-26", False, "working-days"),
        ("2.000815", "2026-02-13T16:00", "2026-02-23", False, "same-day"),
        # Thursday 26/11/2026: settled while the citizen waits for 1-5 day procedures ...
        ("1.004873", "2026-11-26T10:00", "2026-11-26", True, "thursday-no-appointment"),
        ("2.001035", "2026-11-26T10:00", "2026-11-26", True, "thursday-no-appointment"),
        # ... not for longer ones ...
        ("1.004194", "2026-11-26T10:00", "2026-12-07", False, "working-days"),
        # ... and not for one filed Wednesday evening (counted from Thursday, + 3).
        ("1.004873", "2026-11-25T17:00", "2026-12-01", False, "working-days"),
        # Filed on a Saturday: counted from Monday; Monday is no no-wait day.
        ("1.004873", "2026-11-28T09:00", "2026-12-03", False, "working-days"),
        # Tuesday is a no-wait day for 3/5/7: 01/12/2026.
        ("1.004884", "2026-12-01T09:00", "2026-12-01", True, "no-wait-day"),
        # 2-day procedure on a Tuesday: not in no_wait_limits.
        ("2.001035", "2026-12-01T09:00", "2026-12-03", False, "working-days"),
    ],
)
def test_named_cases(code: str, received: str, due: str, spot: bool, rule: str) -> None:
    d = due_for(at(received), CAT.get(code), CAL)
    assert (d.at.date().isoformat(), d.on_the_spot, d.rule) == (due, spot, rule), d.reason
    assert d.reason and d.reason_vi
    if d.rule == "working-days" and "2026-02-1" in received:
        assert "Lunar New Year" in d.reason and "Tết" in d.reason_vi


def test_the_thursday_rule_needs_the_procedure_flag_and_the_office_limits() -> None:
    thursday = at("2026-11-26T10:00")
    assert (
        compute_due(thursday, same_day=False, working_days=3, cal=CAL, thursday_eligible=False).rule
        == "working-days"
    )
    office = WorkCalendar(OfficeRules(thursday_limits=frozenset({1})))
    assert compute_due(thursday, same_day=False, working_days=3, cal=office).rule == "working-days"
    none = WorkCalendar(OfficeRules(thursday_weekdays=frozenset()))
    assert compute_due(thursday, same_day=False, working_days=1, cal=none).rule == "working-days"


def test_office_days_off_and_make_up_days() -> None:
    rules = OfficeRules(
        extra_holidays=frozenset({date(2026, 11, 27)}),
        extra_workdays=frozenset({date(2026, 11, 28)}),
    )
    cal = WorkCalendar(rules)
    # Thursday 26/11 after hours, 1 WD: Friday 27 is off, Saturday 28 is worked.
    d = compute_due(at("2026-11-26T15:30"), same_day=False, working_days=1, cal=cal)
    assert d.at.date() == date(2026, 11, 30)  # received (counted) Saturday 28, +1 = Monday 30
    assert cal.is_working_day(date(2026, 11, 28)) and not cal.is_working_day(date(2026, 11, 27))
    # The national make-up Saturday from the holidays package (22/08/2026).
    assert CAL.is_working_day(date(2026, 8, 22))


@settings(max_examples=300, deadline=None)
@given(
    day=st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31)),
    minutes=st.integers(min_value=0, max_value=24 * 60 - 1),
    code=st.sampled_from(sorted(CAT.procedures)),
)
def test_properties_of_every_due_date(day: date, minutes: int, code: str) -> None:
    received = datetime.combine(day, datetime.min.time(), tzinfo=VN) + timedelta(minutes=minutes)
    proc = CAT.get(code)
    d = due_for(received, proc, CAL)
    assert CAL.is_working_day(d.at.date())
    assert d.at.date() >= received.date()
    if d.on_the_spot:
        assert d.at.date() == received.date() and CAL.is_working_day(received.date())
        assert received.time() < CAL.rules.cutoff
    if d.rule == "thursday-no-appointment":
        assert received.weekday() == 3 and 1 <= proc.working_days <= 5 and proc.thursday
    if d.rule == "no-wait-day":
        assert received.weekday() in (1, 4) and proc.working_days in (3, 5, 7)
    if d.rule == "working-days":
        # Never later than the limit counted from the next working day.
        start = CAL.next_working_day(received.date())
        assert d.at.date() <= CAL.add_working_days(start, proc.working_days)


def config(office: str, tmp_path: object) -> AgentConfig:
    from pathlib import Path

    p = Path(str(tmp_path)) / "agent.toml"
    p.write_text(
        '[kiosk]\nid = "k1"\nagency = "000.00.14.H56"\nslot = 1\n[office]\n' + office,
        encoding="utf-8",
    )
    return load(AgentConfig, p)


def test_office_section_builds_the_rules(tmp_path: object) -> None:
    cfg = config(
        'cutoff = "16:30"\nno_wait_weekdays = ["Monday"]\nthursday_limits = [1, 2]\n'
        "extra_holidays = [2026-12-31]\nextra_workdays = [2026-12-26]\n",
        tmp_path,
    )
    r = cfg.office.rules()
    assert r.cutoff.hour == 16 and r.no_wait_weekdays == {0} and r.thursday_limits == {1, 2}
    assert r.extra_holidays == {date(2026, 12, 31)} and r.extra_workdays == {date(2026, 12, 26)}


@pytest.mark.parametrize(
    ("office", "message"),
    [
        ('cutoff = "25:00"', "office.cutoff"),
        ('no_wait_weekdays = ["funday"]', "unknown weekday 'funday'"),
        ("thursday_limits = [0]", "from 1 to 365"),
        ("extra_holidays = [2026-12-31]\nextra_workdays = [2026-12-31]", "in both"),
        ('extra_holidays = ["31/12/2026"]', "office.extra_holidays"),
        ("thursday = true", "office.thursday"),
    ],
)
def test_office_section_errors_name_the_key(office: str, message: str, tmp_path: object) -> None:
    with pytest.raises(ConfigError) as err:
        config(office, tmp_path)
    assert message in str(err.value)
