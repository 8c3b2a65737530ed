"""Property tests of the kiosk app's parsers and state: strokes, session, fees, button, scans."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from PIL import Image

from drivers.help_button import iter_presses
from drivers.scanner_hid import EV_KEY
from edge_agent import CitizenError
from edge_agent.catalogue import bundled_catalogue
from edge_agent.fees import compute_fee
from edge_agent.services.tracking import code_from_scan
from edge_agent.session import CitizenSession
from edge_agent.signature import MAX_POINTS, MAX_STROKES, HandwrittenSignature, SignatureError
from firmware_mocks.evdev_replay import PipeEventSource, RecordedEvent
from sync.catalogue import compute_fee as catalogue_fee
from tests.kiosk import card

CAT = bundled_catalogue()

# -- strokes ------------------------------------------------------------------------------

anything: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(raw=anything, width=st.integers(-5, 3000), height=st.integers(-5, 3000))
def test_any_input_is_a_signature_or_a_signature_error(raw: Any, width: int, height: int) -> None:
    try:
        sig = HandwrittenSignature.from_strokes(raw, width=width, height=height)
    except SignatureError as exc:
        assert str(exc).startswith("signature: ") and exc.message_vi
        return
    assert 16 <= sig.width <= 2000 and sum(len(s) for s in sig.strokes) >= 2


points = st.tuples(st.integers(0, 300), st.integers(0, 100), st.integers(0, 60_000))


@settings(max_examples=100, deadline=None)
@given(strokes=st.lists(st.lists(points, min_size=1, max_size=30), min_size=1, max_size=8))
def test_valid_strokes_round_trip_and_render(strokes: list[list[tuple[int, int, int]]]) -> None:
    if sum(map(len, strokes)) < 2:
        return
    sig = HandwrittenSignature.from_strokes(strokes, width=300, height=100)
    again = json.loads(sig.strokes_json())
    assert again["strokes"] == [[list(p) for p in s] for s in strokes]
    assert HandwrittenSignature.from_strokes(again["strokes"], width=300, height=100) == sig
    image = Image.open(io.BytesIO(sig.render_png()))
    assert image.size == (300, 100) and image.getextrema()[0] == 0  # something drawn


def test_stroke_limits_are_named() -> None:
    with pytest.raises(SignatureError, match=f"the limit is {MAX_STROKES}"):
        HandwrittenSignature.from_strokes([[[1, 1, 1]]] * (MAX_STROKES + 1), width=100, height=100)
    with pytest.raises(SignatureError, match=f"more than {MAX_POINTS} points"):
        HandwrittenSignature.from_strokes([[[1, 1, 1]] * (MAX_POINTS + 1)], width=100, height=100)
    with pytest.raises(SignatureError, match=r"strokes\[0\]\[1\]\.x: 101 is outside 0\.\.100"):
        HandwrittenSignature.from_strokes([[[1, 1, 1], [101, 1, 2]]], width=100, height=100)
    with pytest.raises(SignatureError) as empty:
        HandwrittenSignature.from_strokes([[[1, 1, 1]]], width=100, height=100)
    assert "chưa ký" in empty.value.message_vi


# -- fees -----------------------------------------------------------------------------------


@given(pages=st.integers(1, 10_000), copies=st.integers(1, 1000))
def test_the_apps_fee_is_the_catalogues_rule(pages: int, copies: int) -> None:
    # The application's one way to a fee (edge_agent.fees) is the procedure's own rule.
    proc = CAT.get("2.000815")
    one = catalogue_fee(proc.fee_rule, pages=pages, copies=1).amount_vnd
    assert 0 < one <= 200_000
    fee = compute_fee(proc, {"so_trang": pages, "so_ban": copies})
    assert fee["amount_vnd"] == one * copies and fee["rule"] == "per-page"
    assert fee["pages"] == pages and fee["copies"] == copies


def test_fee_rules_of_the_bundled_catalogue() -> None:
    proc = CAT.get("2.000815")
    assert [compute_fee(proc, {"so_trang": n})["amount_vnd"] for n in (1, 3, 500)] == [
        2000,
        5000,
        200_000,
    ]
    assert compute_fee(CAT.get("1.001193"), {})["rule"] == "free"
    assert compute_fee(CAT.get("1.001193"), {})["amount_vnd"] == 0
    assert compute_fee(CAT.get("2.000884"), {})["amount_vnd"] == 10000


# -- session --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class SessionMachine(RuleBasedStateMachine):
    """The session never outlives its idle timeout and never shows the whole ID."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.session = CitizenSession(idle_timeout_s=60, monotonic=self.clock)
        self.model_last: float | None = None  # last activity while someone is there

    def _expire_model(self) -> None:
        if self.model_last is not None and self.clock.t - self.model_last >= 60:
            self.model_last = None

    @rule(number=st.sampled_from(["087205001234", "001099000777"]))
    def read_card(self, number: str) -> None:
        self.session.set_identity(card(number=number))
        self.model_last = self.clock.t

    @rule(dt=st.floats(0, 100))
    def wait(self, dt: float) -> None:
        self.clock.t += dt

    @rule()
    def touch(self) -> None:
        self._expire_model()
        self.session.touch()
        if self.model_last is not None:
            self.model_last = self.clock.t

    @rule()
    def end(self) -> None:
        self.session.clear()
        self.model_last = None

    @invariant()
    def matches_model(self) -> None:
        self._expire_model()
        snap = self.session.snapshot()
        assert snap.active == (self.model_last is not None)
        assert (self.session.identity() is not None) == snap.active
        assert "0872050" not in json.dumps(snap.to_json_dict())


TestSession = SessionMachine.TestCase
TestSession.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def test_the_session_log_masks_the_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    s = CitizenSession(idle_timeout_s=30, monotonic=clock)
    cleared: list[str] = []
    s.on_clear.append(cleared.append)
    s.set_identity(card())
    clock.t += 31
    assert s.expire_if_idle() and cleared == ["idle"] and s.identity() is None
    assert "087205001234" not in caplog.text and "********1234" in caplog.text


# -- help button ----------------------------------------------------------------------------

key_events = st.lists(
    st.tuples(
        st.sampled_from([EV_KEY, 0, 4]),
        st.sampled_from([138, 28, 59]),
        st.sampled_from([0, 1, 2]),
        st.floats(0, 30),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(events=key_events)
def test_presses_are_key_downs_of_the_button_debounced(
    events: list[tuple[int, int, int, float]],
) -> None:
    events.sort(key=lambda e: e[3])
    src = PipeEventSource()
    try:
        src.feed(
            RecordedEvent(int(t), int((t % 1) * 1e6), typ, code, value)
            for typ, code, value, t in events
        )
        src.close_writer()
        got = [p for p in iter_presses(src, 138, debounce_s=2.0, wait_s=5.0) if p is not None]
    finally:
        src.close()
    downs = [
        int(t * 1e6) / 1e6
        for typ, code, value, t in events
        if (typ, code, value) == (EV_KEY, 138, 1)
    ]
    expected: list[float] = []
    for t in downs:
        if not expected or t - expected[-1] >= 2.0:
            expected.append(t)
    assert got == pytest.approx(expected, abs=1e-5)


# -- scanned slips --------------------------------------------------------------------------


@given(text=st.text(max_size=80))
def test_scans_are_a_code_or_a_clear_refusal(text: str) -> None:
    try:
        code = code_from_scan(text, "https://dvc.example.vn/tra-cuu?ma=")
    except CitizenError as exc:
        assert "Mã hồ sơ không đúng" in exc.message_vi
        return
    assert code and code in text


def test_scanned_slip_forms() -> None:
    code = "000.00.14.H56-261201-1001"
    assert code_from_scan(code) == code
    assert code_from_scan(f"https://dvc.example.vn/tra-cuu?ma={code}") == code
    assert code_from_scan(f"https://x.vn/a?ma={code}", "https://x.vn/a?ma=") == code
