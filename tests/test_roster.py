"""The duty roster: staff, shifts, who is on duty (real SQLite file)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import audit, backoffice_db, roster
from tests.pg import CentralDb

OFFICE = "000.00.14.H56"
VN = timezone(timedelta(hours=7))


@pytest.fixture
def conn(central_db: CentralDb):
    return central_db.connect()


def add_lan(conn, **kw):
    args = {
        "staff_id": "lan.nguyen",
        "name": "Nguyễn Thị Lan",
        "phone": "0912 345 678",
        "channels": ["desk", "zalo"],
        "email": "lan@example.vn",
    }
    args.update(kw)
    return roster.add_staff(conn, "tester", **args)


def test_staff_added_listed_updated_removed_and_audited(conn) -> None:
    lan = add_lan(conn)
    assert lan.channels == ("desk", "zalo")
    assert [s.id for s in roster.list_staff(conn)] == ["lan.nguyen"]
    add_lan(conn, name="Nguyễn Thị Lan Anh", channels="hotline")
    assert roster.get_staff(conn, "lan.nguyen").name == "Nguyễn Thị Lan Anh"
    assert roster.get_staff(conn, "lan.nguyen").channels == ("hotline",)
    roster.add_shift(
        conn, "tester", staff_id="lan.nguyen", office=OFFICE, start="07:30", end="11:30", weekday=1
    )
    roster.remove_staff(conn, "tester", "lan.nguyen")
    assert roster.list_staff(conn) == []
    assert roster.list_shifts(conn) == []
    assert not roster.get_staff(conn, "lan.nguyen").active
    actions = [e["action"] for e in audit.entries(conn, target="roster:lan.nguyen")]
    assert actions == [
        "roster.staff.remove",
        "roster.shift.add",
        "roster.staff.put",
        "roster.staff.put",
    ]
    assert {e["actor"] for e in audit.entries(conn)} == {"tester"}


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"staff_id": "Lan Nguyen"}, "id"),
        ({"staff_id": ""}, "id"),
        ({"staff_id": "a" * 41}, "id"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Lan\u202e"}, "name"),
        ({"phone": "call me"}, "phone"),
        ({"channels": []}, "channels"),
        ({"channels": ["sms"]}, "channels"),
        ({"email": "not-an-address"}, "email"),
    ],
)
def test_bad_staff_refused_naming_the_field(conn, kw, field) -> None:
    with pytest.raises(roster.RosterError) as err:
        add_lan(conn, **kw)
    assert err.value.field == field
    assert roster.list_staff(conn) == []
    assert audit.entries(conn) == []


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"start": "7:30"}, "start"),
        ({"end": "24:00"}, "end"),
        ({"start": "12:00", "end": "11:00"}, "end"),
        ({"start": "12:00", "end": "12:00"}, "end"),
        ({"weekday": None}, "weekday"),
        ({"weekday": 7}, "weekday"),
        ({"weekday": True}, "weekday"),
        ({"weekday": None, "day": "2026-02-30"}, "day"),
        ({"weekday": 1, "day": "2026-12-01"}, "weekday"),
        ({"office": "bad office"}, "office"),
        ({"staff_id": "nobody"}, "staff"),
    ],
)
def test_bad_shift_refused_naming_the_field(conn, kw, field) -> None:
    add_lan(conn)
    args = {
        "staff_id": "lan.nguyen",
        "office": OFFICE,
        "start": "07:30",
        "end": "11:30",
        "weekday": 1,
    }
    args.update(kw)
    with pytest.raises(roster.RosterError) as err:
        roster.add_shift(conn, "tester", **args)
    assert err.value.field == field
    assert roster.list_shifts(conn) == []


def test_on_duty_by_weekday_date_and_office_clock(conn) -> None:
    add_lan(conn)
    add_lan(conn, staff_id="minh.tran", name="Trần Văn Minh", email=None)
    # Tuesday 2026-12-01 (weekday 1) mornings for Lan; Minh only on that date, afternoon.
    roster.add_shift(
        conn, "t", staff_id="lan.nguyen", office=OFFICE, start="07:30", end="11:30", weekday=1
    )
    roster.add_shift(
        conn, "t", staff_id="minh.tran", office=OFFICE, start="13:00", end="17:00", day="2026-12-01"
    )
    at = datetime(2026, 12, 1, 8, 0, tzinfo=VN)
    assert [s.id for s in roster.on_duty(conn, OFFICE, at)] == ["lan.nguyen"]
    # The same instant in UTC is the same office time.
    assert [s.id for s in roster.on_duty(conn, OFFICE, at.astimezone(UTC))] == ["lan.nguyen"]
    assert roster.on_duty(conn, OFFICE, at.replace(hour=11, minute=30)) == []  # end excluded
    assert [s.id for s in roster.on_duty(conn, OFFICE, at.replace(hour=7, minute=30))] == [
        "lan.nguyen"
    ]
    assert [s.id for s in roster.on_duty(conn, OFFICE, at.replace(hour=14))] == ["minh.tran"]
    assert roster.on_duty(conn, OFFICE, at + timedelta(days=7, hours=6)) == []  # date shift once
    assert [s.id for s in roster.on_duty(conn, OFFICE, at + timedelta(days=7))] == ["lan.nguyen"]
    assert roster.on_duty(conn, "000.00.99.X01", at) == []  # another office
    with pytest.raises(ValueError, match="timezone-aware"):
        roster.on_duty(conn, OFFICE, datetime(2026, 12, 1, 8, 0))


def test_removed_shift_and_unknown_shift(conn) -> None:
    add_lan(conn)
    shift = roster.add_shift(
        conn, "t", staff_id="lan.nguyen", office=OFFICE, start="07:30", end="11:30", weekday=1
    )
    roster.remove_shift(conn, "t", shift.n)
    assert roster.list_shifts(conn) == []
    with pytest.raises(roster.NotFound):
        roster.remove_shift(conn, "t", shift.n)


times = st.integers(0, 24 * 60 - 1).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")
shifts = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from([OFFICE, "000.00.99.X01"]),
    times,
    times,
    st.one_of(
        st.integers(0, 6), st.dates(datetime(2026, 11, 25).date(), datetime(2026, 12, 10).date())
    ),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plan=st.lists(shifts, max_size=12),
    minute=st.integers(0, 16 * 24 * 60),
)
def test_on_duty_matches_a_simple_model(conn, plan, minute) -> None:
    # One database for every example (on both engines): each starts from an empty roster.
    with backoffice_db.transaction(conn):
        conn.execute("DELETE FROM shifts")
        conn.execute("DELETE FROM staff")
    for sid in "abc":
        roster.add_staff(
            conn, "t", staff_id=sid, name=sid.upper(), phone="0900000000", channels=["desk"]
        )
    kept = []
    for sid, office, start, end, when in plan:
        if end <= start:
            with pytest.raises(roster.RosterError):
                roster.add_shift(
                    conn, "t", staff_id=sid, office=office, start=start, end=end, weekday=0
                )
            continue
        kw = {"weekday": when} if isinstance(when, int) else {"day": when.isoformat()}
        roster.add_shift(conn, "t", staff_id=sid, office=office, start=start, end=end, **kw)
        kept.append((sid, office, start, end, when))
    at = datetime(2026, 11, 25, tzinfo=VN) + timedelta(minutes=minute)
    hhmm = at.strftime("%H:%M")
    expected = sorted(
        {
            sid
            for sid, office, start, end, when in kept
            if office == OFFICE
            and start <= hhmm < end
            and (when == at.weekday() if isinstance(when, int) else when == at.date())
        }
    )
    assert [s.id for s in roster.on_duty(conn, OFFICE, at)] == expected
