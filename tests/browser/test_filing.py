"""The filing flow on the touch screen, against the real agent, broker and central.

Each test walks the screens as a citizen would (taps, the on-screen fields, a signature
drawn on the canvas) and checks what matters at the far end: the dossier at central with
its signature, the rating, the printer-out and offline states, the unconfirmed filing
after a restart. Every screen passes axe and is photographed (docs/img/ui-filing-*.png
with --ui-screenshots).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from central import attachments
from tests.browser.a11y import assert_accessible
from tests.browser.conftest import PageErrors
from tests.browser.ui_stack import KIOSK_ID, UiStack, default_citizen, wait_for

Shot = Callable[[Any, str], Path]

COPY = "2.000815"  # Chứng thực bản sao từ bản chính: a per-page fee
COPY_ANSWERS = {
    "applicant.phone": "0912345678",
    "form.ten_giay_to": "Học bạ trung học phổ thông",
    "form.so_trang": "3",
    "form.so_ban": "2",
}
#: 2 copies of 3 pages: (2.000 + 2.000 + 1.000) x 2.
COPY_FEE_VND = 10_000


def look(page: Any, name: str, shot: Shot | None) -> None:
    """Every screen of the flow: no serious accessibility problem, nothing wider than the
    screen (in "Chữ to" too), every button a 64 px target, and its picture."""
    assert_accessible(page, name)
    wide = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, f"screen {name!r} is {wide}px wider than the window"
    small = page.evaluate(
        """() => [...document.querySelectorAll('#screen button')]
            .filter((b) => b.offsetParent !== null)
            .map((b) => b.getBoundingClientRect())
            .filter((r) => r.width < 64 || r.height < 64).length"""
    )
    assert small == 0, f"screen {name!r}: {small} button(s) smaller than 64x64 CSS px"
    if shot is not None:
        shot(page, name)


def central_rows(stack: UiStack, kind: str) -> list[dict[str, Any]]:
    """The record bodies of ``kind`` central has committed (its own database, read-only)."""
    uri = f"file:{stack.central_db}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as conn:
        rows = conn.execute("SELECT body FROM records WHERE kind = ?", (kind,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def central_attachment(stack: UiStack, att: str) -> bytes | None:
    """A complete attachment's bytes at central (read back from its chunks), or None."""
    uri = f"file:{stack.central_db}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as conn:
        return attachments.read_file(conn, KIOSK_ID, att)


def central_dossier(stack: UiStack, code: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: next((b for b in central_rows(stack, "dossier") if b["code"] == code), None),
        f"dossier {code} in central's records",
        60,
    )
    return found


# -- the citizen's moves ------------------------------------------------------------------
def enter(page: Any, selector: str, text: str) -> None:
    """Put ``text`` in a field as a typed value (an ``input`` event), whatever was there.

    (Typing on the on-screen keyboard itself is tests/browser/test_widgets.py's business.)
    """
    page.locator(selector).evaluate(
        "(el, v) => { el.focus(); el.value = v;"
        " el.dispatchEvent(new Event('input', { bubbles: true })); }",
        text,
    )


def open_filing(page: Any, shot: Shot | None = None) -> None:
    page.locator("[data-go=filing-start]").click()
    page.locator(".filing-scan-picture").wait_for()
    assert "căn cước công dân" in page.locator("main h2").inner_text()
    look(page, "filing-start", shot)


def card_read(page: Any, stack: UiStack, shot: Shot | None = None) -> None:
    citizen = stack.scan_card()
    page.locator("[data-action=card-ok]").wait_for()
    assert page.locator(".filing-who-name").inner_text() == citizen.full_name
    shown = page.locator(".filing-who").inner_text()
    assert citizen.id_number[-4:] in shown and citizen.id_number not in shown  # masked
    look(page, "filing-card-read", shot)
    page.locator("[data-action=card-ok]").click()


def choose(page: Any, code: str, shot: Shot | None = None, query: str | None = None) -> None:
    page.locator(".filing-row").first.wait_for()
    look(page, "filing-choose", shot)
    if query is not None:
        enter(page, "#filing-search", query)
        # the list narrows to matches (birth registration is not one of them)
        page.locator("[data-code='1.001193']").wait_for(state="detached")
        assert_accessible(page, "filing-search")  # with the keyboard open
    page.locator(f"[data-code='{code}']").click()
    page.locator("[data-action=start]").wait_for()
    assert page.locator(".filing-papers li").count() >= 1  # the papers to bring, before starting
    look(page, "filing-procedure", shot)
    page.locator("[data-action=start]").click()


def answer(page: Any, answers: dict[str, str], shot: Shot | None = None) -> list[str]:
    """Answer each question on its own screen until the review; returns the fields asked."""
    asked: list[str] = []
    for _ in range(20):
        page.locator(".filing-question, .filing-review, .filing-papers-step").first.wait_for()
        if page.locator(".filing-papers-step").count():
            step = page.locator(".filing-papers-step").element_handle()
            page.locator("[data-action=skip]").click()  # no photos: the papers go to the desk
            page.wait_for_function("(node) => !node.isConnected", arg=step)
            continue
        if page.locator(".filing-review, .filing-wrong").count():
            return asked  # the review, or a question the agent sent back
        question = page.locator(".filing-question")
        field = question.get_attribute("data-field")
        assert field is not None and field not in asked[-1:], f"stuck on {field}"
        asked.append(field)
        if len(asked) == 1:
            look(page, "filing-question", shot)
        enter(page, "#filing-answer", answers.get(field, ""))
        handle = question.element_handle()
        page.locator("[data-action=next]").click()
        page.wait_for_function("(node) => !node.isConnected", arg=handle)
    raise AssertionError(f"never reached the review; asked {asked}")


def draw_signature(page: Any) -> None:
    canvas = page.locator(".filing-pad canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    assert box is not None
    x, y = box["x"], box["y"]
    page.mouse.move(x + 60, y + 150)
    page.mouse.down()
    for px, py in ((120, 80), (200, 190), (280, 70), (360, 160)):
        page.mouse.move(x + px, y + py, steps=6)
    page.mouse.up()


def sign_and_file(page: Any, shot: Shot | None = None) -> str:
    page.locator("[data-action=sign]").click()
    draw_signature(page)
    look(page, "filing-sign", shot)
    posts: list[str] = []

    def on_request(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/v1/filings"):
            posts.append(request.url)

    page.on("request", on_request)
    # a double tap files once: two taps on "Nộp hồ sơ" before the first answer comes back
    page.locator("[data-action=file]").evaluate("(b) => { b.click(); b.click(); }")
    page.locator("[data-fact=code]").wait_for()
    page.remove_listener("request", on_request)
    assert len(posts) == 1, f"{len(posts)} POST /filings for one double tap"
    return str(page.locator("[data-fact=code]").inner_text()).strip()


def shown_confirmed(stack: UiStack) -> bool:
    return stack.kiosk.filing.last_unconfirmed() is None


# -- the tests ----------------------------------------------------------------------------
def test_whole_filing_with_fee_signature_and_rating_reaches_central(
    page: Any, ui_stack: UiStack, shot: Shot
) -> None:
    ui_stack.wait_online()
    open_filing(page, shot)
    card_read(page, ui_stack, shot)
    choose(page, COPY, shot, query="sao y")
    asked = answer(page, COPY_ANSWERS, shot)
    # only what the card cannot give: no name, ID number, birth date or address asked
    assert asked == ["applicant.phone", "form.ten_giay_to", "form.so_trang", "form.so_ban"]

    review = page.locator(".filing-review")
    text = review.inner_text()
    citizen = default_citizen()
    assert citizen.full_name in text and "14/03/1954" in text and "Học bạ" in text
    assert citizen.id_number not in text
    assert page.locator(".filing-review-fee").inner_text() == "Lệ phí: 10.000 đồng"
    look(page, "filing-review", shot)

    code = sign_and_file(page, shot)
    assert page.locator("[data-fact=fee]").inner_text() == "10.000 đồng"
    assert page.locator(".filing-print").get_attribute("data-state") == "printed"
    # the VietQR of the fee (the stack's office has an account), loaded from the agent
    page.wait_for_function(
        "() => { const i = document.querySelector('.filing-qr'); return i && i.complete"
        " && i.naturalWidth > 0; }"
    )
    payment = page.locator(".filing-payment").inner_text()
    assert "Số tiền: 10.000 đồng" in payment and "quét bằng ứng dụng ngân hàng" in payment.lower()
    wait_for(lambda: shown_confirmed(ui_stack), "the screen to confirm the code as shown", 10)
    look(page, "filing-result", shot)

    page.locator("[data-action=next]").click()
    page.locator(".filing-rate").first.wait_for()
    look(page, "filing-rating", shot)
    page.locator("[data-level=rat_hai_long]").click()
    page.locator("[data-action=end]").wait_for()
    look(page, "filing-thanks", shot)

    dossier = central_dossier(ui_stack, code)
    assert dossier["procedure"] == COPY
    assert dossier["fee"]["amount_vnd"] == COPY_FEE_VND
    assert dossier["form"]["ten_giay_to"] == COPY_ANSWERS["form.ten_giay_to"]
    assert dossier["form"]["so_trang"] == 3 and dossier["form"]["so_ban"] == 2
    signature = dossier["signature"]
    assert signature["method"] == "handwritten"
    png = wait_for(
        lambda: central_attachment(ui_stack, signature["image_att"]), "the signature image"
    )
    assert png.startswith(b"\x89PNG")
    strokes = json.loads(
        wait_for(lambda: central_attachment(ui_stack, signature["strokes_att"]), "the strokes")
    )
    assert len(strokes["strokes"]) == 1 and len(strokes["strokes"][0]) >= 10
    assert [d["code"] for d in central_rows(ui_stack, "dossier")] == [code]  # filed once
    rating = wait_for(
        lambda: [r for r in central_rows(ui_stack, "rating") if r.get("dossier_code") == code],
        "the rating at central",
    )
    assert rating[0]["level"] == "rat_hai_long"

    page.locator("[data-action=end]").click()
    page.locator("[data-go=filing-start]").wait_for()
    assert page.evaluate("() => JSON.stringify(window.sessionStorage)") == "{}"


def test_a_wrong_field_is_named_on_its_question_and_fixed(
    page: Any, ui_stack: UiStack, shot: Shot, page_errors: PageErrors
) -> None:
    page_errors.expect("422 (Unprocessable Entity) (http://127.0.0.1")  # the refusal itself
    open_filing(page)
    card_read(page, ui_stack)
    choose(page, COPY)
    # a phone number the agent refuses (the screen lets it through: digits only is the rule)
    answer(page, {**COPY_ANSWERS, "applicant.phone": "12"})
    wrong = page.locator(".filing-question.filing-wrong[data-field='applicant.phone']")
    wrong.wait_for()
    message = page.locator(".filing-message.error").inner_text()
    assert "«Số điện thoại»" in message  # the field in the question's own words
    assert page.locator(".filing-question-label").inner_text() == "Số điện thoại"
    look(page, "filing-wrong-field", shot)
    enter(page, "#filing-answer", "0912345678")
    page.locator("[data-action=next]").click()
    page.locator(".filing-review").wait_for()
    assert "0912345678" in page.locator(".filing-review").inner_text()

    # "Sửa" on one line goes to that question and back to the review
    page.locator(".filing-review-line[data-field='form.so_ban'] [data-action=edit]").click()
    page.locator(".filing-question[data-field='form.so_ban']").wait_for()
    assert page.locator("#filing-answer").input_value() == "2"  # what was given is shown
    enter(page, "#filing-answer", "1")
    page.locator("[data-action=next]").click()
    page.locator(".filing-review").wait_for()
    assert page.locator(".filing-review-fee").inner_text() == "Lệ phí: 5.000 đồng"


def test_printer_out_shows_the_code_large_calls_staff_and_reprints(
    page: Any, ui_stack: UiStack, shot: Shot
) -> None:
    ui_stack.paper_out()
    open_filing(page)
    card_read(page, ui_stack)
    choose(page, COPY)
    answer(page, COPY_ANSWERS)
    code = sign_and_file(page)
    box = page.locator(".filing-print[data-state=not-printed]")
    box.wait_for()
    assert page.evaluate("() => document.body.classList.contains('filing-printer-out')")
    size = page.evaluate(
        "() => parseFloat(getComputedStyle(document.querySelector('.filing-code')).fontSize)"
    )
    assert size >= 72  # extra large: 3.2em of 24 px
    assert "Máy in chưa in được phiếu hẹn" in box.inner_text()
    result = ui_stack.kiosk.filing.last_unconfirmed()
    assert result is None  # the code is on screen: confirmed even without a slip
    assert "Cán bộ đang đến" in page.locator("[data-fact=staff-called]").inner_text()
    look(page, "filing-printer-out", shot)

    ui_stack.paper_ok()
    page.get_by_text("Máy in đã sẵn sàng").wait_for()  # the printer event, before any tap
    page.locator("[data-action=reprint]").click()
    page.locator(".filing-print[data-state=printed]").wait_for()
    assert "nhận phiếu hẹn" in page.locator(".filing-print").inner_text()
    assert code in page.locator("[data-fact=code]").inner_text()


def test_offline_filing_is_saved_and_reaches_central_when_online(
    page: Any, ui_stack: UiStack, shot: Shot
) -> None:
    ui_stack.wait_online()
    ui_stack.offline()
    open_filing(page)
    card_read(page, ui_stack)
    choose(page, COPY)
    answer(page, COPY_ANSWERS)
    code = sign_and_file(page)
    offline = page.locator("[data-fact=offline]")
    offline.wait_for()
    assert offline.inner_text() == (
        "Hồ sơ đã được lưu trên máy và sẽ tự gửi đi khi có mạng. Ông/Bà không cần làm gì thêm."
    )
    look(page, "filing-offline", shot)
    ui_stack.online()
    offline.wait_for(state="hidden")  # the sync event says the kiosk is online again
    assert central_dossier(ui_stack, code)["code"] == code


def test_unconfirmed_filing_is_shown_first_after_a_restart(
    page: Any, ui_stack: UiStack, shot: Shot
) -> None:
    # filed, then the agent dies before any screen showed the code
    ui_stack.scan_card()
    api = f"{ui_stack.url}/api/v1"
    wait_for(lambda: httpx.get(f"{api}/session", timeout=10).json()["active"], "the card read")
    prepared = httpx.post(
        f"{api}/filings/prepare",
        json={"procedure": COPY, "form": {"ten_giay_to": "Học bạ", "so_trang": 1, "so_ban": 1}},
        timeout=10,
    ).json()
    strokes = [[[10, 10, 0], [50, 60, 40], [90, 20, 80]]]
    filed = httpx.post(
        f"{api}/filings",
        json={
            "document_sha256": prepared["document_sha256"],
            "signature": {"type": "handwritten", "width": 200, "height": 100, "strokes": strokes},
        },
        timeout=20,
    ).json()
    url = ui_stack.restart_kiosk()

    page.goto(url + "/")
    page.locator(".filing-unconfirmed").wait_for()
    assert page.locator("[data-fact=code]").inner_text() == filed["code"]
    assert page.locator("[data-fact=name]").inner_text() == default_citizen().full_name
    assert "Hồ sơ này đã được lưu" in page.locator("main h2").inner_text()
    wait_for(lambda: shown_confirmed(ui_stack), "the screen to confirm it as shown", 10)
    look(page, "filing-unconfirmed", shot)
    page.locator("[data-action=done]").click()
    page.locator("[data-go=filing-start]").wait_for()

    page.reload()  # shown once: the next start goes straight home
    page.locator("[data-go=filing-start]").wait_for()
    assert page.locator(".filing-unconfirmed").count() == 0


def test_typed_details_without_a_card(page: Any, ui_stack: UiStack, shot: Shot) -> None:
    page.locator("#btn-bigtext").click()  # "Chữ to": every screen below in large text
    assert page.evaluate("() => document.documentElement.classList.contains('bigtext')")
    open_filing(page)
    page.locator("[data-action=no-card]").click()
    page.locator(".filing-question[data-field='applicant.full_name']").wait_for()
    look(page, "filing-typed-name", shot)
    enter(page, "#filing-answer", "Trần Văn Bình")
    page.locator("[data-action=next]").click()

    page.locator(".filing-question[data-field='applicant.id_number']").wait_for()
    assert page.locator("#filing-answer").get_attribute("data-keyboard") == "numeric"
    enter(page, "#filing-answer", "0872")
    page.locator("[data-action=next]").click()
    assert "12 chữ số" in page.locator(".filing-message.error").inner_text()
    enter(page, "#filing-answer", "087201009876")
    page.locator("[data-action=next]").click()

    page.locator(".filing-question[data-field='applicant.date_of_birth']").wait_for()
    enter(page, "#filing-date-day", "31")
    enter(page, "#filing-date-month", "2")
    enter(page, "#filing-date-year", "1950")
    page.locator("[data-action=next]").click()
    assert "không phải ngày hợp lệ" in page.locator(".filing-message.error").inner_text()
    enter(page, "#filing-date-day", "2")
    enter(page, "#filing-date-month", "1")
    look(page, "filing-typed-date", shot)
    page.locator("[data-action=next]").click()

    choose(page, COPY)
    asked = answer(page, {**COPY_ANSWERS, "applicant.address": "Ấp Tân Hòa, xã Tân Khánh Đông"})
    assert asked[0] == "applicant.address" and "applicant.full_name" not in asked
    text = page.locator(".filing-review").inner_text()
    assert "Trần Văn Bình" in text and "********9876" in text and "02/01/1950" in text
    code = sign_and_file(page)
    dossier = central_dossier(ui_stack, code)
    assert dossier["applicant"]["full_name"] == "Trần Văn Bình"
    assert dossier["identity_source"] == "typed"


def test_papers_photographed_retaken_and_filed_with_the_dossier(
    page: Any, ui_stack: UiStack, shot: Shot
) -> None:
    open_filing(page)
    card_read(page, ui_stack)
    choose(page, COPY)
    for field, value in COPY_ANSWERS.items():  # the questions, then the papers step
        page.locator(f".filing-question[data-field='{field}']").wait_for()
        enter(page, "#filing-answer", value)
        page.locator("[data-action=next]").click()
    page.locator(".filing-papers-step").wait_for()
    assert page.locator("[data-fact=pages]").inner_text() == "Chưa chụp trang nào."
    page.locator("[data-action=capture]").click()

    loaded = (
        "() => { const i = document.querySelector('.filing-page-preview');"
        " return i && i.complete && i.naturalWidth > 0 ? i.getAttribute('src') : null; }"
    )
    first = page.wait_for_function(loaded).json_value()
    assert page.locator("main h2").inner_text() == "Ảnh có rõ không?"
    look(page, "filing-papers-preview", shot)
    page.locator("[data-action=retake]").click()
    page.wait_for_function(f"() => ({loaded})() && ({loaded})() !== {json.dumps(first)}")
    page.locator("[data-action=accept]").click()
    page.locator("[data-fact=pages]").wait_for()
    assert page.locator("[data-fact=pages]").inner_text() == "Đã chụp 1 trang."
    assert page.locator("main h2").inner_text() == "Chụp giấy tờ bản chính"
    look(page, "filing-papers", shot)
    page.locator("[data-action=next]").click()

    page.locator(".filing-review").wait_for()
    pages = page.locator(".filing-review-line[data-field=papers]").inner_text()
    assert "1 trang" in pages
    code = sign_and_file(page)
    dossier = central_dossier(ui_stack, code)
    photos = [a for a in dossier["attachments"] if a["mime"] == "image/jpeg"]
    assert [a["name"] for a in photos] == ["trang-01.jpg"]
    jpeg = wait_for(lambda: central_attachment(ui_stack, photos[0]["att"]), "the page at central")
    assert jpeg.startswith(b"\xff\xd8")


def test_an_unreadable_card_says_so_and_a_good_one_is_read_after(
    page: Any, ui_stack: UiStack, shot: Shot
) -> None:
    open_filing(page)
    ui_stack.scan_text("087205001234||Nguyễn Văn A|14031954")  # a CCCD QR cut short
    alert = page.locator(".filing-message.error")
    alert.wait_for()
    assert "Xin mời Ông/Bà" in alert.inner_text()
    look(page, "filing-card-error", shot)
    card_read(page, ui_stack)
    page.locator(".filing-row").first.wait_for()
