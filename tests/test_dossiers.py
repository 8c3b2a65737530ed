"""Filing rules: national dossier codes, due dates, form errors, masked logs."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import CitizenError
from edge_agent.catalogue import FormError, bundled_catalogue
from edge_agent.dossiers import MAX_PER_DAY, Applicant, DossierDesk
from edge_agent.due_date import OfficeRules, WorkCalendar, compute_due
from sync.outbox import Outbox

VN = ZoneInfo("Asia/Ho_Chi_Minh")
CAL = WorkCalendar(OfficeRules())
NAME = "Nguyễn Thị Ngọc Hường"
ID = "087205001234"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=VN)


@pytest.mark.parametrize(
    ("received", "same_day", "days", "due", "rule"),
    [
        # Monday, 3 working days; Tuesday 24/11/2026 is Ngày Văn hóa Việt Nam (a day off).
        ("2026-11-23T10:00", False, 3, "2026-11-27", "working-days"),
        # Thursday: settled while the citizen waits, whatever the limit.
        ("2026-11-26T10:00", False, 3, "2026-11-26", "thursday-no-appointment"),
        # Friday is a no-wait day for 3/5/7-day procedures ...
        ("2026-11-27T10:00", False, 5, "2026-11-27", "no-wait-day"),
        # ... but not for other limits.
        ("2026-11-27T10:00", False, 2, "2026-12-01", "working-days"),
        # After 15:00 the clock starts the next working day (Monday 30/11), + 3 = Thursday.
        ("2026-11-27T15:30", False, 3, "2026-12-03", "working-days"),
        # Same-day procedure after 15:00: the next working day.
        ("2026-11-27T15:30", True, 0, "2026-11-30", "same-day"),
        # Filed on the eve of Tết after hours: the clock starts after the holidays.
        ("2026-02-13T16:00", False, 3, "2026-02-26", "working-days"),
    ],
)
def test_due_dates(received: str, same_day: bool, days: int, due: str, rule: str) -> None:
    d = compute_due(at(received), same_day=same_day, working_days=days, cal=CAL)
    assert d.at.date().isoformat() == due and d.rule == rule


@settings(max_examples=300, deadline=None)
@given(
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)),
    minutes=st.integers(min_value=0, max_value=24 * 60 - 1),
    same_day=st.booleans(),
    days=st.sampled_from([0, 1, 2, 3, 5, 7, 15]),
)
def test_a_due_date_is_a_working_day_and_never_before_filing(
    day: date, minutes: int, same_day: bool, days: int
) -> None:
    received = datetime.combine(day, datetime.min.time(), tzinfo=VN) + timedelta(minutes=minutes)
    due = compute_due(received, same_day=same_day, working_days=days, cal=CAL)
    assert CAL.is_working_day(due.at.date())
    assert due.at.date() >= received.date()
    if due.same_day:
        assert due.at.date() == received.date()


def _desk(tmp_path: Path, slot: int = 4) -> DossierDesk:
    return DossierDesk(
        Outbox(tmp_path / "k.db", "k-desk-01", min_free_disk_bytes=0),
        bundled_catalogue(),
        CAL,
        agency="000.00.14.H56",
        slot=slot,
        tz=VN,
    )


def test_codes_are_national_shape_with_the_kiosk_slot(tmp_path: Path) -> None:
    desk = _desk(tmp_path, slot=4)
    now = at("2026-11-26T09:00")
    codes = [
        desk.file(
            "2.000884",
            Applicant(full_name=NAME, id_number=ID),
            {"ten_van_ban": "Giấy uỷ quyền"},
            now=now,
        ).code
        for _ in range(3)
    ]
    assert codes == [f"000.00.14.H56-261126-{4000 + n}" for n in (1, 2, 3)]
    assert all(re.fullmatch(r"[0-9A-Z.]+-\d{6}-\d{4}", c) for c in codes)
    next_day = desk.file(
        "2.000884",
        Applicant(full_name=NAME, id_number=ID),
        {"ten_van_ban": "Giấy uỷ quyền"},
        now=now + timedelta(days=1),
    )
    assert next_day.code == "000.00.14.H56-261127-4001"  # the daily sequence restarts
    desk.outbox.close()


def test_daily_limit_refuses_with_a_message_and_keeps_the_rest(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    now = at("2026-11-26T09:00")
    desk.outbox.conn.execute(
        "INSERT INTO daily_counter (day, n) VALUES ('261126', ?)", (MAX_PER_DAY,)
    )
    with pytest.raises(CitizenError) as err:
        desk.file(
            "2.000884",
            Applicant(full_name=NAME, id_number=ID),
            {"ten_van_ban": "Giấy uỷ quyền"},
            now=now,
        )
    assert "999" in str(err.value) and "quầy Một cửa" in err.value.message_vi
    assert desk.outbox.stats().queued == 0
    desk.outbox.close()


def test_form_errors_name_the_field_and_the_limit(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    with pytest.raises(FormError) as err:
        desk.file(
            "2.000815",
            Applicant(full_name=NAME, id_number=ID),
            {"ten_giay_to": "Bằng", "so_trang": 0, "so_ban": 1},
        )
    assert err.value.field == "so_trang" and "between 1 and 500" in str(err.value)
    assert err.value.message_vi == "«Số trang» phải từ 1 đến 500."
    with pytest.raises(FormError) as missing:
        desk.file("2.000884", Applicant(full_name=NAME, id_number=ID), {})
    assert missing.value.field == "ten_van_ban"
    assert missing.value.message_vi == "Vui lòng nhập «Tên văn bản»."
    desk.outbox.close()


def test_logs_carry_only_the_masked_id_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    desk = _desk(tmp_path)
    with caplog.at_level(logging.DEBUG):
        filed = desk.file(
            "2.000884", Applicant(full_name=NAME, id_number=ID), {"ten_van_ban": "Giấy uỷ quyền"}
        )
    assert "********1234" in caplog.text and ID not in caplog.text
    assert ID not in repr(filed)  # not even a repr of the result leaks it
    desk.outbox.close()
