"""Filing rules: national dossier codes, due dates, form errors, masked logs."""

from __future__ import annotations

import logging
import re
import unicodedata
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import CitizenError
from edge_agent.catalogue import FormError, bundled_catalogue
from edge_agent.dossiers import MAX_PER_DAY, TO_COUNTER, Applicant, DossierDesk, DossierRefused
from edge_agent.due_date import OfficeRules, WorkCalendar, compute_due
from sync.outbox import Outbox
from sync.schemas import SchemaError

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


# -- the shared record schema, enforced before anything is promised (issue 6, items 17 and 6)


@pytest.mark.parametrize(
    ("applicant", "field", "vi"),
    [
        # A card QR can carry ~1,000 characters of name: refused here, never printed.
        (
            Applicant(full_name="Nguyễn " * 35 + "An", id_number=ID),
            "applicant.full_name",
            "«Họ và tên» dài quá 200 ký tự.",
        ),
        (
            Applicant(full_name=NAME, id_number="1" * 5000),
            "applicant.id_number",
            "«Số định danh cá nhân» phải gồm 12 chữ số (CCCD) hoặc 9 chữ số (CMND).",
        ),
        (
            Applicant(full_name=NAME, id_number="08720500123"),
            "applicant.id_number",
            "«Số định danh cá nhân» phải gồm 12 chữ số (CCCD) hoặc 9 chữ số (CMND).",
        ),
        (
            Applicant(full_name="Nguyễn \u202eVăn An", id_number=ID),
            "applicant.full_name",
            "«Họ và tên» có ký tự ẩn hoặc ký tự điều khiển không hợp lệ.",
        ),
        (
            Applicant(full_name=NAME, id_number=ID, address="Phường 1\u200b, Sa Đéc"),
            "applicant.address",
            "«Địa chỉ» có ký tự ẩn hoặc ký tự điều khiển không hợp lệ.",
        ),
        (
            Applicant(full_name=NAME, id_number=ID, phone="gọi tôi"),
            "applicant.phone",
            "«Số điện thoại» chỉ gồm chữ số, có thể bắt đầu bằng dấu +.",
        ),
        (
            Applicant(full_name=NAME, id_number=ID, date_of_birth="28/02/1990"),
            "applicant.date_of_birth",
            "«Ngày sinh» không phải ngày hợp lệ.",
        ),
    ],
)
def test_a_dossier_central_would_refuse_is_refused_at_the_kiosk(
    tmp_path: Path, applicant: Applicant, field: str, vi: str
) -> None:
    desk = _desk(tmp_path)
    now = at("2026-11-26T09:00")
    with pytest.raises(DossierRefused) as err:
        desk.file("2.000884", applicant, {"ten_van_ban": "Giấy uỷ quyền"}, now=now)
    assert err.value.field == field and str(err.value).startswith(f"{field}: ")
    assert err.value.message_vi == vi + TO_COUNTER
    assert desk.outbox.stats().queued == 0  # nothing queued, nothing to print
    assert desk.outbox.conn.execute("SELECT count(*) FROM dossiers").fetchone()[0] == 0
    # The refused filing took no number: the next one is the day's first.
    ok = desk.file(
        "2.000884", Applicant(full_name=NAME, id_number=ID), {"ten_van_ban": "X"}, now=now
    )
    assert ok.code.endswith("-4001")
    desk.outbox.close()


def test_a_form_value_with_a_hidden_character_names_the_catalogue_label(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    with pytest.raises(DossierRefused) as err:
        desk.file(
            "2.000884", Applicant(full_name=NAME, id_number=ID), {"ten_van_ban": "Giấy\u2066 uỷ"}
        )
    assert err.value.field == "form.ten_van_ban"
    assert err.value.message_vi.startswith("«Tên văn bản» có ký tự ẩn")
    desk.outbox.close()


def test_what_the_citizen_or_card_gave_is_normalised_before_the_body_is_built(
    tmp_path: Path,
) -> None:
    desk = _desk(tmp_path)
    decomposed = unicodedata.normalize("NFD", NAME)
    assert decomposed != NAME
    filed = desk.file(
        "2.000884",
        Applicant(
            full_name=f"  {decomposed}\t ",
            id_number=" 0872 0500 1234 ",
            phone="",
            address=unicodedata.normalize("NFD", "Phường 1,\nSa Đéc"),
        ),
        {"ten_van_ban": unicodedata.normalize("NFD", "Giấy uỷ quyền")},
    )
    [record] = desk.outbox.records()
    applicant = record["body"]["applicant"]
    assert applicant == {"full_name": NAME, "id_number": ID, "address": "Phường 1, Sa Đéc"}
    assert record["body"]["form"] == {"ten_van_ban": "Giấy uỷ quyền"}
    assert filed.applicant.full_name == NAME  # the slip prints what was filed
    desk.outbox.close()


def test_old_cmnd_numbers_are_accepted(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    filed = desk.file(
        "2.000884", Applicant(full_name=NAME, id_number="212345678"), {"ten_van_ban": "Giấy"}
    )
    assert desk.outbox.state_of(filed.record_id) == "queued"
    desk.outbox.close()


def test_the_outbox_refuses_any_kind_central_would_refuse(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "k.db", "k-desk-01", min_free_disk_bytes=0)
    for kind, body in [
        ("rating", {"level": "so-so"}),
        ("support", {"message": ""}),
        ("feedback", {"category": "feedback", "message": "a\x1b[2Jb"}),
        ("chunk", {"att": "x"}),
        ("dossier", {"code": "X"}),
        ("complaint", {"message": "x"}),
    ]:
        with pytest.raises(SchemaError):
            ob.add(kind, body)
    assert ob.stats().queued == 0 and ob.records() == []
    ob.close()


def test_a_250_character_name_from_a_card_qr_is_refused_before_anything_is_printed(
    tmp_path: Path,
) -> None:
    """Issue 6, item 17: before, it was filed and printed, then refused by central."""
    from drivers.cccd_qr import parse_cccd_qr
    from drivers.printer import ReceiptPrinter
    from edge_agent.config import AgentConfig
    from edge_agent.receipts import file_and_print
    from firmware_mocks.usb_printer import EmulatedUsbPrinter

    long_name = ("Nguyễn Thị Ngọc Hường " * 12)[:250]
    qr = f"{ID}||{long_name}|01021990|Nữ|Phường 1, TP. Sa Đéc, Đồng Tháp|15082021"
    identity = parse_cccd_qr(qr)
    assert len(identity.full_name) == 250
    applicant = Applicant(
        full_name=identity.full_name,
        id_number=identity.id_number,
        date_of_birth=identity.date_of_birth.isoformat(),
        address=identity.address,
    )
    cfg = AgentConfig.model_validate(
        {
            "kiosk": {"id": "k-desk-01", "agency": "000.00.14.H56", "slot": 4},
            "agent": {"database": str(tmp_path / "k.db"), "receipts_dir": str(tmp_path / "r")},
        }
    )
    desk = _desk(tmp_path)
    usb = EmulatedUsbPrinter()
    printer = ReceiptPrinter("usb://04b8:0e15", spool_dir=tmp_path / "spool", usb_backend=usb)
    with pytest.raises(DossierRefused) as err:
        file_and_print(desk, printer, cfg, "2.000884", applicant, {"ten_van_ban": "Giấy uỷ quyền"})
    assert err.value.field == "applicant.full_name"
    assert err.value.message_vi.startswith("«Họ và tên» dài quá 200 ký tự.")
    assert usb.received == b"" and printer.unprinted() == []
    assert desk.outbox.stats().queued == 0
    desk.outbox.close()
