"""The screen's widgets in Debian's Chromium against the real agent API.

The on-screen keyboard (Telex, VNI, the mark and tone buttons, the numeric pad), the
signature pad (mouse and touch strokes filed through POST /api/v1/filings) and read-aloud
(the "Đọc to" button). The page is the agent's own (its content security policy on); each
test mounts a field or a pad on the screen and loads the widget modules as the page does.
The widgets' pure logic runs under Node first (tests/js/widgets_logic.test.mjs).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.api import ApiServer
from edge_agent.api.speech import UNAVAILABLE_VI
from edge_agent.app import KioskApp
from edge_agent.devices import DeviceEvent
from tests.browser.a11y import assert_accessible
from tests.browser.conftest import PageErrors
from tests.kiosk import app_config, card

ROOT = Path(__file__).resolve().parents[2]
V1 = "/api/v1"
WAIT_MS = 10_000
COPY_FORM = {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 5, "so_ban": 2}
NAME = "Nguyễn Thị Ngọc Hường"


# -- the widgets' pure logic under Node ----------------------------------------------------


def test_widget_logic_under_node() -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail("node is not on PATH: run scripts/bootstrap.sh (it installs nodejs)")
    run = subprocess.run(
        [node, "--test", str(ROOT / "tests/js/widgets_logic.test.mjs")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


# -- fixtures: the agent's API over a real KioskApp (no broker needed), and its page --------
# (browser, browser_context and page_errors come from tests/browser/conftest.py)


@contextlib.contextmanager
def serve(tmp_path: Path, **ui: Any) -> Iterator[tuple[KioskApp, ApiServer]]:
    cfg = app_config(tmp_path)
    if ui:
        cfg = cfg.model_copy(update={"ui": cfg.ui.model_copy(update=ui)})
    app = KioskApp(cfg)
    app.start()
    srv = ApiServer(app, "127.0.0.1:0")
    try:
        srv.start()
        yield app, srv
    finally:
        srv.stop()
        app.stop()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[KioskApp, ApiServer]]:
    with serve(tmp_path) as pair:
        yield pair


@pytest.fixture
def kiosk(served: tuple[KioskApp, ApiServer]) -> KioskApp:
    return served[0]


@pytest.fixture
def server(served: tuple[KioskApp, ApiServer]) -> ApiServer:
    return served[1]


class Screen:
    """The agent's page in Chromium (its CSP on), with the widget modules loaded."""

    def __init__(self, context: Any, url: str, errors: PageErrors) -> None:
        self.context = context
        self.page = context.new_page()
        self.errors = errors
        self.page.on("pageerror", lambda e: errors.messages.append(f"page error: {e}"))
        self.page.on(
            "console",
            lambda m: (
                errors.messages.append(f"console.error: {m.text}") if m.type == "error" else None
            ),
        )
        self.page.set_default_timeout(WAIT_MS)
        self.page.goto(url + "/")
        self.page.wait_for_selector("body[data-screen=home]")
        # index.html gets the <link> at the merge; until then the test adds it
        if not self.page.locator('link[href="/static/css/widgets.css"]').count():
            self.page.add_style_tag(url="/static/css/widgets.css")
        self.page.evaluate("import('/static/js/widgets.js')")

    def field(self, mode: str, attrs: dict[str, str] | None = None) -> Any:
        """A field on the screen with the keyboard attached; its input events are counted."""
        self.page.evaluate(
            """async ([mode, attrs]) => {
                const kb = await import('/static/js/keyboard.js');
                const input = document.createElement(attrs.tag || 'input');
                input.id = 'f';
                input.setAttribute('aria-label', 'Họ và tên');
                for (const [k, v] of Object.entries(attrs)) {
                    if (k !== 'tag') input.setAttribute(k, v);
                }
                window.inputEvents = [];
                input.addEventListener('input', (e) => window.inputEvents.push(e.inputType));
                const filler = document.createElement('div');
                filler.className = 'tiles';
                for (let i = 0; i < 6; i++) {
                    const b = document.createElement('button');
                    b.textContent = `Ô ${i + 1}`;
                    filler.append(b);
                }
                document.getElementById('screen').replaceChildren(filler, input);
                kb.attachKeyboard(input, mode);
            }""",
            [mode, attrs or {}],
        )
        return self.page.locator("#f")

    def key(self, selector: str) -> None:
        self.page.locator(f"#keyboard {selector}").tap()

    def tap_text(self, text: str) -> None:
        """Tap the on-screen keys that type ``text`` (capitals through the shift key)."""
        for ch in text:
            if ch == " ":
                self.key('[data-action="space"]')
            elif ch.isalpha() and ch.isupper():
                self.key('[data-action="shift"]')
                self.key(f'[data-key="{ch.lower()}"]')
            else:
                self.key(f'[data-key="{ch}"]')

    def value(self) -> str:
        v: str = self.page.locator("#f").input_value()
        return v

    def input_events(self) -> list[str]:
        events: list[str] = self.page.evaluate("window.inputEvents")
        return events

    def check_errors(self) -> None:
        bad = self.errors.unexpected()
        assert not bad, "the page logged errors:\n" + "\n".join(bad)


@pytest.fixture
def screen(browser_context: Any, server: ApiServer, page_errors: PageErrors) -> Iterator[Screen]:
    s = Screen(browser_context, server.url, page_errors)
    yield s
    s.check_errors()


@pytest.fixture
def vni_screen(browser_context: Any, tmp_path: Path, page_errors: PageErrors) -> Iterator[Screen]:
    """An office that types VNI (``[ui] typing_method = "vni"``, read from GET /kiosk)."""
    with serve(tmp_path, typing_method="vni") as (_, srv):
        s = Screen(browser_context, srv.url, page_errors)
        yield s
        s.check_errors()


# -- the keyboard ----------------------------------------------------------------------------


def test_telex_by_tapping_keys_gives_the_name(screen: Screen) -> None:
    field = screen.field("text")
    field.tap()
    screen.page.wait_for_selector("#keyboard:not([hidden])")
    keys = "Nguyeenx Thij Ngocj Huwowngf"
    screen.tap_text(keys)
    assert screen.value() == NAME
    events = screen.input_events()
    assert len(events) == len(keys) and set(events) == {"insertText"}
    caret = screen.page.evaluate("[f.selectionStart, f.selectionEnd, f.value.length]")
    assert caret[0] == caret[1] == caret[2]
    assert screen.page.evaluate("document.activeElement.id") == "f"


def test_mark_and_tone_buttons_give_the_name(screen: Screen) -> None:
    screen.field("text").tap()
    screen.tap_text("Nguyen")
    screen.key('[data-mark="ê"]')
    screen.key('[data-tone="4"]')  # ngã
    screen.tap_text(" Thi")
    screen.key('[data-tone="5"]')  # nặng
    screen.tap_text(" Ngoc")
    screen.key('[data-tone="5"]')
    screen.tap_text(" Huong")
    screen.key('[data-mark="ư"]')  # ươ together
    screen.key('[data-tone="2"]')  # huyền
    assert screen.value() == NAME
    # a tone with no vowel to take it changes nothing and says what to do
    screen.tap_text(" ng")
    screen.key('[data-tone="1"]')
    assert screen.value() == NAME + " ng"
    assert "gõ chữ trước" in screen.page.locator("#keyboard .kb-hint").inner_text()
    screen.key('[data-mark="ư"]')  # no u: the letter itself
    assert screen.value() == NAME + " ngư"
    assert screen.page.locator("#keyboard .kb-hint").is_hidden()


def test_vni_from_the_kiosk_settings(vni_screen: Screen) -> None:
    vni_screen.field("text").tap()
    vni_screen.page.wait_for_selector("#keyboard[data-method=vni]")
    vni_screen.tap_text("Nguye6n4 Thi5 Ngoc5 Hu7o7ng2")
    assert vni_screen.value() == NAME
    vni_screen.tap_text(" to")  # the buttons feed VNI keys in VNI: "to" + ô + sắc
    vni_screen.key('[data-mark="ô"]')
    vni_screen.key('[data-tone="1"]')
    assert vni_screen.value() == NAME + " tố"


def test_backspace_keeps_the_word_editable(screen: Screen) -> None:
    screen.field("text").tap()
    screen.tap_text("tieeng")
    screen.key('[data-action="backspace"]')
    screen.key('[data-action="backspace"]')
    screen.tap_text("s")
    assert screen.value() == "tiế"
    for _ in range(5):
        screen.key('[data-action="backspace"]')
    assert screen.value() == ""
    assert screen.input_events().count("deleteContentBackward") == 5  # nothing left: no event


def test_numeric_pad_gives_only_digits(screen: Screen) -> None:
    screen.field("numeric").tap()
    panel = screen.page.locator("#keyboard")
    assert panel.get_attribute("data-mode") == "numeric"
    labels = [k.strip() for k in panel.locator(".kb-key").all_inner_texts()]
    assert sorted(k for k in labels if k.isdigit()) == list("0123456789")
    assert set(labels) - set("0123456789") == {"⌫ Xoá", "Xong"}
    screen.tap_text("0912")
    screen.key('[data-action="backspace"]')
    screen.tap_text("3")
    assert screen.value() == "0913"


def test_phone_pad_stops_at_the_api_limit(screen: Screen) -> None:
    screen.field("phone").tap()
    screen.tap_text("0" * 22)
    assert screen.value() == "0" * 20
    assert "đủ số" in screen.page.locator("#keyboard .kb-hint").inner_text()
    screen.key('[data-action="done"]')
    screen.field("numeric", {"maxlength": "2"}).tap()  # a day of the month
    screen.tap_text("123")
    assert screen.value() == "12"
    assert screen.page.locator("#keyboard .kb-hint").inner_text() == "Ô này đã đủ số."


def test_plain_mode_types_codes_as_they_are(screen: Screen) -> None:
    screen.field("plain").tap()
    assert screen.page.locator("#keyboard [data-mark]").count() == 0
    screen.tap_text("test-12")
    assert screen.value() == "test-12"  # Telex would have made "tét"


def test_keys_are_big_and_the_field_stays_in_view(screen: Screen) -> None:
    for mode, big in (("text", False), ("numeric", False), ("text", True), ("phone", True)):
        if big != screen.page.evaluate("document.documentElement.classList.contains('bigtext')"):
            screen.page.locator("#btn-bigtext").tap()  # "Chữ to": larger text and targets
        field = screen.field(mode)
        field.tap()
        panel = screen.page.locator("#keyboard")
        sizes = screen.page.evaluate(
            """() => [...document.querySelectorAll('#keyboard .kb-key')].map((k) => {
                const r = k.getBoundingClientRect();
                return [r.width, r.height, parseFloat(getComputedStyle(k).fontSize)];
            })"""
        )
        assert sizes and all(w >= 64 and h >= 64 and f >= 24 for w, h, f in sizes), sizes
        spans = screen.page.evaluate(
            """() => [...document.querySelectorAll('#keyboard .kb-key span')].map((n) => [
                n.getBoundingClientRect().width, n.parentElement.clientWidth,
                parseFloat(getComputedStyle(n).fontSize)])"""
        )
        assert all(w <= inside and f >= 24 for w, inside, f in spans), spans  # labels fit
        box, top = field.bounding_box(), panel.bounding_box()
        assert box is not None and top is not None
        assert box["y"] + box["height"] <= top["y"], (box, top)
        assert box["y"] >= 0
        screen.key('[data-action="done"]')
        assert panel.is_hidden()


def test_a_physical_keyboard_still_works(screen: Screen) -> None:
    field = screen.field("text")
    field.fill("Nguyen")
    field.tap()
    screen.key('[data-mark="ê"]')  # the buttons act on a word typed on a real keyboard too
    assert screen.value() == "Nguyên"
    screen.page.keyboard.type(" Van")
    assert screen.value() == "Nguyên Van"
    screen.tap_text("a")
    assert screen.value() == "Nguyên Vana"
    # a tap inside the text puts the caret back at the end, where the keys type
    field.tap(position={"x": 20, "y": 20})  # on the first letter
    assert screen.page.evaluate("[f.selectionStart, f.selectionEnd]") == [11, 11]


def test_done_and_the_wipe_close_it(screen: Screen) -> None:
    field = screen.field("text", {"autocapitalize": "words"})
    field.tap()
    screen.tap_text("tran van")  # autocapitalize=words: each word starts with a capital
    assert screen.value() == "Tran Van"
    changes = screen.page.evaluate(
        """() => { window.done = 0; f.addEventListener('change', () => window.done++); }"""
    )
    assert changes is None
    screen.key('[data-action="done"]')
    assert screen.page.locator("#keyboard").is_hidden()
    assert screen.page.evaluate("window.done") == 1
    assert screen.page.evaluate("document.activeElement.id") != "f"
    field.tap()  # it opens again
    assert screen.page.locator("#keyboard").is_visible()
    screen.page.evaluate("window.aps.wipe('idle')")
    screen.page.wait_for_selector("body[data-screen=home]")
    assert screen.page.locator("#keyboard").is_hidden()


def test_keyboards_pass_axe(screen: Screen, shot: Callable[[Any, str], Path]) -> None:
    for mode in ("text", "phone"):
        screen.field(mode).tap()
        screen.tap_text("Nguyeenx" if mode == "text" else "0912")
        assert_accessible(screen.page, f"keyboard-{mode}")
        shot(screen.page, f"keyboard-{mode}")
        screen.key('[data-action="done"]')


# -- the signature pad -----------------------------------------------------------------------


def mount_pad(screen: Screen, width: int = 600, height: int = 240) -> Any:
    screen.page.evaluate(
        """async ([w, h]) => {
            const { createSignaturePad } = await import('/static/js/signature-pad.js');
            window.pad = createSignaturePad({ width: w, height: h });
            document.getElementById('screen').replaceChildren(window.pad.node);
        }""",
        [width, height],
    )
    return screen.page.locator(".sig-canvas")


def prepared_filing(kiosk: KioskApp, server: ApiServer) -> str:
    kiosk.handle_device_event(DeviceEvent(device="scanner", kind="identity", identity=card()))
    r = httpx.post(
        f"{server.url}{V1}/filings/prepare",
        json={"procedure": "2.000815", "form": COPY_FORM, "phone": "0912345678"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    sha: str = r.json()["document_sha256"]
    return sha


def file_from_page(screen: Screen, sha: str) -> dict[str, Any]:
    """POST /api/v1/filings from the page with the pad's signature."""
    out: dict[str, Any] = screen.page.evaluate(
        """async (sha) => {
            const r = await fetch('/api/v1/filings', {
                method: 'POST', headers: { 'Content-Type': 'application/json' },
                body: JSON.stringify({ document_sha256: sha, signature: window.pad.toSignature() }),
            });
            return { status: r.status, body: await r.json() };
        }""",
        sha,
    )
    return out


def check_shape(sig: dict[str, Any], width: int, height: int) -> None:
    assert set(sig) == {"type", "width", "height", "strokes"}
    assert sig["type"] == "handwritten" and (sig["width"], sig["height"]) == (width, height)
    assert 1 <= len(sig["strokes"]) <= 64
    t_first = sig["strokes"][0][0][2]
    assert t_first == 0
    for stroke in sig["strokes"]:
        assert 1 <= len(stroke) <= 2000
        for x, y, t in stroke:
            assert all(isinstance(v, int) for v in (x, y, t))
            assert 0 <= x <= width and 0 <= y <= height and 0 <= t <= 600_000


def test_signature_drawn_with_the_mouse_is_filed(
    screen: Screen, kiosk: KioskApp, server: ApiServer, shot: Callable[[Any, str], Path]
) -> None:
    canvas = mount_pad(screen)
    assert canvas.get_attribute("aria-label")
    assert "ký tên" in screen.page.locator(".sig-instruction").inner_text()
    assert (
        screen.page.evaluate("getComputedStyle(document.querySelector('.sig-canvas')).touchAction")
        == "none"
    )
    assert screen.page.evaluate("window.pad.isEmpty()") is True
    box = canvas.bounding_box()
    assert box is not None
    x0, y0 = box["x"], box["y"]
    mouse = screen.page.mouse
    for path in ([(40, 150), (120, 40), (200, 180), (300, 60)], [(350, 120), (560, 130)]):
        mouse.move(x0 + path[0][0], y0 + path[0][1])
        mouse.down()
        for x, y in path[1:]:
            mouse.move(x0 + x, y0 + y, steps=8)
        mouse.up()
    mouse.move(x0 + 650, y0 + 300)  # outside: not drawn
    assert screen.page.evaluate("window.pad.isEmpty()") is False
    sig = screen.page.evaluate("window.pad.toSignature()")
    check_shape(sig, 600, 240)
    assert len(sig["strokes"]) == 2
    assert_accessible(screen.page, "signature-pad")
    shot(screen.page, "signature-pad")
    result = file_from_page(screen, prepared_filing(kiosk, server))
    assert result["status"] == 200, result
    code = result["body"]["code"]
    dossier = [r["body"] for r in kiosk.outbox.records() if r["kind"] == "dossier"]
    assert [d["code"] for d in dossier] == [code]


def touch(cdp: Any, kind: str, x: float, y: float) -> None:
    points = [] if kind == "touchEnd" else [{"x": x, "y": y, "id": 1}]
    cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})


def test_signature_drawn_by_touch_is_filed_and_cleared(
    screen: Screen, kiosk: KioskApp, server: ApiServer
) -> None:
    canvas = mount_pad(screen, 500, 200)
    box = canvas.bounding_box()
    assert box is not None
    cdp = screen.context.new_cdp_session(screen.page)
    screen.page.evaluate(
        """() => { window.kinds = new Set();
            document.querySelector('.sig-canvas').addEventListener('pointerdown',
              (e) => window.kinds.add(e.pointerType)); }"""
    )
    for stroke in ([(30, 30), (250, 170), (480, 40)], [(100, 100), (400, 110)]):
        touch(cdp, "touchStart", box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        for (ax, ay), (bx, by) in itertools.pairwise(stroke):
            for i in range(1, 11):
                x = ax + (bx - ax) * i / 10
                y = ay + (by - ay) * i / 10
                touch(cdp, "touchMove", box["x"] + x, box["y"] + y)
        touch(cdp, "touchEnd", 0, 0)
    assert screen.page.evaluate("[...window.kinds]") == ["touch"]
    sig = screen.page.evaluate("window.pad.toSignature()")
    check_shape(sig, 500, 200)
    assert len(sig["strokes"]) == 2 and len(sig["strokes"][0]) >= 10

    screen.page.locator(".sig-clear").tap()  # "Ký lại", right after the stroke: it clicks
    assert screen.page.locator(".sig-clear").inner_text() == "Ký lại"
    assert screen.page.evaluate("[window.pad.isEmpty(), window.pad.toSignature()]") == [True, None]
    sha = prepared_filing(kiosk, server)
    touch(cdp, "touchStart", box["x"] + 50, box["y"] + 50)
    touch(cdp, "touchMove", box["x"] + 150, box["y"] + 120)
    touch(cdp, "touchEnd", 0, 0)
    result = file_from_page(screen, sha)
    assert result["status"] == 200, result


# -- read aloud --------------------------------------------------------------------------------

SPEECH_AUDIO = "async () => (await import('/static/js/speech.js')).speechAudio()"


def test_read_aloud_plays_and_a_second_tap_stops(screen: Screen) -> None:
    """The agent's own espeak-ng renders the home screen's text; the page plays it."""
    requests: list[str] = []
    screen.page.on(
        "request",
        lambda r: requests.append(r.post_data or "") if r.url.endswith("/speech") else None,
    )
    button = screen.page.locator("#btn-speak")
    button.tap()
    assert button.get_attribute("aria-pressed") == "true"  # at once, while it is rendered
    screen.page.wait_for_function(
        "async () => { const a = (await import('/static/js/speech.js')).speechAudio();"
        " return !!a && !a.paused && a.currentTime > 0; }"
    )
    assert button.inner_text() == "Dừng đọc"
    sent = json.loads(requests[0])
    assert "Ông/Bà muốn làm gì" in sent["text"] and len(sent["text"]) <= 1500
    button.tap()
    assert button.get_attribute("aria-pressed") == "false"
    assert button.inner_text() == "Đọc to"
    assert screen.page.evaluate(SPEECH_AUDIO) is None
    # a screen change ("Trang đầu") stops it, and so does the idle wipe
    for leave in ("document.getElementById('btn-home').click()", "window.aps.wipe('idle')"):
        button.tap()
        screen.page.wait_for_function(f"async () => !!(await ({SPEECH_AUDIO})())")
        screen.page.evaluate(leave)
        screen.page.wait_for_selector("#btn-speak[aria-pressed=false]")
        assert screen.page.evaluate(SPEECH_AUDIO) is None


@pytest.fixture
def mute_screen(browser_context: Any, tmp_path: Path, page_errors: PageErrors) -> Iterator[Screen]:
    """A box without espeak-ng: POST /api/v1/speech answers 503."""
    with serve(tmp_path, speech_binary=str(tmp_path / "no-espeak-ng")) as (_, srv):
        s = Screen(browser_context, srv.url, page_errors)
        page_errors.expect("503")  # Chromium logs the refused request itself
        yield s
        s.check_errors()


def test_read_aloud_unavailable_says_so(mute_screen: Screen) -> None:
    mute_screen.page.locator("#btn-speak").tap()
    notice = mute_screen.page.locator("#speech-notice")
    notice.wait_for()
    assert notice.inner_text() == UNAVAILABLE_VI  # the agent's own words
    assert mute_screen.page.locator("#btn-speak").get_attribute("aria-pressed") == "false"
    mute_screen.page.evaluate("window.aps.wipe('idle')")  # gone with the screen
    mute_screen.page.wait_for_selector("#speech-notice", state="detached")
