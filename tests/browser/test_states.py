"""The kiosk's states on the screen: offline (the 4G link cut at the proxy) and the printer
out of paper, each shown as a banner above every screen and cleared when it ends."""

from __future__ import annotations

from typing import Any

from tests.browser.a11y import assert_accessible
from tests.browser.ui_stack import UiStack

OFFLINE_VI = "Máy đang mất mạng. Hồ sơ vẫn được lưu và sẽ tự gửi đi. Ông/Bà không cần làm gì thêm."
PAPER_VI = (
    "Máy in hết giấy: cán bộ sẽ đến. Ông/Bà vẫn có thể nộp hồ sơ; mã hồ sơ sẽ hiện trên màn hình."
)
SHOWN_MS = 15_000


def banners(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#banners [data-banner]").all_inner_texts()]


def test_offline_banner_shows_and_clears(page: Any, ui_stack: UiStack, shot: Any) -> None:
    ui_stack.wait_online()
    page.wait_for_selector("[data-go=tracking]")
    assert banners(page) == []
    ui_stack.offline()
    page.wait_for_selector("[data-banner=offline]", timeout=SHOWN_MS)
    assert banners(page) == [OFFLINE_VI]
    assert_accessible(page, "offline")
    shot(page, "state-offline")

    page.reload()  # a page (re)started while offline learns it from GET /health
    page.wait_for_selector("[data-banner=offline]", timeout=SHOWN_MS)

    ui_stack.online()
    page.wait_for_selector("[data-banner=offline]", state="detached", timeout=SHOWN_MS)
    assert banners(page) == []


def test_printer_out_banner_shows_and_clears(page: Any, ui_stack: UiStack, shot: Any) -> None:
    ui_stack.wait_online()
    page.wait_for_selector("[data-go=tracking]")
    ui_stack.paper_out()
    page.wait_for_selector("[data-banner=printer]", timeout=SHOWN_MS)
    assert banners(page) == [PAPER_VI]
    page.click("[data-go=tracking]")  # above every screen, not just home
    page.wait_for_selector("body[data-screen='tracking']")
    assert banners(page) == [PAPER_VI]
    assert_accessible(page, "printer-out")
    shot(page, "state-printer-out")

    ui_stack.paper_ok()
    page.wait_for_selector("[data-banner=printer]", state="detached", timeout=SHOWN_MS)
    assert banners(page) == []


def test_both_at_once(page: Any, ui_stack: UiStack) -> None:
    ui_stack.wait_online()
    page.wait_for_selector("[data-go=tracking]")
    ui_stack.paper_out()
    ui_stack.offline()
    page.wait_for_selector("#banners [data-banner]:nth-child(2)", timeout=SHOWN_MS)
    assert banners(page) == [OFFLINE_VI, PAPER_VI]
    ui_stack.paper_ok()
    ui_stack.online()
    page.wait_for_selector("#banners [data-banner]", state="detached", timeout=SHOWN_MS)
