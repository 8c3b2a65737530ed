"""The console's pages on a seeded fleet: what they show, and the staff's daily work
(take and resolve a support request, answer a question, move a dossier), audited with the
console user as the actor."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from central import audit, backoffice_db
from central.web.console import labels
from central.web.console.charts import bar_chart
from tests.console_seed import KIOSKS, OFFICE_A, OFFICE_B, Seeded, app_for, login, post, seed
from tests.pg import CentralDb


@pytest.fixture
def seeded(central_db: CentralDb) -> Seeded:
    return seed(central_db.target)


@pytest.fixture
def staff(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(app_for(seeded.db)) as c:
        login(c, "can.bo.a")
        yield c


@pytest.fixture
def admin(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(app_for(seeded.db)) as c:
        login(c, "quan.tri")
        yield c


def _audit(seeded: Seeded, target: str) -> list[tuple[str, str]]:
    conn = backoffice_db.connect(seeded.db)
    return [(e["actor"], e["action"]) for e in audit.entries(conn, target=target)]


def test_the_fleet_shows_every_overall_state_in_colour_and_words(admin: TestClient) -> None:
    text = admin.get("/console/").text
    expected = {
        "k-a-ok": "operational",
        "k-a-degraded": "degraded",
        "k-a-offline": "offline",
        "k-a-updating": "updating",
        "k-a-inconsistent": "inconsistent",
        "k-a-never": "never-seen",
        "k-a-revoked": "revoked",
        "k-b-ok": "operational",
        "k-b-offline": "offline",
    }
    assert set(expected) == set(KIOSKS)
    for kiosk, state in expected.items():
        row = re.search(rf'href="/console/kiosks/{kiosk}".*?</tr>', text, re.S)
        assert row is not None, kiosk
        assert f'class="badge state-{state}">{labels.KIOSK_STATES[state]}<' in row.group(0)
    assert "Tổng cộng 9 ki-ốt" in text


def test_the_fleet_filters_by_state_and_office(admin: TestClient) -> None:
    text = admin.get("/console/?state=offline").text
    assert "k-a-offline" in text and "k-b-offline" in text and "k-a-ok" not in text
    text = admin.get(f"/console/?state=offline&office={OFFICE_B}").text
    assert "k-b-offline" in text and "k-a-offline" not in text


def test_a_kiosk_page_shows_its_health_and_devices(admin: TestClient) -> None:
    text = admin.get("/console/kiosks/k-a-degraded").text
    assert "paper_out" in text and "printer: paper out" in text
    assert "1.4.2" in text and "2026.11.3" in text and "c-17" in text
    assert admin.get("/console/kiosks/no-such-kiosk").status_code == 404


def test_ages_read_as_central_humanize_says(admin: TestClient) -> None:
    # The seed: k-a-degraded heard 25 s before the console's clock, k-a-offline 3600 s.
    assert "(25 giây trước)" in admin.get("/console/kiosks/k-a-degraded").text
    fleet = admin.get("/console/").text
    assert "<td>25 giây trước</td>" in fleet and "<td>1 giờ trước</td>" in fleet


def test_staff_take_and_resolve_a_support_request(seeded: Seeded, staff: TestClient) -> None:
    n = seeded.support_a
    page = f"/console/support/{n}"
    assert "Tôi cần hỗ trợ nộp hồ sơ" in staff.get("/console/support").text
    r = post(staff, f"{page}/take", {"staff": "lan"}, page=page)
    assert r.status_code == 303
    assert "Đang xử lý" in staff.get(page).text
    r = post(staff, f"{page}/resolve", {"note": "Đã hướng dẫn nộp hồ sơ"}, page=page)
    assert r.status_code == 303
    assert "Đã xong" in staff.get(page).text
    conn = backoffice_db.connect(seeded.db)
    actions = [
        (e["actor"], e["action"])
        for e in audit.entries(conn, limit=50)
        if e["target"].startswith(f"support:{n}:")
    ]
    assert ("console:can.bo.a", "support.acknowledge") in actions
    assert ("console:can.bo.a", "support.resolve") in actions
    again = post(staff, f"{page}/resolve", {}, page="/console/")
    assert again.status_code == 409  # resolved already: the page says why


def test_taking_a_request_for_someone_not_on_the_roster_names_the_field(
    seeded: Seeded, staff: TestClient
) -> None:
    page = f"/console/support/{seeded.support_a}"
    r = post(staff, f"{page}/take", {"staff": "khong-co"}, page=page)
    assert r.status_code == 400
    assert 'role="alert"' in r.text


def test_staff_answer_a_question(seeded: Seeded, staff: TestClient) -> None:
    code = seeded.inquiry_a
    page = f"/console/inquiries/{code}"
    assert code in staff.get("/console/inquiries").text
    r = post(
        staff,
        f"{page}/answer",
        {"answer": "Mang giấy chứng sinh và CCCD.", "answered_by": "Bộ phận một cửa"},
        page=page,
    )
    assert r.status_code == 303
    assert "Mang giấy chứng sinh và CCCD." in staff.get(page).text
    assert ("console:can.bo.a", "inquiry.answer") in _audit(seeded, code)
    assert code not in staff.get("/console/inquiries").text  # answered: off the open list


def test_an_empty_answer_is_refused_on_the_page(seeded: Seeded, staff: TestClient) -> None:
    page = f"/console/inquiries/{seeded.inquiry_a}"
    r = post(staff, f"{page}/answer", {"answer": "   "}, page=page)
    assert r.status_code == 400 and "answer" in r.text


def test_staff_move_a_dossier_and_an_illegal_move_is_refused(
    seeded: Seeded, staff: TestClient
) -> None:
    code = seeded.dossier_a
    page = f"/console/dossiers/{code}"
    r = post(staff, f"{page}/status", {"state": "received"}, page=page)
    assert r.status_code == 303
    assert ("console:can.bo.a", "dossier.status") in _audit(seeded, code)
    r = post(staff, f"{page}/status", {"state": "submitted"}, page=page)
    assert r.status_code == 409


def test_the_charts_have_svg_and_the_same_numbers_in_tables(admin: TestClient) -> None:
    text = admin.get("/console/charts").text
    assert text.count("<svg") == 3
    # Office A filed 1, 2, 3, 4 dossiers on four days, office B one a day.
    for day, n in (("2026-11-27", 1), ("2026-11-30", 4)):
        assert re.search(rf"<td>{day}</td><td>{OFFICE_A}</td><td>{n}</td>", text), day
    assert "<title>2026-11-30: 5 hồ sơ</title>" in text
    assert "<title>Rất hài lòng: 2 lượt</title>" in text
    a_only = admin.get(f"/console/charts?office={OFFICE_A}").text
    assert "<title>2026-11-30: 4 hồ sơ</title>" in a_only


def test_bar_chart_scales_to_the_tallest_bar() -> None:
    chart = bar_chart("t", "u", [("a", 1), ("b", 4), ("c", 0)])
    heights = [b.height for b in chart.bars]
    assert heights[1] == max(heights) and heights[2] == 0
    assert heights[0] == pytest.approx(heights[1] / 4)
    assert bar_chart("t", "u", []).bars == []


def test_every_page_has_the_security_headers(admin: TestClient, seeded: Seeded) -> None:
    for path in (
        "/console/",
        "/console/charts",
        "/console/support",
        "/console/dossiers",
        "/console/inquiries",
        "/console/alerts",
        "/console/users",
        "/console/login",
    ):
        r = admin.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "<script" not in r.text and "style=" not in r.text, path


def test_alerts_list_filter_and_an_admin_acknowledges_with_a_comment(
    seeded: Seeded, admin: TestClient
) -> None:
    text = admin.get("/console/alerts").text
    assert "printer paper_out" in text and "said offline" in text
    critical = admin.get("/console/alerts?severity=critical").text
    assert "printer paper_out" not in critical and "said offline" in critical
    assert "said offline" not in admin.get(f"/console/alerts?office={OFFICE_A}").text
    page = f"/console/alerts/{seeded.alert_a}"
    refused = post(admin, f"{page}/acknowledge", {"comment": "  "}, page=page)
    assert refused.status_code == 400 and 'role="alert"' in refused.text
    r = post(admin, f"{page}/acknowledge", {"comment": "Đã thay giấy"}, page=page)
    assert r.status_code == 303
    text = admin.get(page).text
    assert "Đã xác nhận" in text and "console:quan.tri" in text and "Đã thay giấy" in text
    again = post(admin, f"{page}/acknowledge", {"comment": "lần nữa"}, page=page)
    assert again.status_code == 409
    assert admin.get("/console/alerts/abc").status_code == 404
    assert admin.get("/console/alerts/999999").status_code == 404


def test_staff_read_alerts_but_cannot_acknowledge(seeded: Seeded, staff: TestClient) -> None:
    page = f"/console/alerts/{seeded.alert_a}"
    assert "Xác nhận đã biết" not in staff.get(page).text
    r = post(staff, f"{page}/acknowledge", {"comment": "x"}, page=page)
    assert r.status_code == 403


def test_the_kiosk_page_shows_history_alerts_and_jobs(seeded: Seeded, admin: TestClient) -> None:
    text = admin.get("/console/kiosks/k-a-degraded").text
    history = text[text.index('id="h-history"') : text.index('id="h-alerts"')]
    assert history.count("<tr>") == 7  # header + six samples
    assert "state-degraded" in history and "state-operational" in history
    assert "device-fault" in text and "print-test-slip" in text


def test_a_form_field_over_its_limit_is_an_html_page_naming_it(
    seeded: Seeded, staff: TestClient
) -> None:
    page = f"/console/dossiers/{seeded.dossier_a}"
    r = post(staff, f"{page}/status", {"state": "x" * 100}, page=page)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "«state»" in r.text
    api = staff.get("/api/v1/dossiers?limit=abc")
    assert api.headers["content-type"].startswith("application/json")  # the API is unchanged
