"""The back-office endpoints over central.dossiers/answers/content/reports/catalogue_publish,
served by uvicorn on loopback over a real database fed the way the collector feeds it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central import api_tokens, audit, backoffice_db, downlink_log
from central.backoffice_db import Target
from central.notify import SIGNATURE_HEADER, sign
from central.web.app import default_recorder
from central.web.common import ApiSettings
from central.web.server import ApiServer
from tests.backoffice_records import AGENCY, Kiosk, dossier_body
from tests.pg import CentralDb

CODE = f"{AGENCY}-261201-1001"
SECRET = b"bank-secret-0123456789"
ROOT = Path(__file__).resolve().parent.parent


class Api:
    def __init__(self, url: str, db: Target, token: str, client: httpx.Client) -> None:
        self.url, self.db, self.token, self.client = url, db, token, client

    def __call__(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.client.request(method, self.url + "/api/v1" + path, headers=headers, **kw)


@pytest.fixture
def api(central_db: CentralDb) -> Iterator[Api]:
    from central.web.app import create_app

    db = central_db.target
    conn = backoffice_db.connect(db)
    downlink_log.claim_office(conn, "k-office-01", AGENCY)
    token = api_tokens.add(conn, "cli:admin", "back-office")
    conn.close()
    settings = ApiSettings(
        database=db,
        payment_secret=SECRET,
        payment_recorder=default_recorder(),
        page_max=200,
    )
    server = ApiServer(create_app(settings), "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(timeout=30) as client:
            yield Api(f"http://127.0.0.1:{server.bound_port}", db, token, client)
    finally:
        server.stop()


def office_items(db: Target, kind: str) -> list[dict[str, Any]]:
    conn = backoffice_db.connect(db)
    try:
        audience = "*" if kind in ("faq", "news", "catalogue") else f"office:{AGENCY}"
        return [i.body for i in downlink_log.current(conn, audience, kind)]
    finally:
        conn.close()


def test_search_show_status_and_payment(api: Api) -> None:
    kiosk = Kiosk(api.db)
    kiosk.send("dossier", dossier_body(CODE, fee_vnd=8000))
    kiosk.send("dossier", dossier_body(f"{AGENCY}-261201-1002", procedure="1.000000"))
    found = api("GET", "/dossiers", params={"office": AGENCY, "day": "2026-12-01"}).json()
    assert {d["code"] for d in found["dossiers"]} == {CODE, f"{AGENCY}-261201-1002"}
    assert [
        d["code"] for d in api("GET", "/dossiers", params={"code": CODE}).json()["dossiers"]
    ] == [CODE]
    assert api("GET", "/dossiers", params={"status": "received"}).json()["dossiers"] == []
    one = api("GET", f"/dossiers/{CODE}").json()
    assert one["state"] == "submitted" and "received" in one["allowed_next"]
    reply = api("POST", f"/dossiers/{CODE}/status", json={"state": "received"})
    assert reply.status_code == 200, reply.text
    illegal = api("POST", f"/dossiers/{CODE}/status", json={"state": "submitted"})
    assert illegal.status_code == 409, illegal.text
    assert api("POST", f"/dossiers/{CODE}/status", json={"state": "lost"}).status_code == 400
    paid = api(
        "POST",
        f"/dossiers/{CODE}/payments",
        json={"amount_vnd": 8000, "reference": "CASH-1", "paid_at": "2026-12-01T10:00:00+07:00"},
    )
    assert paid.status_code == 200, paid.text
    assert paid.json()["paid"] is True
    clash = api(
        "POST",
        f"/dossiers/{CODE}/payments",
        json={"amount_vnd": 9000, "reference": "CASH-1", "paid_at": "2026-12-01T10:00:00+07:00"},
    )
    assert clash.status_code == 409
    status = office_items(api.db, "dossier-status")
    assert [(s["code"], s["state"], s["paid"]) for s in status] == [(CODE, "received", True)]
    conn = backoffice_db.connect(api.db)
    actors = {e["actor"] for e in audit.entries(conn, target=CODE)}
    conn.close()
    assert actors == {"back-office"}
    assert api("GET", "/dossiers/nope").status_code == 400
    assert api("GET", f"/dossiers/{AGENCY}-261201-9999").status_code == 404
    assert api("GET", "/dossiers/duplicates").status_code == 200
    assert api("GET", "/dossiers", params={"limit": 201}).status_code == 400
    assert api("GET", "/dossiers", params={"day": "01-12-2026"}).json()["error"]["field"] == "day"


def test_bank_callback_records_the_payment(api: Api) -> None:
    Kiosk(api.db).send("dossier", dossier_body(CODE, fee_vnd=8000))
    raw = json.dumps(
        {
            "reference": "VCB-1",
            "dossier_code": CODE,
            "amount_vnd": 8000,
            "paid_at": "2026-12-01T10:00:00+07:00",
        }
    ).encode()
    url = api.url + "/api/v1/payments/callback"
    for expected in (False, True):
        reply = api.client.post(url, content=raw, headers={SIGNATURE_HEADER: sign(SECRET, raw)})
        assert reply.status_code == 200, reply.text
        assert reply.json()["duplicate"] is expected
        assert reply.json()["result"]["paid"] is True
    one = api("GET", f"/dossiers/{CODE}").json()
    assert [p["reference"] for p in one["payments"]] == ["VCB-1"]
    assert one["payments"][0]["actor"] == "payment-callback"


def test_inquiry_answered_through_the_api(api: Api) -> None:
    Kiosk(api.db).send(
        "feedback",
        {"category": "question", "message": "Làm lại CCCD ở đâu?", "lookup_code": "HT-261201-4001"},
    )
    listed = api("GET", "/inquiries", params={"unanswered": True}).json()["inquiries"]
    assert [i["lookup_code"] for i in listed] == ["HT-261201-4001"]
    reply = api(
        "POST",
        "/inquiries/HT-261201-4001/answer",
        json={"answer": "Tại bộ phận một cửa.\nMang theo CCCD cũ.", "answered_by": "Chị Lan"},
    )
    assert reply.status_code == 200, reply.text
    [item] = office_items(api.db, "answer")
    assert item["answered_by"] == "Chị Lan" and "\n" in item["answer"]
    assert api("GET", "/inquiries/HT-261201-4001").json()["answer"].startswith("Tại bộ phận")
    bad = api("POST", "/inquiries/HT-261201-4001/answer", json={"answer": "a\u202eb"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "answer"
    assert api("GET", "/inquiries/HT-261201-9999").status_code == 404


def test_faq_news_publish_and_withdraw(api: Api) -> None:
    faq = {
        "id": "le-phi",
        "question": "Lệ phí chứng thực?",
        "answer": "2.000 đồng một trang.",
        "tags": ["lệ phí"],
    }
    reply = api("POST", "/faq", json={"items": [faq]})
    assert reply.status_code == 200, reply.text
    assert [f["id"] for f in api("GET", "/faq").json()["faq"]] == ["le-phi"]
    news = {"id": "nghi-le", "title": "Lịch nghỉ Tết", "body": "Nghỉ từ 14/2 đến 22/2."}
    assert api("POST", "/news", json={"items": [news]}).status_code == 200
    assert api("DELETE", "/news/nghi-le").json()["withdrawn"] is True
    assert office_items(api.db, "news")[0]["withdrawn"] is True
    assert office_items(api.db, "faq")[0]["question"] == "Lệ phí chứng thực?"
    bad = api("POST", "/faq", json={"items": [{**faq, "colour": "red"}]})
    assert bad.status_code == 400 and "colour" in bad.json()["error"]["message"]
    assert api("POST", "/faq", json={"items": []}).status_code == 422
    assert api("DELETE", "/faq/never").status_code == 404


def test_ratings_report(api: Api) -> None:
    kiosk = Kiosk(api.db)
    for level in ("rat_hai_long", "hai_long", "hai_long", "khong_hai_long"):
        kiosk.send("rating", {"level": level}, created="2026-12-01T10:00:00.000+07:00")
    rows = api("GET", "/reports/ratings", params={"day": "2026-12-01"}).json()["ratings"]
    assert [(r["office"], r["total"], r["counts"]["hai_long"]) for r in rows] == [(AGENCY, 4, 2)]
    assert api("GET", "/reports/ratings", params={"day": "tomorrow"}).status_code == 400
    assert api("GET", "/reports/dossiers").status_code == 200


def test_catalogue_published_through_the_api(api: Api) -> None:
    doc = json.loads((ROOT / "edge_agent/data/catalogue.json").read_text(encoding="utf-8"))
    reply = api("POST", "/catalogue", json=doc)
    assert reply.status_code == 200, reply.text
    assert reply.json()["version"] == doc["version"]
    again = api("POST", "/catalogue", json=doc)
    assert again.status_code == 400 and "not newer" in again.json()["error"]["message"]
    broken = api("POST", "/catalogue", json={**doc, "version": "2099.1.1", "procedures": 3})
    assert broken.status_code == 400
    [item] = office_items(api.db, "catalogue")
    assert item["version"] == doc["version"]
    assert api("GET", "/catalogue").json()["catalogue"]["version"] == doc["version"]
