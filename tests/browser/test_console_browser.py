"""The web console in headless Debian chromium, served by the real uvicorn (ApiServer) on a
seeded central: log in, every page (axe: no serious or critical violation), roles enforced,
keyboard use, no script and no CSP violation. Screenshots: docs/img/console-*.png with
``APS_UI_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.web.server import ApiServer
from tests.browser.a11y import DOCS_IMG, assert_accessible, route_axe, take_shot
from tests.console_seed import OFFICE_B, PASSWORD, Seeded, app_for, seed

VIEWPORT = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("console-browser") / "central.db")


@pytest.fixture(scope="module")
def server(seeded: Seeded) -> Iterator[str]:
    api = ApiServer(app_for(seeded.db), "127.0.0.1", 0)
    api.start()
    try:
        yield f"http://127.0.0.1:{api.bound_port}"
    finally:
        api.stop()


def _context(browser: Any, *, bypass_csp: bool) -> Any:
    context = browser.new_context(
        viewport=VIEWPORT, locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", bypass_csp=bypass_csp
    )
    context.set_default_timeout(15_000)
    route_axe(context)
    return context


@pytest.fixture
def console_context(browser: Any) -> Iterator[Any]:
    """The console as a browser sees it: its Content-Security-Policy in force."""
    context = _context(browser, bypass_csp=False)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def axe_context(browser: Any) -> Iterator[Any]:
    """For the axe scans only: the CSP (no script at all) would refuse axe's own script."""
    context = _context(browser, bypass_csp=True)
    try:
        yield context
    finally:
        context.close()


def _login(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/console/login")
    page.get_by_label("Tên đăng nhập").fill(name)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{base}/console/")


def _shot(page: Any, name: str, tmp_path: Path) -> None:
    wanted = os.environ.get("APS_UI_SCREENSHOTS", "") not in ("", "0")
    target = DOCS_IMG if wanted else tmp_path
    take_shot(page, target / f"console-{name}.png")


def _pages(s: Seeded) -> dict[str, str]:
    return {
        "fleet": "/console/",
        "kiosk": "/console/kiosks/k-a-degraded",
        "alerts": "/console/alerts",
        "alert": f"/console/alerts/{s.alert_a}",
        "charts": "/console/charts",
        "support": "/console/support",
        "support-request": f"/console/support/{s.support_a}",
        "inquiries": "/console/inquiries",
        "inquiry": f"/console/inquiries/{s.inquiry_a}",
        "dossiers": "/console/dossiers",
        "dossier": f"/console/dossiers/{s.dossier_a}",
        "users": "/console/users",
    }


def test_every_page_passes_axe_and_is_photographed(
    axe_context: Any, server: str, seeded: Seeded, tmp_path: Path
) -> None:
    page = axe_context.new_page()
    page.goto(f"{server}/console/login")
    assert_accessible(page, "console-login")
    _shot(page, "login", tmp_path)
    _login(page, server, "quan.tri")
    for name, path in _pages(seeded).items():
        response = page.goto(f"{server}{path}")
        assert response is not None and response.status == 200, path
        assert page.locator("h1").count() == 1, path
        assert_accessible(page, f"console-{name}")
        _shot(page, name, tmp_path)


def test_no_page_runs_a_script_or_breaks_the_csp(
    console_context: Any, server: str, seeded: Seeded
) -> None:
    page = console_context.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.on("pageerror", lambda e: messages.append(str(e)))
    _login(page, server, "quan.tri")
    for path in _pages(seeded).values():
        page.goto(f"{server}{path}")
        assert page.evaluate("() => document.scripts.length") == 0, path
        # the stylesheet loaded under style-src 'self'
        assert page.evaluate("() => document.styleSheets.length") == 1, path
    assert messages == []


def test_staff_work_by_keyboard_and_see_only_their_office(
    console_context: Any, server: str, seeded: Seeded, tmp_path: Path
) -> None:
    page = console_context.new_page()
    _login(page, server, "can.bo.a")
    # The skip link is the first stop of the keyboard, and leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent").startswith("Bỏ qua")
    assert page.get_by_role("link", name="Tài khoản").count() == 0  # no admin menu
    assert OFFICE_B not in page.content()
    # Answer a question using the keyboard only.
    page.goto(f"{server}/console/inquiries/{seeded.inquiry_a}")
    page.get_by_label("Câu trả lời (người dân sẽ đọc)").focus()
    page.keyboard.type("Ông/bà mang giấy chứng sinh và căn cước.")
    page.keyboard.press("Tab")
    page.keyboard.type("Bộ phận một cửa")
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert "Ông/bà mang giấy chứng sinh và căn cước." in page.content()
    # Another office's things are not there, by URL either; the admin pages are closed.
    for path in (
        f"/console/kiosks/{seeded.kiosk_b}",
        f"/console/dossiers/{seeded.dossier_b}",
        f"/console/support/{seeded.support_b}",
        f"/console/alerts/{seeded.alert_b}",
    ):
        response = page.goto(f"{server}{path}")
        assert response is not None and response.status == 404, path
        assert "Không tìm thấy" in page.content()
    response = page.goto(f"{server}/console/users")
    assert response is not None and response.status == 403
    _shot(page, "staff-refused", tmp_path)


def test_a_viewer_sees_every_office_and_no_forms(
    console_context: Any, server: str, seeded: Seeded
) -> None:
    page = console_context.new_page()
    _login(page, server, "nguoi.xem")
    text = page.content()
    assert seeded.kiosk_a in text and seeded.kiosk_b in text
    page.goto(f"{server}/console/dossiers/{seeded.dossier_b}")
    assert page.get_by_role("button", name="Cập nhật").count() == 0
    page.goto(f"{server}/console/support/{seeded.support_b}")
    assert page.get_by_role("button", name="Nhận việc").count() == 0


def test_logging_out_ends_the_session(console_context: Any, server: str) -> None:
    page = console_context.new_page()
    _login(page, server, "quan.tri")
    page.get_by_role("button", name="Đăng xuất").click()
    page.wait_for_url(f"{server}/console/login")
    page.goto(f"{server}/console/")
    assert page.url.startswith(f"{server}/console/login")


def test_an_admin_queues_a_job_on_a_kiosk_and_cancels_it(
    console_context: Any, server: str, seeded: Seeded, tmp_path: Path
) -> None:
    page = console_context.new_page()
    _login(page, server, "quan.tri")
    kiosk_page = f"{server}/console/kiosks/{seeded.kiosk_a}"
    page.goto(kiosk_page)
    page.get_by_label("Việc cần làm").select_option(label="Thu thập thông tin chẩn đoán")
    page.get_by_label("Thời hạn", exact=False).fill("2h")
    with page.expect_navigation():
        page.get_by_role("button", name="Giao việc").click()
    assert page.url == kiosk_page
    jobs = page.locator("section[aria-labelledby=h-jobs] tbody tr")
    row = jobs.filter(has_text="Thu thập thông tin chẩn đoán")
    assert row.count() == 1 and "Đang chờ" in row.inner_text()
    assert "console:quan.tri" in row.inner_text()
    page.get_by_role("button", name="Giao việc").scroll_into_view_if_needed()
    _shot(page, "kiosk-jobs", tmp_path)
    with page.expect_navigation():
        row.get_by_role("button", name="Huỷ").click()
    row = jobs.filter(has_text="Thu thập thông tin chẩn đoán")
    assert "Đã huỷ" in row.inner_text() and row.get_by_role("button").count() == 0
