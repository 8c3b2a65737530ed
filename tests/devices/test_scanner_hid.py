from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from evdev import InputEvent, ecodes
from hypothesis import given
from hypothesis import strategies as st

from drivers import DeviceError, scanner_hid
from drivers.scanner_hid import KEYMAP, HidScan, KeyDecoder, iter_scans
from firmware_mocks.evdev_replay import (
    INPUT_EVENT,
    PipeEventSource,
    RecordedEvent,
    parse_evemu,
    text_to_key_events,
)

TYPABLE = "".join(sorted({c for pair in KEYMAP.values() for c in pair}))

# A keyboard-mode scanner typing "Ab1" then Enter, as evemu-record shows it.
RECORDING = """\
# EVEMU 1.3
# Input device name: "Honeywell Scanner Keyboard"
N: Honeywell Scanner Keyboard
I: 0003 0c2e 0b61 0110
E: 0.000001 0004 0004 458977
E: 0.000001 0001 002a 1
E: 0.000001 0000 0000 0
E: 0.002000 0004 0004 458756
E: 0.002000 0001 001e 1
E: 0.002000 0000 0000 0
E: 0.003000 0001 001e 0
E: 0.003000 0001 002a 0
E: 0.003000 0000 0000 0
E: 0.004000 0001 0030 1
E: 0.004100 0001 0030 2
E: 0.004500 0001 0030 0
E: 0.005000 0001 0002 1
E: 0.005100 0001 0002 0
E: 0.006000 0001 001c 1
E: 0.006100 0001 001c 0
E: 0.006100 0000 0000 0
"""


def decode(events: list[RecordedEvent], timeout: float = 0.05) -> list[HidScan]:
    decoder = KeyDecoder(inter_key_timeout=timeout)
    out: list[HidScan] = []
    for e in events:
        out.extend(decoder.feed(e.type, e.code, e.value, e.sec + e.usec / 1e6))
    return out + decoder.flush()


def test_constants_match_python_evdev() -> None:
    assert scanner_hid.EV_SYN == ecodes.EV_SYN
    assert scanner_hid.EV_KEY == ecodes.EV_KEY
    assert scanner_hid.EV_MSC == ecodes.EV_MSC
    assert scanner_hid.KEY_ENTER == ecodes.KEY_ENTER
    assert scanner_hid.KEY_KPENTER == ecodes.KEY_KPENTER
    assert scanner_hid.KEY_LEFTSHIFT == ecodes.KEY_LEFTSHIFT
    assert scanner_hid.KEY_RIGHTSHIFT == ecodes.KEY_RIGHTSHIFT
    named = {
        "A": "a", "Z": "z", "1": "1", "0": "0", "MINUS": "-", "EQUAL": "=",
        "LEFTBRACE": "[", "RIGHTBRACE": "]", "SEMICOLON": ";", "APOSTROPHE": "'",
        "GRAVE": "`", "BACKSLASH": "\\", "COMMA": ",", "DOT": ".", "SLASH": "/",
        "SPACE": " ", "KP0": "0", "KP9": "9", "KPDOT": ".", "KPSLASH": "/",
        "KPASTERISK": "*", "KPMINUS": "-", "KPPLUS": "+", "Q": "q", "M": "m", "L": "l",
    }  # fmt: skip
    for name, char in named.items():
        assert KEYMAP[getattr(ecodes, f"KEY_{name}")][0] == char, name


def test_evemu_recording_decodes() -> None:
    events = parse_evemu(RECORDING)
    assert len(events) == 17
    assert events[0] == RecordedEvent(0, 1, ecodes.EV_MSC, ecodes.MSC_SCAN, 458977)
    assert decode(events) == [HidScan(text="Ab1", ended_by="enter")]


def test_evemu_malformed_line_is_named() -> None:
    with pytest.raises(ValueError, match="evemu line 2"):
        parse_evemu("# ok\nE: 0.1 0001 zz 1\n")


def test_keypad_enter_and_right_shift() -> None:
    events = [
        RecordedEvent(1, 0, ecodes.EV_KEY, ecodes.KEY_RIGHTSHIFT, 1),
        RecordedEvent(1, 10, ecodes.EV_KEY, ecodes.KEY_SLASH, 1),
        RecordedEvent(1, 20, ecodes.EV_KEY, ecodes.KEY_RIGHTSHIFT, 0),
        RecordedEvent(1, 30, ecodes.EV_KEY, ecodes.KEY_KP5, 1),
        RecordedEvent(1, 40, ecodes.EV_KEY, ecodes.KEY_F5, 1),
        RecordedEvent(1, 50, ecodes.EV_KEY, ecodes.KEY_KPENTER, 1),
    ]
    decoder = KeyDecoder()
    out = [s for e in events for s in decoder.feed(e.type, e.code, e.value, e.sec + e.usec / 1e6)]
    assert out == [HidScan(text="?5", ended_by="enter")]
    assert decoder.ignored_keys == 1


def test_inter_key_timeout_splits_two_quick_scans() -> None:
    first = text_to_key_events("APS123", start=10.0, enter=False)
    second = text_to_key_events("APS456", start=10.2, enter=False)
    assert decode(first + second) == [
        HidScan(text="APS123", ended_by="timeout"),
        HidScan(text="APS456", ended_by="timeout"),
    ]


@given(st.text(TYPABLE, min_size=1, max_size=60))
def test_typed_text_round_trips(text: str) -> None:
    assert decode(text_to_key_events(text)) == [HidScan(text=text, ended_by="enter")]


@given(
    st.lists(
        st.tuples(st.integers(0, 0x1F), st.integers(0, 0x2FF), st.integers(-1, 3)), max_size=200
    )
)
def test_arbitrary_events_never_raise(events: list[tuple[int, int, int]]) -> None:
    decoder = KeyDecoder()
    for index, (ev_type, code, value) in enumerate(events):
        for scan in decoder.feed(ev_type, code, value, index * 0.001):
            assert scan.text


def test_text_to_key_events_refuses_vietnamese() -> None:
    with pytest.raises(ValueError, match="'ễ' cannot be typed"):
        text_to_key_events("Nguyễn")


# ---------------------------------------------------------------- real evdev read path


@pytest.fixture
def source() -> Iterator[PipeEventSource]:
    pipe = PipeEventSource()
    yield pipe
    pipe.close()


def test_replay_through_python_evdev_read(source: PipeEventSource) -> None:
    source.feed(parse_evemu(RECORDING))
    source.close_writer()
    events = list(source.read())
    assert all(type(e) is InputEvent for e in events)
    assert [(e.type, e.code, e.value) for e in events][1] == (
        ecodes.EV_KEY,
        ecodes.KEY_LEFTSHIFT,
        1,
    )
    assert events[3].timestamp() == pytest.approx(0.002)
    assert INPUT_EVENT.size == 24


def test_iter_scans_over_the_real_read_path(source: PipeEventSource) -> None:
    code = "APS-TRACK-000.00.14.H56-200203-0118"
    source.feed(text_to_key_events(code))
    source.feed(text_to_key_events("second/scan?x=1", start=2000.0))
    source.close_writer()
    scans = list(iter_scans(source, KeyDecoder(), idle_timeout=1.0))
    assert scans == [
        HidScan(text=code, ended_by="enter"),
        HidScan(text="second/scan?x=1", ended_by="enter"),
    ]


def test_iter_scans_flushes_when_the_line_goes_quiet(source: PipeEventSource) -> None:
    source.feed(text_to_key_events("NOENTER", enter=False))
    scans = iter_scans(source, KeyDecoder(inter_key_timeout=0.05))
    assert next(scans) == HidScan(text="NOENTER", ended_by="timeout")
    source.close_writer()
    assert list(scans) == []


def test_many_events_fed_from_another_thread(source: PipeEventSource) -> None:
    codes = [f"CODE-{n:04d}" for n in range(120)]  # about 8,000 events, above the pipe size
    events = [e for n, c in enumerate(codes) for e in text_to_key_events(c, start=100.0 + n)]

    def writer() -> None:
        source.feed(events)
        source.close_writer()

    thread = threading.Thread(target=writer)
    thread.start()
    scans = list(iter_scans(source, KeyDecoder(), idle_timeout=2.0))
    thread.join(timeout=5)
    assert [s.text for s in scans] == codes


def test_hid_adapter_reports_a_missing_device() -> None:
    scanner = scanner_hid.HidScanner("/dev/input/does-not-exist-aps")
    with pytest.raises(OSError):
        scanner.open()
    with pytest.raises(DeviceError, match="not open; call open"):
        scanner.scans()
    scanner.close()  # closing what never opened is harmless
