"""Smoke tests of the browser-test stack: the page, the devices, the link, a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.demo import demo_signature
from tests.browser.a11y import assert_accessible
from tests.browser.conftest import PageErrors
from tests.browser.ui_stack import UiStack, default_citizen, wait_for

HOME_TILES = 6

LISTEN = """(kind) => {
    window.__seen = [];
    const es = new EventSource("/api/v1/events");
    es.addEventListener(kind, (e) => window.__seen.push(JSON.parse(e.data)));
    return new Promise((resolve) => { es.onopen = () => resolve(true); });
}"""


def health(page: Any) -> dict[str, Any]:
    """``/api/v1/health`` fetched by the page itself (same origin, under its CSP)."""
    result: dict[str, Any] = page.evaluate(
        "async () => (await fetch('/api/v1/health', {cache: 'no-store'})).json()"
    )
    return result


def test_home_screen_loads_with_its_tiles_and_passes_axe(
    page: Any, shot: Callable[[Any, str], Path]
) -> None:
    tiles = page.locator("main .tiles button.tile")
    tiles.first.wait_for(state="visible")
    assert tiles.count() == HOME_TILES
    assert page.locator("#screen-title").inner_text() == "Xin chào Ông/Bà"
    box = tiles.first.bounding_box()
    assert box is not None and box["width"] >= 64 and box["height"] >= 64
    assert_accessible(page, "home")
    assert shot(page, "stack-home").stat().st_size > 0


def test_scanned_card_reaches_the_page_as_an_identity_event(page: Any, ui_stack: UiStack) -> None:
    assert page.evaluate(LISTEN, "identity") is True
    card = ui_stack.scan_card()
    page.wait_for_function("() => window.__seen.length > 0")
    (event,) = page.evaluate("() => window.__seen")
    assert event["active"] is True and event["source"] == "qr"
    assert event["full_name"] == card.full_name == default_citizen().full_name
    assert event["id_masked"].endswith(card.id_number[-4:])
    assert card.id_number not in str(event)  # the screen only ever gets it masked


def test_paper_out_shows_in_health_and_comes_back(page: Any, ui_stack: UiStack) -> None:
    assert health(page)["printer"]["state"] == "ok"
    ui_stack.paper_out()
    assert health(page)["printer"]["state"] == "paper_out"
    ui_stack.paper_ok()
    assert health(page)["printer"]["state"] == "ok"


def test_offline_and_online_show_in_health(page: Any, ui_stack: UiStack) -> None:
    ui_stack.wait_online()
    assert health(page)["online"] is True
    ui_stack.offline()
    assert health(page)["online"] is False
    ui_stack.online()
    assert health(page)["online"] is True


def test_restart_kiosk_serves_the_page_again_on_the_same_files(
    page: Any, ui_stack: UiStack
) -> None:
    first = ui_stack.kiosk
    before = health(page)["kiosk"]
    url = ui_stack.restart_kiosk()
    assert ui_stack.kiosk is not first
    assert httpx.get(f"{url}/api/v1/health", timeout=10).json()["kiosk"] == before
    page.goto(url + "/")
    page.locator("main .tiles button.tile").first.wait_for(state="visible")
    assert ui_stack.kiosk.cfg.agent.database == first.cfg.agent.database
    assert page.evaluate(LISTEN, "identity") is True
    ui_stack.scan_card()  # the same emulated scanner now reaches the new app and its page
    page.wait_for_function("() => window.__seen.length > 0")


def test_page_errors_are_collected_for_the_teardown_check(
    page: Any, page_errors: PageErrors
) -> None:
    page.evaluate("() => { setTimeout(() => { throw new Error('boom-from-test'); }, 0); }")
    page.evaluate("() => console.error('console-from-test')")
    page.wait_for_function("() => true")  # one more round trip: both events delivered
    wait_for(lambda: len(page_errors.messages) >= 2, "both errors collected", 10)
    assert any("boom-from-test" in m for m in page_errors.unexpected())
    assert any("console-from-test" in m for m in page_errors.unexpected())
    page_errors.expect("boom-from-test")  # provoked on purpose: the teardown lets them pass
    page_errors.expect("console-from-test")
    assert page_errors.unexpected() == []


def test_assert_accessible_fails_on_a_critical_violation(page: Any) -> None:
    page.locator("main .tiles button.tile").first.wait_for(state="visible")
    page.evaluate(
        """() => {
            const b = document.createElement("button");  // no name: axe's button-name
            b.className = "tile";
            document.getElementById("screen").append(b);
        }"""
    )
    with pytest.raises(AssertionError, match=r"button-name \(critical\)") as err:
        assert_accessible(page, "broken-on-purpose")
    assert "'broken-on-purpose'" in str(err.value) and "at " in str(err.value)


def test_back_office_answers_reach_the_kiosk(ui_stack: UiStack) -> None:
    """Status, payment, a question's answer and a support reply, from central's staff API."""
    kiosk, office = ui_stack.kiosk, ui_stack.back_office
    ui_stack.scan_card()
    wait_for(lambda: kiosk.session.snapshot().active, "the card in the session")
    prepared = kiosk.filing.prepare(
        "2.000815",
        {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 2, "so_ban": 3},
        phone="0912345678",
    )
    filed = kiosk.filing.file(prepared, signature=demo_signature(1)).filed
    assert filed.fee_vnd > 0
    kiosk.filing.confirm_shown(filed.code)
    assert ui_stack.wait_at_central(filed.code)["code"] == filed.code
    office.set_status(filed.code, "received")
    office.set_status(filed.code, "result-ready", "Mời Ông/Bà đến quầy số 2.")
    office.mark_paid(filed.code, filed.fee_vnd)
    wait_for(
        lambda: (t := kiosk.tracking.lookup(filed.code)).state == "result-ready" and t.paid,
        "status and payment at the kiosk",
        60,
    )
    question = kiosk.feedback.submit("question", "Làm lại căn cước bị mất cần gì?", contact=None)
    office.answer_inquiry(question.lookup_code, "Ông/Bà mang giấy khai sinh đến công an phường.")
    wait_for(lambda: kiosk.feedback.answer_for(question.lookup_code).answered, "the answer", 60)
    ui_stack.press_help_button()
    (req,) = wait_for(lambda: office.support_requests("help"), "the help request at central")
    ticket = req["lookup_code"]
    office.reply_support(ticket)
    status = wait_for(
        lambda: (s := kiosk.support.status(ticket)).status != "waiting" and s, "a reply", 60
    )
    assert status.staff_name == "Trần Thị Mai"
