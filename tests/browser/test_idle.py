"""The idle wipe: announced before it happens, then nothing of the citizen is left in the
DOM, the page's storage, core.js's memory or the agent's session; "Tôi vẫn đang dùng"
keeps everything. A short timeout (10 s, warning 5 s before) keeps the tests short; the
waits are bounded, nothing asserts how long anything took.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx
import pytest

from tests.browser.a11y import assert_accessible
from tests.browser.ui_stack import UiStack, default_citizen, wait_for

IDLE = {"session_idle_s": 10.0, "kiosk_extra": "\n[ui]\nidle_warning_s = 5\n"}
NAME = "Nguyễn Thị Ngọc Hường"
PHONE = "0912345678"
#: Longer than the whole timeout: the warning and the wipe come well within it.
WAIT_MS = 30_000

short_timeout = pytest.mark.parametrize("ui_stack", [IDLE], indirect=True)


def type_into(page: Any, selector: str, text: str) -> None:
    """Replace a field's text as a citizen would: touch the field, then type.

    (A fill without touching the field first appends to it once the on-screen keyboard
    has been open: its focus handler puts the caret at the end; reported.)
    """
    page.click(selector)
    page.fill(selector, text)
    assert page.input_value(selector) == text


def session(stack: UiStack) -> dict[str, Any]:
    return dict(httpx.get(f"{stack.url}/api/v1/session", timeout=10).json())


def citizen_at_work(page: Any, stack: UiStack) -> None:
    """A card read, a home-visit draft on screen (the card's name) with a phone typed."""
    stack.scan_card()
    wait_for(lambda: session(stack)["active"], "the card in the agent's session")
    page.click("[data-go=home-visit]")
    page.click("[data-reason=benh-nang]")
    page.wait_for_selector("body[data-screen='home-visit-name']")
    assert page.input_value("input") == NAME
    page.click("[data-action=next]")
    page.wait_for_selector("body[data-screen='home-visit-phone']")
    type_into(page, "input", PHONE)
    page.evaluate("sessionStorage.setItem('draft', 'x'); localStorage.setItem('draft', 'y')")


def leftovers(page: Any) -> dict[str, Any]:
    """Whatever of the citizen the page still holds."""
    return dict(
        page.evaluate(
            """async ([name, phone]) => {
              const core = await import('/static/js/core.js');
              const html = document.documentElement.outerHTML;
              const values = [...document.querySelectorAll('input, textarea')].map((i) => i.value);
              return {
                inDom: html.includes(name) || html.includes(phone),
                inFields: values.filter((v) => v.includes(name) || v.includes(phone)),
                storage: sessionStorage.length + localStorage.length,
                memory: JSON.stringify(core.citizen),
                screen: document.body.dataset.screen,
                overlay: !document.getElementById('overlay').hidden,
              };
            }""",
            [NAME, PHONE],
        )
    )


@short_timeout
def test_the_idle_wipe_is_announced_then_leaves_nothing(
    page: Any, ui_stack: UiStack, shot: Any
) -> None:
    citizen_at_work(page, ui_stack)
    assert leftovers(page)["memory"] != "{}"  # the draft is in core's memory meanwhile

    page.wait_for_selector(".idle-dialog", timeout=WAIT_MS)
    assert "Ông/Bà còn đang sử dụng máy không?" in page.inner_text("#overlay")
    assert "giây" in page.inner_text("#idle-count")  # the countdown
    assert page.locator("[data-action=keep-using]").inner_text() == "Tôi vẫn đang dùng"
    assert_accessible(page, "idle-warning")
    shot(page, "idle-warning")

    page.wait_for_selector("#overlay", state="hidden", timeout=WAIT_MS)
    page.wait_for_selector("body[data-screen='home']")
    left = leftovers(page)
    assert left == {
        "inDom": False,
        "inFields": [],
        "storage": 0,
        "memory": "{}",
        "screen": "home",
        "overlay": False,
    }
    s = session(ui_stack)
    assert s["active"] is False and s["full_name"] is None


@short_timeout
def test_still_using_keeps_the_citizen(page: Any, ui_stack: UiStack) -> None:
    citizen_at_work(page, ui_stack)
    page.wait_for_selector(".idle-dialog", timeout=WAIT_MS)
    page.click("[data-action=keep-using]")
    page.wait_for_selector("#overlay", state="hidden")
    kept_at = time.monotonic()
    # past the moment the wipe would have come (at most 5 s after the warning showed)
    while time.monotonic() - kept_at < 6.0:
        page.wait_for_timeout(500)
        assert page.evaluate("document.body.dataset.screen") == "home-visit-phone"
    assert page.input_value("input") == PHONE
    assert session(ui_stack)["active"] is True  # the agent's clock was told too


@short_timeout
def test_touches_restart_the_clock(page: Any, ui_stack: UiStack) -> None:
    citizen_at_work(page, ui_stack)
    started = time.monotonic()
    # keep touching for longer than the whole timeout: no warning, no wipe
    while time.monotonic() - started < 14.0:
        page.locator(".question-label").click()
        page.wait_for_timeout(1000)
        assert page.locator(".idle-dialog").count() == 0
    assert page.evaluate("document.body.dataset.screen") == "home-visit-phone"
    assert session(ui_stack)["active"] is True


def test_the_agent_ending_the_session_for_idleness_wipes_the_page(
    page: Any, ui_stack: UiStack
) -> None:
    # the default stack: the page's own clock (120 s) is far from its end
    citizen_at_work(page, ui_stack)
    ui_stack.kiosk.session.clear("idle")  # what the agent's housekeeping does at expiry
    page.wait_for_selector("body[data-screen='home']", timeout=WAIT_MS)
    left = leftovers(page)
    assert [left[k] for k in ("inDom", "inFields", "storage", "memory")] == [False, [], 0, "{}"]


def test_the_screen_ending_its_own_session_does_not_wipe_again(
    page: Any, ui_stack: UiStack
) -> None:
    citizen_at_work(page, ui_stack)
    ui_stack.kiosk.session.clear()  # reason "ended": what DELETE /session (Kết thúc) does
    page.wait_for_timeout(1500)  # the event has long arrived (same machine)
    assert page.evaluate("document.body.dataset.screen") == "home-visit-phone"


@short_timeout
def test_no_timeout_while_a_request_is_in_flight(page: Any, ui_stack: UiStack) -> None:
    def slow(route: Any) -> None:
        time.sleep(12.0)  # longer than the whole timeout (10 s)
        route.continue_()

    page.route("**/api/v1/support/help", slow)
    page.click("[data-go=support]")
    page.evaluate("sessionStorage.setItem('marker', 'kept')")
    page.click("[data-topic=nop-ho-so]")
    page.wait_for_selector("body[data-screen='support-status']", timeout=WAIT_MS)
    page.wait_for_timeout(1500)  # several ticks of the idle clock after the answer
    assert page.evaluate("sessionStorage.getItem('marker')") == "kept"  # never wiped
    assert page.evaluate("document.body.dataset.screen") == "support-status"
    assert page.locator(".idle-dialog").count() == 0  # the time before the wait is still left


def test_a_wipe_while_a_request_is_in_flight_is_not_undone_by_its_answer(
    page: Any, ui_stack: UiStack
) -> None:
    def wiped_meanwhile(route: Any) -> None:
        ui_stack.kiosk.session.clear("idle")  # the agent ends the session meanwhile
        time.sleep(3.0)  # the page gets the event and wipes
        route.continue_()

    ui_stack.scan_card()
    wait_for(lambda: session(ui_stack)["active"], "the card in the agent's session")
    page.route("**/api/v1/support/help", wiped_meanwhile)
    page.click("[data-go=support]")
    page.click("[data-topic=nop-ho-so]")
    page.wait_for_timeout(2000)  # the answer has come back by now
    assert page.evaluate("document.body.dataset.screen") == "home"
    assert page.locator(".support-status").count() == 0


def test_a_wiped_screen_no_longer_acts_on_events(page: Any, ui_stack: UiStack) -> None:
    page.click("[data-go=info]")  # it reloads itself when central publishes
    page.wait_for_selector("#info-count")
    page.evaluate("window.aps.wipe('idle')")
    page.wait_for_selector("body[data-screen='home']")
    ui_stack.back_office.publish_faq()
    wait_for(lambda: ui_stack.kiosk.info.faqs(), "the FAQ at the kiosk")
    page.wait_for_timeout(1500)  # the downlink event has reached the page by now
    assert page.evaluate("document.body.dataset.screen") == "home"


def test_another_citizens_card_wipes_the_one_before_and_keeps_the_new_session(
    page: Any, ui_stack: UiStack
) -> None:
    citizen_at_work(page, ui_stack)  # the first citizen's home-visit draft, with a phone
    second = dataclasses.replace(
        default_citizen(5678), full_name="Trần Văn Bình", address="Ấp Tân Hòa, xã Tân Khánh Đông"
    )
    ui_stack.scan_card(second)
    page.wait_for_selector("body[data-screen='filing-start'] >> text=Trần Văn Bình")
    left = leftovers(page)  # looks for the first citizen's name and phone
    assert not left["inDom"] and not left["inFields"], left
    assert left["storage"] == 0, left
    # core's memory holds the new citizen only (the card on screen), nothing of the first
    assert NAME not in left["memory"] and PHONE not in left["memory"], left
    assert "Trần Văn Bình" in left["memory"], left
    now = session(ui_stack)
    assert now["active"] and now["full_name"] == "Trần Văn Bình"  # not ended by the wipe
