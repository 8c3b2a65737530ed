"""Central's inquiries and answers, FAQ and news, and the ratings report, on real databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from central import audit, downlink_log
from central.answers import answer, get_inquiry, list_inquiries, response_times
from central.backoffice_db import Target
from central.content import (
    list_content,
    load_file,
    publish_faq,
    publish_news,
    withdraw_faq,
    withdraw_news,
)
from central.reports import dossier_counts, ratings
from central.staff_text import BackofficeError, NotFound
from tests.backoffice_records import AGENCY, OTHER_AGENCY, Kiosk, dossier_body
from tests.pg import CentralDb

VN_MORNING = "2026-12-01T09:00:00.000+07:00"
ANSWER = "Kính gửi ông/bà,\nHồ sơ khai sinh cần giấy chứng sinh.\n\tTrân trọng."


def _db(central_db: CentralDb) -> tuple[Target, sqlite3.Connection]:
    return central_db.target, central_db.connect()


def _ask(k: Kiosk, code: str, category: str = "question", created: str = VN_MORNING) -> None:
    k.send(
        "feedback",
        {
            "category": category,
            "message": "Làm giấy khai sinh cần gì?",
            "lookup_code": code,
            "contact": "0912 345 678",
        },
        created=created,
    )


def test_an_answer_goes_to_the_office_of_the_kiosk_that_asked(central_db: CentralDb) -> None:
    db, conn = _db(central_db)
    k = Kiosk(db, "k-office-01")
    downlink_log.claim_office(conn, "k-office-01", AGENCY)
    _ask(k, "HT-261201-4001")
    _ask(k, "KN-261201-4002", "petition")
    open_ = list_inquiries(conn, unanswered=True)
    assert [i["lookup_code"] for i in open_] == ["HT-261201-4001", "KN-261201-4002"]
    assert open_[0]["office"] == AGENCY and open_[0]["contact"] == "0912 345 678"
    out = answer(
        conn,
        "HT-261201-4001",
        ANSWER,
        actor="cli:staff",
        answered_by="Chị Lan",
        now=1_796_090_400.0 + 3600,  # one hour after 2026-12-01T09:00+07:00
    )
    assert out["audience"] == f"office:{AGENCY}" and out["response_s"] == 3600.0
    items = downlink_log.current(conn, f"office:{AGENCY}", "answer")
    assert [i.key for i in items] == ["HT-261201-4001"]
    body = items[0].body
    assert set(body) == {"lookup_code", "category", "answer", "answered_at", "answered_by"}
    assert body["answer"] == ANSWER and body["answered_by"] == "Chị Lan"
    assert body["category"] == "question"
    assert [i["lookup_code"] for i in list_inquiries(conn, unanswered=True)] == ["KN-261201-4002"]
    assert [i["lookup_code"] for i in list_inquiries(conn, category="petition")] == [
        "KN-261201-4002"
    ]
    [row] = audit.entries(conn, target="HT-261201-4001")
    assert row["actor"] == "cli:staff" and row["action"] == "inquiry.answer"
    # A correction supersedes the answer; the response time stays the first one.
    again = answer(conn, "HT-261201-4001", "Đính chính: cần thêm CCCD.", actor="cli:staff")
    assert again["response_s"] == 3600.0
    items = downlink_log.current(conn, f"office:{AGENCY}", "answer")
    assert [i.body["answer"] for i in items] == ["Đính chính: cần thêm CCCD."]
    times = response_times(conn, office=AGENCY)
    assert [(t["category"], t["inquiries"], t["answered"]) for t in times] == [
        ("petition", 1, 0),
        ("question", 1, 1),
    ]


def test_the_office_falls_back_to_the_kiosks_dossiers_then_to_the_kiosk(
    central_db: CentralDb,
) -> None:
    db, conn = _db(central_db)
    filer = Kiosk(db, "k-filer-01")
    filer.send("dossier", dossier_body(f"{OTHER_AGENCY}-261201-4001"))
    _ask(filer, "PA-261201-4001", "feedback")
    lone = Kiosk(db, "k-lone-01")
    _ask(lone, "HT-261201-5001")
    a = answer(conn, "PA-261201-4001", "Cảm ơn ông/bà đã góp ý.", actor="cli:staff")
    assert a["audience"] == f"office:{OTHER_AGENCY}"
    b = answer(conn, "HT-261201-5001", "Mời ông/bà đến quầy số 2.", actor="cli:staff")
    assert b["audience"] == "kiosk:k-lone-01" and b["office"] is None
    assert [i.key for i in downlink_log.current(conn, "kiosk:k-lone-01", "answer")] == [
        "HT-261201-5001"
    ]


def test_a_lookup_code_used_by_two_offices_needs_the_office(central_db: CentralDb) -> None:
    db, conn = _db(central_db)
    for kiosk, office in (("k-a-01", AGENCY), ("k-b-01", OTHER_AGENCY)):
        downlink_log.assign_office(conn, kiosk, office)
        _ask(Kiosk(db, kiosk), "HT-261201-4001")
    with pytest.raises(BackofficeError, match=r"used at 2 inquiries .* name the office"):
        answer(conn, "HT-261201-4001", "Trả lời", actor="cli:staff")
    out = answer(conn, "HT-261201-4001", "Trả lời", actor="cli:staff", office=OTHER_AGENCY)
    assert out["kiosk"] == "k-b-01" and out["audience"] == f"office:{OTHER_AGENCY}"
    assert downlink_log.current(conn, f"office:{AGENCY}", "answer") == []


def test_bad_answers_are_refused_and_change_nothing(central_db: CentralDb) -> None:
    db, conn = _db(central_db)
    _ask(Kiosk(db), "HT-261201-4001")
    for text, message in [
        ("   ", "answer: empty"),
        ("x" * 4001, "answer: 4001 characters, longer than 4000"),
        ("Trả lời\u200b", "answer: contains control or format character U\\+200B"),
    ]:
        with pytest.raises(BackofficeError, match=message):
            answer(conn, "HT-261201-4001", text, actor="cli:staff")
    with pytest.raises(NotFound, match="inquiry HT-261201-9999"):
        answer(conn, "HT-261201-9999", "Trả lời", actor="cli:staff")
    with pytest.raises(BackofficeError, match="lookup code 'HT-1'"):
        get_inquiry(conn, "HT-1")
    assert audit.entries(conn) == [] and downlink_log.latest_cursor(conn) == 0


# -- FAQ and news -------------------------------------------------------------------------

FAQ_FILE = """
[[faq]]
id = "giay-to-khai-sinh"
question = "Đăng ký khai sinh cần mang giấy tờ gì?"
answer = '''
Giấy chứng sinh (bản chính).
CCCD của cha hoặc mẹ.
'''
tags = ["khai sinh", "hộ tịch", "khai sinh"]
procedure = "1.001193"

[[faq]]
id = "le-phi"
question = "Lệ phí chứng thực bản sao?"
answer = "2.000 đồng một trang."
"""


def test_faq_published_from_a_file_reaches_every_kiosk_once(
    tmp_path: Path, central_db: CentralDb
) -> None:
    _, conn = _db(central_db)
    f = tmp_path / "faq.toml"
    f.write_text(FAQ_FILE, encoding="utf-8")
    out = publish_faq(conn, load_file(f, "faq"), "cli:staff")
    assert [o["changed"] for o in out] == [True, True]
    items = downlink_log.current(conn, "*", "faq")
    assert [i.key for i in items] == ["giay-to-khai-sinh", "le-phi"]
    body = items[0].body
    assert set(body) == {
        "id",
        "question",
        "answer",
        "tags",
        "procedure",
        "published_at",
        "withdrawn",
    }
    assert body["answer"] == "Giấy chứng sinh (bản chính).\nCCCD của cha hoặc mẹ."
    assert body["tags"] == ["khai sinh", "hộ tịch"] and body["withdrawn"] is False
    cursor = downlink_log.latest_cursor(conn)
    # Unchanged: nothing written; changed: one new item that supersedes.
    assert [o["changed"] for o in publish_faq(conn, load_file(f, "faq"), "cli:staff")] == [
        False,
        False,
    ]
    assert downlink_log.latest_cursor(conn) == cursor
    edited = publish_faq(
        conn,
        [{"id": "le-phi", "question": "Lệ phí chứng thực?", "answer": "2.000 đồng/trang"}],
        "cli:staff",
    )
    assert edited[0]["changed"] is True
    assert edited[0]["published_at"] == items[1].body["published_at"]  # first publication
    gone = withdraw_faq(conn, "le-phi", "cli:staff")
    assert gone["withdrawn"] is True
    current = {i.key: i.body for i in downlink_log.current(conn, "*", "faq")}
    assert current["le-phi"]["withdrawn"] is True and current["le-phi"]["answer"] == (
        "2.000 đồng/trang"
    )
    assert [c["id"] for c in list_content(conn, "faq")] == ["giay-to-khai-sinh"]
    assert withdraw_faq(conn, "le-phi", "cli:staff")["changed"] is False
    with pytest.raises(NotFound, match="faq nope: never published"):
        withdraw_faq(conn, "nope", "cli:staff")
    actions = [r["action"] for r in audit.entries(conn)]
    assert actions.count("faq.publish") == 3 and actions.count("faq.withdraw") == 1


def test_a_bad_item_publishes_nothing_and_is_named(central_db: CentralDb) -> None:
    _, conn = _db(central_db)
    good = {"id": "a", "title": "Thông báo", "body": "Nội dung"}
    cases = [
        ({"id": "Bad Id", "title": "t", "body": "b"}, r"news\[1\]\.id: 'Bad Id'"),
        ({"id": "b", "title": "t"}, r"news\[1\] b: body is missing"),
        ({"id": "b", "title": "x" * 201, "body": "b"}, "title: 201 characters, longer than 200"),
        ({"id": "b", "title": "t\x00", "body": "b"}, "title: contains control"),
        ({"id": "b", "title": "t", "body": "b", "extra": 1}, "unknown field"),
        ({"id": "a", "title": "t", "body": "b"}, "id.s. a appear more than once"),
    ]
    for bad, message in cases:
        with pytest.raises(BackofficeError, match=message):
            publish_news(conn, [good, bad], "cli:staff")
    assert downlink_log.latest_cursor(conn) == 0 and list_content(conn, "news") == []
    with pytest.raises(BackofficeError, match="no items"):
        publish_news(conn, [], "cli:staff")
    with pytest.raises(BackofficeError, match="tags: expected a list of at most 10"):
        publish_faq(conn, [{"id": "x", "question": "q", "answer": "a", "tags": ["t"] * 11}], "c")
    out = publish_news(conn, [good], "cli:staff")
    assert out[0]["changed"] is True
    assert withdraw_news(conn, "a", "cli:staff")["withdrawn"] is True


def test_content_files_are_checked(tmp_path: Path) -> None:
    f = tmp_path / "news.toml"
    f.write_text("[[faq]]\nid='a'\n", encoding="utf-8")
    with pytest.raises(BackofficeError, match=r"unexpected table\(s\) faq"):
        load_file(f, "news")
    f.write_text("[[news]\n", encoding="utf-8")
    with pytest.raises(BackofficeError, match="not valid TOML"):
        load_file(f, "news")
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(BackofficeError, match="not UTF-8"):
        load_file(f, "news")
    with pytest.raises(BackofficeError, match="cannot read"):
        load_file(tmp_path / "absent.toml", "news")


# -- reports ------------------------------------------------------------------------------


def test_ratings_are_counted_per_office_and_day(central_db: CentralDb) -> None:
    db, conn = _db(central_db)
    downlink_log.assign_office(conn, "k-a-01", AGENCY)
    a = Kiosk(db, "k-a-01")
    day1, day2 = "2026-12-01T10:00:00.000+07:00", "2026-12-02T23:30:00.000+07:00"
    for level in ("rat_hai_long", "rat_hai_long", "hai_long", "khong_hai_long"):
        a.send("rating", {"level": level}, created=day1)
    a.send("rating", {"level": "hai_long", "reason": "Chờ lâu"}, created=day2)
    # A rating naming a dossier counts for that dossier's office; a kiosk without an office
    # counts as unknown until it is placed.
    b = Kiosk(db, "k-b-01")
    b.send(
        "rating", {"level": "hai_long", "dossier_code": f"{OTHER_AGENCY}-261201-1001"}, created=day1
    )
    b.send("rating", {"level": "khong_hai_long"}, created=day1)
    report = {(r["office"], r["day"]): r for r in ratings(conn)}
    assert set(report) == {
        (AGENCY, "2026-12-01"),
        (AGENCY, "2026-12-02"),
        (OTHER_AGENCY, "2026-12-01"),
        ("unknown", "2026-12-01"),
    }
    first = report[(AGENCY, "2026-12-01")]
    assert first["total"] == 4
    assert first["counts"] == {"rat_hai_long": 2, "hai_long": 1, "khong_hai_long": 1}
    assert first["shares"] == {"rat_hai_long": 0.5, "hai_long": 0.25, "khong_hai_long": 0.25}
    assert first["labels"]["rat_hai_long"] == "Rất hài lòng"
    assert report[(AGENCY, "2026-12-02")]["counts"]["hai_long"] == 1  # the kiosk's own day
    assert [r["office"] for r in ratings(conn, day="2026-12-01", office=AGENCY)] == [AGENCY]
    downlink_log.assign_office(conn, "k-b-01", OTHER_AGENCY)
    placed = ratings(conn, office=OTHER_AGENCY)
    assert [(r["day"], r["total"]) for r in placed] == [("2026-12-01", 2)]
    # A kiosk central has no office for, but whose dossiers name one, counts for that one.
    c = Kiosk(db, "k-c-01")
    c.send("dossier", dossier_body(f"{OTHER_AGENCY}-261201-7001"))
    c.send("rating", {"level": "rat_hai_long"}, created=day1)
    assert ratings(conn, office=OTHER_AGENCY)[0]["total"] == 3
    assert all(r["office"] != "unknown" for r in ratings(conn))
    with pytest.raises(BackofficeError, match="day: '2026-13' is not a date"):
        ratings(conn, day="2026-13")


def test_dossier_counts_per_office_day_and_state(central_db: CentralDb) -> None:
    from central.dossiers import set_status

    db, conn = _db(central_db)
    k = Kiosk(db)
    for n in range(1, 4):
        k.send("dossier", dossier_body(f"{AGENCY}-261201-400{n}", id_number=f"08720500123{n}"))
    set_status(conn, f"{AGENCY}-261201-4001", "received", actor="cli:staff")
    set_status(conn, f"{AGENCY}-261201-9999", "received", actor="cli:staff")  # held: not counted
    counts = dossier_counts(conn, office=AGENCY)
    assert [(c["day"], c["state"], c["count"]) for c in counts] == [
        ("2026-12-01", "received", 1),
        ("2026-12-01", "submitted", 2),
    ]
