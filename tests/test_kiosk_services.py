"""The kiosk application's services through KioskApp, over a real kiosk database.

No broker here (the sync is never started): what is checked is what the app
commits to the outbox and what it reads back from the kiosk's cache.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from drivers.receipt import LABEL_BENEFICIARY, PAY_AT_COUNTER, TextBlock, layout_receipt
from drivers.vietqr import parse_payload
from edge_agent import CitizenError, downlink_cache
from edge_agent.app import KioskApp
from edge_agent.cli import main as agent_cli
from edge_agent.devices import DeviceEvent
from edge_agent.receipts import build_receipt
from edge_agent.signature import HandwrittenSignature, RemoteSignatureResult
from sync.outbox import Outbox
from sync.schemas import LOOKUP_CODE_RE
from tests.kiosk import app_config, card, strokes

VN = ZoneInfo("Asia/Ho_Chi_Minh")
COPY_FORM = {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 5, "so_ban": 2}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[KioskApp]:
    a = KioskApp(app_config(tmp_path))
    yield a
    a.stop()  # never started: closes the database all the same


def bodies(app: KioskApp, kind: str) -> list[dict[str, Any]]:
    return [r["body"] for r in app.outbox.records() if r["kind"] == kind]


def fill_cache(app: KioskApp, items: list[tuple[str, str, dict[str, Any]]], replied: float) -> None:
    """What the inbox writes (the contract's tables), written here by hand."""
    with app.outbox.reading() as conn:
        conn.executescript(downlink_cache.CONTRACT_DDL)  # (executescript commits itself)
    with app.outbox.local_write() as conn:
        for cursor, (kind, key, body) in enumerate(items, start=1):
            conn.execute(
                "INSERT OR REPLACE INTO downlink_items VALUES (?, ?, ?, ?, ?)",
                (kind, key, cursor, json.dumps(body, ensure_ascii=False), time.time()),
            )
        conn.execute(
            "INSERT OR REPLACE INTO downlink_state VALUES ('last_reply_at', ?)", (str(replied),)
        )


# -- filing ----------------------------------------------------------------------------


def test_form_fields_the_card_gives_are_filled_not_asked_and_the_card_wins(app: KioskApp) -> None:
    app.handle_device_event(DeviceEvent(device="scanner", kind="identity", identity=card()))
    pre = app.filing.prefill("1.004194")  # Đăng ký thường trú: name and ID number from the card
    typed = [t["field"] for t in pre["to_type"]]
    assert "form.ho_ten_nguoi_yeu_cau" not in typed and "form.so_dinh_danh" not in typed
    assert "form.dia_chi_moi" in typed
    assert pre["form"]["ho_ten_nguoi_yeu_cau"] == "Nguyễn Thị Ngọc Hường"
    assert pre["form"]["so_dinh_danh"] == "********1234"  # masked on the screen
    assert pre["guidance"].startswith("Thủ tục do Công an")  # its guidance, for the screen
    rest = {
        t["field"].removeprefix("form."): "Vợ"
        for t in pre["to_type"]
        if t["field"].startswith("form.") and t.get("type") == "text" and t["required"]
    }
    rest["dia_chi_moi"] = "Số 12, đường Hùng Vương, Phường 1"
    typed_over = {**rest, "so_dinh_danh": "001099000001", "ho_ten_nguoi_yeu_cau": "Người Khác"}
    prepared = app.filing.prepare("1.004194", typed_over, phone="0912345678")
    assert prepared.form["so_dinh_danh"] == "087205001234"  # the card's, not what was typed
    assert prepared.form["ho_ten_nguoi_yeu_cau"] == "Nguyễn Thị Ngọc Hường"


def test_a_card_event_prefills_and_the_filing_carries_fee_signature_and_source(
    app: KioskApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    notice = app.handle_device_event(
        DeviceEvent(device="scanner", kind="identity", identity=card())
    )
    assert notice is not None and notice.kind == "identity"
    assert notice.data["id_masked"] == "********1234" and notice.data["source"] == "qr"
    pre = app.filing.prefill("2.000815")
    assert pre["applicant"]["full_name"] == "Nguyễn Thị Ngọc Hường"
    typed = [t["field"] for t in pre["to_type"]]
    # The card gave name, number, birth date and address: only phone and the form are left.
    assert "applicant.full_name" not in typed and "applicant.id_number" not in typed
    assert typed[0] == "applicant.phone" and "form.so_trang" in typed
    prepared = app.filing.prepare("2.000815", COPY_FORM, phone="0912345678")
    # TT 226/2016: 2 x 2.000 + 3 x 1.000 per copy, 2 copies.
    assert prepared.fee == {"rule": "per-page", "amount_vnd": 14000, "pages": 5, "copies": 2}
    sig = HandwrittenSignature.from_strokes(strokes(), width=400, height=150)
    result = app.filing.file(prepared, signature=sig)
    body = bodies(app, "dossier")[0]
    assert body["code"] == result.code and body["fee_vnd"] == 14000 and body["fee"] == prepared.fee
    assert body["identity_source"] == "qr"
    assert body["applicant"]["phone"] == "0912345678"
    assert body["applicant"]["id_number"] == "087205001234"
    s = body["signature"]
    assert s["method"] == "handwritten" and s["document_sha256"] == prepared.document_sha256
    by_att = {a["att"]: a for a in body["attachments"]}
    assert by_att[s["strokes_att"]]["mime"] == "application/json"
    assert by_att[s["image_att"]]["mime"] == "image/png"
    assert "unconfirmed_before" not in body
    assert result.to_json_dict()["signed"] is True
    # Never the whole ID number in a log line.
    assert "087205001234" not in caplog.text


def test_what_is_signed_is_what_is_filed(app: KioskApp) -> None:
    app.identify(card())
    a = app.filing.prepare("2.000815", COPY_FORM)
    b = app.filing.prepare("2.000815", {**COPY_FORM, "so_trang": 6})
    assert a.document_sha256 != b.document_sha256
    assert app.filing.prepare("2.000815", COPY_FORM).document_sha256 == a.document_sha256


def test_a_remote_signature_goes_into_the_dossier(app: KioskApp) -> None:
    app.identify(card())
    prepared = app.filing.prepare("2.000884", {"ten_van_ban": "Giấy uỷ quyền"})
    remote = RemoteSignatureResult(
        provider="vnpt-smartca",
        transaction="tx-123",
        value_b64="c2lnbmF0dXJl",
        certificate_b64="Y2VydA==",
        signed_at=datetime(2026, 12, 1, 9, 30, tzinfo=VN),
    )
    app.filing.file(prepared, signature=remote)
    s = bodies(app, "dossier")[0]["signature"]
    assert s == {
        "method": "remote",
        "document_sha256": prepared.document_sha256,
        "signed_at": "2026-12-01T09:30:00+07:00",
        "provider": "vnpt-smartca",
        "transaction": "tx-123",
        "value": "c2lnbmF0dXJl",
        "certificate": "Y2VydA==",
    }
    bad = RemoteSignatureResult(
        provider="vnpt-smartca",
        transaction="tx-124",
        value_b64="not base64!",
        certificate_b64="Y2VydA==",
        signed_at=datetime(2026, 12, 1, 9, 30, tzinfo=VN),
    )
    with pytest.raises(CitizenError, match="value_b64: not valid base64"):
        app.filing.file(prepared, signature=bad)
    assert len(bodies(app, "dossier")) == 1


def test_without_a_card_the_citizen_types_and_errors_name_the_field(app: KioskApp) -> None:
    from edge_agent.dossiers import Applicant

    with pytest.raises(CitizenError) as no_one:
        app.filing.prepare("2.000884", {"ten_van_ban": "Giấy uỷ quyền"})
    assert "quét mã QR" in no_one.value.message_vi
    with pytest.raises(CitizenError) as bad_id:
        app.filing.prepare(
            "2.000884",
            {"ten_van_ban": "Giấy uỷ quyền"},
            applicant=Applicant(full_name="Lê Văn Tám", id_number="12345"),
        )
    assert "«Số định danh cá nhân» phải gồm 12 chữ số" in bad_id.value.message_vi
    with pytest.raises(CitizenError) as missing:
        app.identify(card())
        app.filing.prepare("1.004873", {"muc_dich": "Đăng ký kết hôn"})
    assert "«Tình trạng hôn nhân»" in missing.value.message_vi or "Vui lòng" in (
        missing.value.message_vi
    )
    assert bodies(app, "dossier") == []


def test_the_unconfirmed_filing_is_reported_after_a_restart_and_marks_the_next(
    tmp_path: Path,
) -> None:
    cfg = app_config(tmp_path)
    first = KioskApp(cfg)
    first.identify(card())
    code = first.filing.file(first.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"})).code
    # "Crash": the process is gone before the screen confirmed the code was shown.
    first.outbox.close()

    again = KioskApp(cfg)
    try:
        shown = again.filing.last_unconfirmed()
        assert shown is not None and shown.code == code
        assert again.health()["last_unconfirmed"]["code"] == code
        again.identify(card())
        # Another procedure is not a duplicate.
        other = again.filing.file(
            again.filing.prepare(
                "1.004873", {"muc_dich": "Đăng ký kết hôn", "tinh_trang": "Chưa kết hôn"}
            )
        )
        assert other.filed.unconfirmed_before is None
        again.filing.confirm_shown(other.code)
        second = again.filing.file(again.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"}))
        assert second.filed.unconfirmed_before == code
        dossier = next(b for b in bodies(again, "dossier") if b["code"] == second.code)
        assert dossier["unconfirmed_before"] == code
        # The earlier one is superseded; the new one waits for its confirmation.
        assert again.filing.last_unconfirmed().code == second.code  # type: ignore[union-attr]
        assert again.filing.confirm_shown(second.code) is True
        assert again.filing.confirm_shown(second.code) is False  # once
        assert again.filing.last_unconfirmed() is None
        # Someone else filing the same procedure is not marked.
        again.identify(card("Trần Văn Ổn", "087205009999"))
        third = again.filing.file(again.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"}))
        assert third.filed.unconfirmed_before is None
    finally:
        again.outbox.close()


def test_several_threads_file_and_ask_at_once(app: KioskApp) -> None:
    from edge_agent.dossiers import Applicant

    errors: list[BaseException] = []
    codes: list[str] = []
    lookups: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def filer(t: int) -> None:
        start.wait()
        for i in range(25):
            try:
                p = app.filing.prepare(
                    "2.000884",
                    {"ten_van_ban": f"Văn bản {t}-{i}"},
                    applicant=Applicant(full_name="Đặng Quốc Việt", id_number=f"0872050{t}{i:04d}"),
                )
                r = app.filing.file(p)
                with lock:
                    codes.append(r.code)
            except BaseException as exc:
                errors.append(exc)

    def asker(t: int) -> None:
        start.wait()
        for i in range(25):
            try:
                s = app.feedback.submit("question", f"Câu hỏi {t}-{i}: lệ phí bao nhiêu?")
                h = app.support.request_help(message=f"Cần giúp {t}-{i}")
                with lock:
                    lookups.extend([s.lookup_code, h.lookup_code])
            except BaseException as exc:
                errors.append(exc)

    threads = [
        threading.Thread(target=f, args=(t,)) for t, f in enumerate([filer, filer, asker, asker])
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[:3]
    assert len(codes) == len(set(codes)) == 50
    assert sorted(int(c[-4:]) for c in codes) == list(range(1001, 1051))
    assert len(lookups) == len(set(lookups)) == 100
    assert all(LOOKUP_CODE_RE.match(c) for c in lookups)
    seqs = [r["seq"] for r in app.outbox.records()]
    assert seqs == list(range(1, len(seqs) + 1))


# -- receipts and payment ------------------------------------------------------------------


def test_no_payment_code_to_the_placeholder_account(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    cfg = app_config(tmp_path, payment={})
    assert cfg.payment.is_placeholder
    app = KioskApp(cfg)
    try:
        assert "placeholder 970415/0000000000" in caplog.text  # at start
        app.identify(card())
        result = app.filing.file(app.filing.prepare("2.000815", COPY_FORM))
        data = build_receipt(result.filed, cfg.kiosk, cfg.payment)
        assert data.fee_vnd == 14000 and data.payment is None
        texts = [b.value for b in layout_receipt(data).blocks if isinstance(b, TextBlock)]
        assert PAY_AT_COUNTER in texts
        assert app.health()["payment_placeholder"] is True
    finally:
        app.outbox.close()
    cfg_path = tmp_path / "k-app-01.toml"
    out = CliRunner().invoke(agent_cli, ["check-config", "--config", str(cfg_path)])
    assert out.exit_code == 0 and "placeholder 970415/0000000000" in out.output


def test_the_office_account_gets_a_vietqr_with_fee_code_and_beneficiary(app: KioskApp) -> None:
    app.identify(card())
    result = app.filing.file(app.filing.prepare("2.000815", COPY_FORM))
    data = build_receipt(result.filed, app.cfg.kiosk, app.cfg.payment)
    assert data.payment is not None
    qr = parse_payload(data.payment)
    assert (qr.bank_bin, qr.account, qr.amount_vnd) == ("970436", "0011002345678", 14000)
    assert qr.purpose is not None and result.code in qr.purpose
    blocks = layout_receipt(data).blocks
    beneficiary = [b for b in blocks if isinstance(b, TextBlock) and b.label == LABEL_BENEFICIARY]
    assert beneficiary and beneficiary[0].value == "UBND PHUONG 1"


# -- support, feedback, ratings, tracking, info --------------------------------------------


def test_help_and_home_visit_requests_are_queued_with_lookup_codes(app: KioskApp) -> None:
    app.identify(card())
    help_ticket = app.support.request_help(message="Tôi không biết chụp giấy tờ")
    assert help_ticket.lookup_code.startswith("HO-") and help_ticket.lookup_code.endswith("-1001")
    visit = app.support.request_home_visit(
        full_name="Huỳnh Văn Tư",
        phone="0912 345 678",
        address="Ấp 3, xã Tân Khánh Đông",
        reason="Người cao tuổi, không đi lại được",
    )
    assert visit.lookup_code.startswith("TN-")
    help_body, visit_body = bodies(app, "support")
    assert help_body["type"] == "help" and help_body["full_name"] == "Nguyễn Thị Ngọc Hường"
    assert visit_body["type"] == "home-visit" and visit_body["address"].startswith("Ấp 3")
    with pytest.raises(CitizenError) as missing:
        app.support.request_home_visit(full_name="A", phone="0912345678", address=" ", reason="x")
    assert missing.value.message_vi == "Vui lòng nhập «Địa chỉ»."
    # No reply yet: the hotline.
    status = app.support.status(help_ticket.lookup_code)
    assert status.status == "waiting" and "0277 3861 234" in status.message
    fill_cache(
        app,
        [
            (
                "support-reply",
                help_ticket.lookup_code,
                {
                    "lookup_code": help_ticket.lookup_code,
                    "status": "assigned",
                    "staff_name": "Chị Lan",
                    "channel": "desk",
                    "hotline": None,
                    "message": "Chị Lan đang đến ki-ốt.",
                    "at": "2026-12-01T09:00:00+07:00",
                },
            )
        ],
        time.time(),
    )
    status = app.support.status(help_ticket.lookup_code)
    assert (status.status, status.staff_name, status.message) == (
        "assigned",
        "Chị Lan",
        "Chị Lan đang đến ki-ốt.",
    )


def test_feedback_gets_codes_and_answers_come_from_the_cache(app: KioskApp) -> None:
    q = app.feedback.submit("question", "Làm giấy khai sinh cần gì?", contact="0912345678")
    p = app.feedback.submit("petition", "Đề nghị thêm ghế chờ.")
    f = app.feedback.submit("feedback", "Máy in chậm.")
    assert [q.lookup_code[:2], p.lookup_code[:2], f.lookup_code[:2]] == ["HT", "KN", "PA"]
    assert app.feedback.answer_for(q.lookup_code.lower()).answered is False
    fill_cache(
        app,
        [
            (
                "answer",
                q.lookup_code,
                {
                    "lookup_code": q.lookup_code,
                    "category": "question",
                    "answer": "Mang theo giấy chứng sinh.\nKhông mất phí.",
                    "answered_at": "2026-12-01T10:00:00+07:00",
                    "answered_by": "Anh Minh",
                },
            )
        ],
        time.time(),
    )
    answer = app.feedback.answer_for(q.lookup_code)
    assert answer.answered and answer.answer == "Mang theo giấy chứng sinh.\nKhông mất phí."
    with pytest.raises(CitizenError):
        app.feedback.answer_for("XX-1")
    with pytest.raises(CitizenError) as empty:
        app.feedback.submit("question", "   ")
    assert empty.value.message_vi == "Vui lòng nhập «Nội dung»."


def test_one_rating_per_filing(app: KioskApp) -> None:
    app.identify(card())
    code = app.filing.file(app.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"})).code
    app.ratings.rate("rat_hai_long", dossier_code=code, reason="Nhanh")
    with pytest.raises(CitizenError, match="already rated"):
        app.ratings.rate("khong_hai_long", dossier_code=code)
    with pytest.raises(CitizenError, match="not filed at this kiosk"):
        app.ratings.rate("hai_long", dossier_code="000.00.14.H56-261201-9999")
    with pytest.raises(CitizenError):
        app.ratings.rate("tuyet_voi")
    assert bodies(app, "rating") == [
        {"level": "rat_hai_long", "dossier_code": code, "reason": "Nhanh"}
    ]


def test_tracking_by_typed_code_scanned_slip_and_offline_age(app: KioskApp) -> None:
    app.identify(card())
    mine = app.filing.file(app.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"})).code
    own = app.tracking.lookup(mine)
    assert own.found and own.source == "kiosk" and own.state == "submitted"
    other = "000.00.14.H56-261130-2001"  # filed at another kiosk of the office
    assert not app.tracking.lookup(other).found
    fill_cache(
        app,
        [
            (
                "dossier-status",
                other,
                {
                    "code": other,
                    "state": "result-ready",
                    "paid": True,
                    "paid_amount_vnd": 10000,
                    "paid_at": "2026-11-30T10:00:00+07:00",
                    "portal_code": None,
                    "note": "Mời Ông/Bà đến nhận kết quả.",
                    "changed_at": "2026-12-01T08:00:00+07:00",
                    "due": None,
                },
            )
        ],
        time.time() - 3 * 86400,
    )
    found = app.tracking.lookup(f"  {other} ")
    assert found.found and found.source == "office" and found.paid is True
    assert "Đã có kết quả" in found.screen_text and "3 ngày" in found.screen_text
    # The slip's QR through the HID scanner: a notice for the screen.
    notice = app.handle_device_event(DeviceEvent(device="hid_scanner", kind="code", text=other))
    assert (
        notice is not None and notice.kind == "tracking" and notice.data["state"] == "result-ready"
    )
    bad = app.handle_device_event(DeviceEvent(device="hid_scanner", kind="code", text="hello"))
    assert (
        bad is not None and bad.kind == "error" and "Mã hồ sơ không đúng" in bad.data["message_vi"]
    )


def test_faq_search_forgives_missing_diacritics_and_hides_withdrawn(app: KioskApp) -> None:
    fill_cache(
        app,
        [
            (
                "faq",
                "f1",
                {
                    "id": "f1",
                    "question": "Đăng ký kết hôn cần giấy tờ gì?",
                    "answer": "CCCD của hai bên.",
                    "tags": ["hộ tịch"],
                    "procedure": None,
                    "published_at": "2026-11-01T08:00:00+07:00",
                    "withdrawn": False,
                },
            ),
            (
                "faq",
                "f2",
                {
                    "id": "f2",
                    "question": "Lệ phí chứng thực?",
                    "answer": "2.000 đồng/trang",
                    "tags": [],
                    "procedure": "2.000815",
                    "published_at": "2026-11-02T08:00:00+07:00",
                    "withdrawn": True,
                },
            ),
            (
                "news",
                "n1",
                {
                    "id": "n1",
                    "title": "Nghỉ Tết",
                    "body": "Nghỉ từ 14/2.",
                    "published_at": "2026-12-01T08:00:00+07:00",
                    "withdrawn": False,
                },
            ),
        ],
        time.time(),
    )
    assert [f["id"] for f in app.info.faqs("ket hon")] == ["f1"]
    assert [f["id"] for f in app.info.faqs("HO TICH")] == ["f1"]
    assert app.info.faqs("chung thuc") == []  # withdrawn
    assert [n["id"] for n in app.info.news()] == ["n1"]
    # Searched like the catalogue (edge_agent.search): no diacritics; news by its words.
    assert [f["id"] for f in app.info.faqs("dang ky ket hon")] == ["f1"]
    assert [n["id"] for n in app.info.news("nghi tet")] == ["n1"]
    assert app.info.news("khai sinh") == []


def test_lookup_codes_stop_at_999_a_day_and_slots_never_collide(tmp_path: Path) -> None:
    from edge_agent.lookup_codes import SCHEMA, next_code

    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.executescript(SCHEMA)
    day = datetime(2026, 12, 1, tzinfo=VN)
    slot1 = [next_code(conn, "question", day, 1) for _ in range(999)]
    assert slot1[0] == "HT-261201-1001" and slot1[-1] == "HT-261201-1999"
    with pytest.raises(CitizenError, match="daily limit"):
        next_code(conn, "question", day, 1)
    conn2 = sqlite3.connect(tmp_path / "y.db", isolation_level=None)
    conn2.executescript(SCHEMA)
    slot2 = {next_code(conn2, "question", day, 2) for _ in range(999)}
    assert not slot2 & set(slot1)
    assert next_code(conn, "help", day, 1) == "HO-261201-1001"  # per prefix


def test_the_outbox_of_the_app_is_the_one_writer(app: KioskApp) -> None:
    assert app.sync.wake in app.outbox.on_commit
    assert isinstance(app.outbox, Outbox)


def test_an_mrz_card_has_no_address_so_the_citizen_types_it(app: KioskApp) -> None:
    from dataclasses import replace

    app.identify(replace(card(source="mrz"), address=None))
    to_type = {t["field"]: t for t in app.filing.prefill("2.000884")["to_type"]}
    assert to_type["applicant.address"]["required"] is False
    assert "applicant.full_name" not in to_type
    prepared = app.filing.prepare(
        "2.000884", {"ten_van_ban": "Hợp đồng"}, address="Ấp 1, xã Tân Phú Đông"
    )
    assert prepared.identity_source == "mrz"
    assert prepared.applicant.address == "Ấp 1, xã Tân Phú Đông"
    # What the card gives wins over typing.
    app.identify(card())
    p2 = app.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"}, address="somewhere else")
    assert p2.applicant.address == "Phường 1, TP. Sa Đéc, Đồng Tháp"


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ("x" * 4001, "«Nội dung» dài quá 4000 ký tự."),
        ("Hồ sơ \u202egnos\u202c của tôi", "«Nội dung» có ký tự ẩn"),
        ("", "Vui lòng nhập «Nội dung»."),
    ],
)
def test_bad_text_is_refused_naming_the_field_and_nothing_is_queued(
    app: KioskApp, message: str, says: str
) -> None:
    with pytest.raises(CitizenError) as exc:
        app.feedback.submit("petition", message)
    assert says in exc.value.message_vi
    with pytest.raises(CitizenError):
        app.support.request_help(message=message or "\u0007")
    assert app.outbox.records() == []
    # The refused attempts used no lookup code: the next one is the first of the day.
    assert app.feedback.submit("petition", "Đề nghị.\nCảm ơn.").lookup_code.endswith("-1001")
    assert bodies(app, "feedback")[0]["message"] == "Đề nghị.\nCảm ơn."


def test_a_flood_of_help_requests_stops_at_the_daily_limit(app: KioskApp) -> None:
    for _ in range(999):
        app.support.request_help(source="button")
    with pytest.raises(CitizenError) as exc:
        app.support.request_help(source="button")
    assert "đến quầy Một cửa" in exc.value.message_vi
    assert len(bodies(app, "support")) == 999


def test_the_technician_lists_unconfirmed_filings(tmp_path: Path) -> None:
    cfg = app_config(tmp_path)
    app = KioskApp(cfg)
    app.identify(card())
    code = app.filing.file(app.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"})).code
    shown = app.filing.file(
        app.filing.prepare(
            "1.001193",
            {
                "ho_ten_tre": "Trần Gia Bảo",
                "ngay_sinh_tre": "2026-11-20",
                "gioi_tinh_tre": "Nam",
                "noi_sinh": "Bệnh viện Sa Đéc",
                "quan_he": "Mẹ",
            },
        )
    ).code
    app.filing.confirm_shown(shown)
    app.outbox.close()
    out = CliRunner().invoke(
        agent_cli, ["filing", "unconfirmed", "--config", str(tmp_path / "k-app-01.toml")]
    )
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert [line["code"] for line in lines] == [code]
    assert lines[0]["applicant_name"] == "Nguyễn Thị Ngọc Hường" and lines[0]["printed"] is False


FILER = """
import os, signal, sys
from edge_agent.app import KioskApp
from edge_agent.config import load_agent_config
from tests.kiosk import card
app = KioskApp(load_agent_config(sys.argv[1], {"payment.bank_bin": "970436",
               "payment.account": "0011002345678"}))
app.identify(card())
result = app.filing.file(app.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"}))
print(result.code, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # killed after the commit, before the screen showed it
"""


def test_a_filer_killed_before_the_code_was_shown(tmp_path: Path) -> None:
    import subprocess
    import sys

    cfg = app_config(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", FILER, str(tmp_path / "k-app-01.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == -9, proc.stderr
    code = proc.stdout.split()[0]
    app = KioskApp(cfg)
    try:
        unconfirmed = app.filing.last_unconfirmed()
        assert unconfirmed is not None and unconfirmed.code == code
        app.identify(card())
        again = app.filing.file(app.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"}))
        assert again.filed.unconfirmed_before == code
    finally:
        app.stop()
