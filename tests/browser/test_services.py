"""The service screens in the browser, against the whole stack (tests/browser/ui_stack.py):
tracking after a status change at central (scanned slip and typed code), a support request
answered by staff (screen and hardware button), a question answered, FAQ and news after
central publishes them, a home visit. Every screen passes axe and is photographed.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

from drivers.identity import Identity
from edge_agent.signature import HandwrittenSignature
from tests.browser.a11y import assert_accessible
from tests.browser.ui_stack import UiStack, default_citizen, wait_for
from tests.kiosk import strokes

COPY_FORM = {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 5, "so_ban": 2}
#: A bound for the page to show what the agent already has (events, a GET).
SHOWN_MS = 15_000


def type_into(page: Any, selector: str, text: str) -> None:
    """Replace a field's text as a citizen would: touch the field, then type.

    (A fill without touching the field first appends to it once the on-screen keyboard
    has been open: its focus handler puts the caret at the end; reported.)
    """
    page.click(selector)
    page.fill(selector, text)
    assert page.input_value(selector) == text


def on_screen(page: Any, name: str) -> None:
    # a selector, not wait_for_function: the page's CSP forbids the eval that polling needs
    page.wait_for_selector(f"body[data-screen='{name}']", timeout=SHOWN_MS)


def open_tile(page: Any, name: str) -> None:
    page.click("#btn-home")
    on_screen(page, "home")
    page.click(f"[data-go={name}]")
    on_screen(page, name)


def screen_text(page: Any) -> str:
    return str(page.inner_text("#screen"))


def file_here(stack: UiStack, who: Identity | None = None) -> tuple[str, int]:
    """A dossier filed at the kiosk through its own API (the filing screens are h-filing's)."""
    stack.kiosk.session.set_identity(who or default_citizen())
    prepared = stack.kiosk.filing.prepare("2.000815", COPY_FORM, phone="0912345678")
    sig = HandwrittenSignature.from_strokes(strokes(), width=400, height=200)
    result = stack.kiosk.filing.file(prepared, signature=sig)
    stack.kiosk.filing.confirm_shown(result.code)
    stack.kiosk.session.clear()
    return result.code, int(result.to_json_dict()["fee_vnd"])


def test_tracking_after_a_status_change_at_central_scanned_and_typed(
    page: Any, ui_stack: UiStack, shot: Any
) -> None:
    code, fee = file_here(ui_stack)
    ui_stack.wait_at_central(code)
    for state in ("received", "processing", "result-ready"):
        ui_stack.back_office.set_status(code, state)
    ui_stack.back_office.mark_paid(code, fee)
    wait_for(
        lambda: (
            ui_stack.kiosk.tracking.lookup(code).state == "result-ready"
            and ui_stack.kiosk.tracking.lookup(code).paid
        ),
        "the new status and the payment at the kiosk",
    )

    open_tile(page, "tracking")
    assert "Đặt phiếu hẹn có mã QR vào máy quét" in screen_text(page)
    assert_accessible(page, "tracking")
    shot(page, "tracking")

    # the slip's QR, as printed: the tracking address and the code
    ui_stack.scan_text(ui_stack.cfg.kiosk.tracking_url + code)
    on_screen(page, "tracking-result")
    page.wait_for_selector(f"[data-code='{code}'] .status-state")
    text = screen_text(page)
    assert "Đã có kết quả, mời đến nhận" in text
    assert "Đã nộp" in text and "Nơi nhận kết quả" in text
    assert re.search(r"\d{2}/\d{2}/\d{4}", text), text  # the due date, written the Vietnamese way
    assert_accessible(page, "tracking-result")
    shot(page, "tracking-result")

    # typed, in small letters as a citizen may: the same answer
    page.click("[data-action=again]")
    on_screen(page, "tracking")
    type_into(page, "#tracking-code", code.lower())
    page.click("[data-action=lookup]")
    on_screen(page, "tracking-result")
    assert "Đã có kết quả, mời đến nhận" in screen_text(page)


def test_a_slip_scanned_on_another_screen_opens_its_status(page: Any, ui_stack: UiStack) -> None:
    code, _ = file_here(ui_stack)
    open_tile(page, "info")
    ui_stack.scan_text(code)
    on_screen(page, "tracking-result")
    page.wait_for_selector(f"[data-code='{code}']")
    assert "Đã nộp, chờ tiếp nhận" in screen_text(page)  # filed here, no word from the office yet


def test_tracking_a_wrong_code_names_the_code(
    page: Any, ui_stack: UiStack, shot: Any, page_errors: Any
) -> None:
    page_errors.expect("status of 422")  # the agent's refusal, logged by chromium
    open_tile(page, "tracking")
    page.click("[data-action=lookup]")
    assert "chưa nhập mã hồ sơ" in page.inner_text("#tracking-error")
    type_into(page, "#tracking-code", "12345")
    page.click("[data-action=lookup]")
    page.wait_for_selector("#tracking-error:has-text('Mã hồ sơ không đúng')")
    assert page.get_attribute("#tracking-code", "aria-invalid") == "true"
    assert_accessible(page, "tracking-error")
    shot(page, "tracking-error")

    # a code in the right shape that no one filed
    type_into(page, "#tracking-code", "000.00.14.H56-200101-0999")
    page.click("[data-action=lookup]")
    page.wait_for_selector("body[data-screen='tracking-result'] .tracking-result .error")
    assert "Không tìm thấy hồ sơ 000.00.14.H56-200101-0999" in screen_text(page)
    assert_accessible(page, "tracking-not-found")
    shot(page, "tracking-not-found")


def test_a_support_request_answered_by_staff(page: Any, ui_stack: UiStack, shot: Any) -> None:
    open_tile(page, "support")
    assert_accessible(page, "support")
    shot(page, "support")
    page.click("[data-topic=vneid]")
    on_screen(page, "support-status")
    code = page.get_attribute(".support-status", "data-code")
    assert code and code.startswith("HO-")
    page.wait_for_selector(".support-body[data-status=waiting]")
    assert "0277 3861 234" in screen_text(page)  # the hotline, large
    assert_accessible(page, "support-waiting")
    shot(page, "support-waiting")

    request = wait_for(lambda: ui_stack.back_office.support_request(code), "the request at central")
    assert "vneid" in str(request)
    ui_stack.back_office.reply_support(code)
    page.wait_for_selector(".support-body[data-status=assigned]", timeout=30_000)
    assert "Trần Thị Mai đang đến" in screen_text(page)
    assert_accessible(page, "support-assigned")
    shot(page, "support-assigned")


def test_the_help_button_opens_the_support_screen_anywhere(page: Any, ui_stack: UiStack) -> None:
    open_tile(page, "feedback")
    ui_stack.press_help_button()
    on_screen(page, "support-status")
    code = page.get_attribute(".support-status", "data-code")
    assert code and code.startswith("HO-")
    wait_for(lambda: ui_stack.back_office.support_request(code), "the button's request at central")


def test_a_question_answered(page: Any, ui_stack: UiStack, shot: Any) -> None:
    open_tile(page, "feedback")
    assert_accessible(page, "feedback")
    shot(page, "feedback")
    page.click("[data-category=question]")
    on_screen(page, "feedback-message")
    page.click("[data-action=next]")  # nothing typed: the question says what is missing
    assert "chưa viết nội dung câu hỏi" in screen_text(page)
    type_into(page, "textarea", "Làm lại giấy khai sinh bị mất cần giấy tờ gì?")
    assert_accessible(page, "feedback-message")
    shot(page, "feedback-message")
    page.click("[data-action=next]")
    on_screen(page, "feedback-contact")
    type_into(page, "input", "12")
    page.click("[data-action=next]")
    assert "Số điện thoại chỉ gồm chữ số" in screen_text(page)
    type_into(page, "input", "0912 345 678")
    assert_accessible(page, "feedback-contact")
    shot(page, "feedback-contact")
    page.click("[data-action=next]")
    on_screen(page, "feedback-sent")
    code = page.get_attribute(".lookup-code", "data-code")
    assert code and code.startswith("HT-")
    assert "Ông/Bà dùng mã này để xem câu trả lời" in screen_text(page)
    assert_accessible(page, "feedback-sent")
    shot(page, "feedback-sent")

    inquiry = wait_for(lambda: ui_stack.back_office.inquiry(code), "the question at central")
    assert "khai sinh" in str(inquiry) and "0912345678" in str(inquiry)  # the phone as typed

    # looked up before staff answer: not yet; the answer then arrives on the same screen
    open_tile(page, "feedback")
    page.click("[data-go=feedback-answer]")
    on_screen(page, "feedback-answer")
    type_into(page, "input", code)
    page.click("[data-action=next]")
    page.wait_for_selector(".answer[data-answered=false]")
    assert "Chưa có câu trả lời" in screen_text(page)
    shot(page, "feedback-not-yet")
    ui_stack.back_office.answer_inquiry(code, "Ông/Bà mang căn cước công dân đến quầy số 2.")
    page.wait_for_selector(".answer[data-answered=true]", timeout=30_000)
    assert "quầy số 2" in screen_text(page)
    assert_accessible(page, "feedback-answer")
    shot(page, "feedback-answer")


def test_faq_and_news_shown_after_central_publishes(
    page: Any, ui_stack: UiStack, shot: Any
) -> None:
    open_tile(page, "info")
    page.wait_for_selector("#info-count")
    assert "Chưa có câu hỏi thường gặp nào" in screen_text(page)
    ui_stack.back_office.publish_faq()
    page.wait_for_selector(".info-item[data-id=faq-khai-sinh-mat]", timeout=30_000)
    assert "Giấy khai sinh bị mất thì làm sao?" in screen_text(page)
    assert_accessible(page, "info-faq")
    shot(page, "info-faq")

    type_into(page, "#info-search", "khai sinh mat")  # no diacritics: still found
    page.click("[data-action=search]")
    page.wait_for_selector(".info-item[data-id=faq-khai-sinh-mat]")
    type_into(page, "#info-search", "hộ chiếu")
    page.click("[data-action=search]")
    page.wait_for_selector("#info-count:has-text('Không tìm thấy')")
    assert page.locator(".info-item").count() == 0

    ui_stack.back_office._call(
        "POST",
        "/news",
        json={
            "items": [
                {
                    "id": "tin-thu-5",
                    "title": "Thứ Năm không hẹn",
                    "body": "Mỗi thứ Năm, hồ sơ được nhận và trả ngay trong ngày.",
                }
            ]
        },
    )
    page.click("[data-tab=news]")
    page.wait_for_selector(".info-item[data-id=tin-thu-5]", timeout=30_000)
    assert "Thứ Năm không hẹn" in screen_text(page)
    assert_accessible(page, "info-news")
    shot(page, "info-news")


def test_news_published_while_the_list_is_being_fetched_still_appears(
    page: Any, ui_stack: UiStack
) -> None:
    """The race CI once lost: the answer to GET /news predates the news, and the
    downlink event arrives while that answer is in flight. The screen listens before
    it fetches, so it fetches again; one that listened after would show "no news"."""
    held: list[bool] = []

    def stale_answer(route: Any) -> None:
        if held:  # the fetch the downlink event causes goes through
            route.continue_()
            return
        held.append(True)
        before = route.fetch()  # the kiosk has no news yet
        ui_stack.back_office._call(
            "POST",
            "/news",
            json={"items": [{"id": "tin-tre", "title": "Tin đến trễ", "body": "Nội dung."}]},
        )
        wait_for(lambda: ui_stack.kiosk.info.news(), "the news at the kiosk")
        time.sleep(1.5)  # the downlink event reaches the page meanwhile
        route.fulfill(response=before)

    page.route("**/api/v1/news*", stale_answer)
    open_tile(page, "info")
    page.click("[data-tab=news]")
    page.wait_for_selector(".info-item[data-id=tin-tre]", timeout=30_000)
    assert held == [True]


def test_a_home_visit_request(page: Any, ui_stack: UiStack, shot: Any) -> None:
    ui_stack.scan_card()
    wait_for(lambda: httpx.get(f"{ui_stack.url}/api/v1/session").json()["active"], "the card")
    open_tile(page, "home-visit")
    assert_accessible(page, "home-visit")
    shot(page, "home-visit")
    page.click("[data-reason=nguoi-cao-tuoi]")
    on_screen(page, "home-visit-name")
    assert page.input_value("input") == "Nguyễn Thị Ngọc Hường"  # from the card
    assert_accessible(page, "home-visit-name")
    shot(page, "home-visit-name")
    page.click("[data-action=next]")
    on_screen(page, "home-visit-phone")
    page.click("[data-action=next]")
    assert "chưa nhập số điện thoại" in screen_text(page)
    assert_accessible(page, "home-visit-phone")
    shot(page, "home-visit-phone")
    type_into(page, "input", "0912345678")
    page.click("[data-action=next]")
    on_screen(page, "home-visit-address")
    type_into(page, "textarea", "Số 5, hẻm 3, đường Nguyễn Huệ, Phường 1")
    assert_accessible(page, "home-visit-address")
    shot(page, "home-visit-address")
    page.click("[data-action=next]")
    on_screen(page, "home-visit-sent")
    code = page.get_attribute(".lookup-code", "data-code")
    assert code and code.startswith("TN-")
    assert "0912345678" in screen_text(page)
    assert_accessible(page, "home-visit-sent")
    shot(page, "home-visit-sent")
    request = wait_for(lambda: ui_stack.back_office.support_request(code), "the visit at central")
    assert "Người cao tuổi" in str(request)


def test_home_shows_the_office_and_the_hotline(page: Any, ui_stack: UiStack, shot: Any) -> None:
    on_screen(page, "home")
    page.wait_for_selector(".office-name")
    text = screen_text(page)
    assert "UBND Phường 1, TP. Sa Đéc" in text and "0277 3861 234" in text
    for name in ("filing-start", "tracking", "support", "info", "feedback", "home-visit"):
        assert page.locator(f"[data-go={name}]").count() == 1
    assert_accessible(page, "home")
    shot(page, "home")


def test_a_home_visit_for_another_reason_in_large_text(
    page: Any, ui_stack: UiStack, shot: Any
) -> None:
    page.click("#btn-bigtext")  # "Chữ to": the same screens, larger
    open_tile(page, "home-visit")
    page.click("[data-reason=khac]")
    on_screen(page, "home-visit-other")
    page.click("[data-action=next]")
    assert "chưa viết lý do" in screen_text(page)
    type_into(page, "textarea", "Mẹ tôi mới mổ, không đi lại được")
    assert_accessible(page, "home-visit-other")
    shot(page, "home-visit-other-bigtext")
    page.click("[data-action=next]")
    on_screen(page, "home-visit-name")
    assert page.input_value("input") == ""  # no card read: nothing to prefill
    type_into(page, "input", "Lê Văn Tám")
    page.click("[data-action=next]")
    type_into(page, "input", "0277 3861 999")
    page.click("[data-action=next]")
    type_into(page, "textarea", "Ấp Tân Hòa, xã Tân Khánh Đông")
    page.click("[data-action=next]")
    on_screen(page, "home-visit-sent")
    code = page.get_attribute(".lookup-code", "data-code")
    assert code and code.startswith("TN-")
    request = wait_for(lambda: ui_stack.back_office.support_request(code), "the visit at central")
    assert "mới mổ" in str(request) and "02773861999" in str(request)
