"""Every downlink item the back office appends passes the kiosk's own item schemas.

``sync.downlink`` (the kiosk's validators, helper B) is not on this branch's
base; once merged, this test holds central's bodies to exactly what a kiosk
accepts, including the largest texts central allows.
"""

from __future__ import annotations

import pytest

from central import downlink_log
from central.answers import answer
from central.content import (
    ANSWER_CHARS,
    MAX_TAGS,
    QUESTION_CHARS,
    TAG_CHARS,
    TITLE_CHARS,
    publish_faq,
    publish_news,
    withdraw_news,
)
from central.dossiers import NOTE_CHARS, record_payment, set_status
from sync.schemas import FULL_NAME_CHARS, MESSAGE_CHARS
from tests.backoffice_records import AGENCY, Kiosk, dossier_body
from tests.pg import CentralDb

downlink = pytest.importorskip("sync.downlink")


def test_every_item_body_is_one_a_kiosk_accepts(central_db: CentralDb) -> None:
    db = central_db.target
    conn = central_db.connect()
    k = Kiosk(db)
    downlink_log.assign_office(conn, k.kiosk, AGENCY)
    code = f"{AGENCY}-261201-4001"
    k.send("dossier", dossier_body(code))
    k.send(
        "feedback",
        {"category": "petition", "message": "Kiến nghị", "lookup_code": "KN-261201-4001"},
    )
    big = "Ấ" * 10 + "\n" + "ư" * 10
    set_status(conn, code, "received", actor="t", note=(big * 60)[:NOTE_CHARS])
    set_status(conn, code, "processing", actor="t")  # no portal code known: null
    set_status(conn, f"{AGENCY}-261201-4999", "received", actor="t")  # held: no due date
    record_payment(
        conn,
        code,
        amount_vnd=8000,
        reference="R1",
        paid_at="2026-12-01T10:00Z",
        actor="t",
        source="bank",
    )
    answer(
        conn,
        "KN-261201-4001",
        (big * 300)[:MESSAGE_CHARS],
        actor="t",
        answered_by="Đ" * FULL_NAME_CHARS,
    )
    publish_faq(
        conn,
        [
            {
                "id": "a",
                "question": "Hỏi" * (QUESTION_CHARS // 3),
                "answer": (big * 300)[:ANSWER_CHARS],
                "tags": [f"{n}" * TAG_CHARS for n in range(MAX_TAGS)],
                "procedure": "1.001193",
            },
            {"id": "b", "question": "Hỏi?", "answer": "Đáp."},
        ],
        "t",
    )
    publish_news(conn, [{"id": "n", "title": "T" * TITLE_CHARS, "body": big}], "t")
    withdraw_news(conn, "n", "t")
    validators = downlink.ItemValidators()
    items, _, more = downlink_log.items_since(
        conn, ["*", f"office:{AGENCY}", f"kiosk:{k.kiosk}"], 0
    )
    assert not more
    kinds = set()
    for item in items:
        validators.check(item.kind, item.key, item.body)
        kinds.add(item.kind)
    assert kinds == {"dossier-status", "answer", "faq", "news"}
