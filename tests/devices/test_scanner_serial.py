from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.cccd_qr import encode_cccd_qr
from drivers.identity import Identity
from drivers.sansio import NEED_DATA, NeedData
from drivers.scanner_serial import (
    MAX_LINE,
    CodeScanned,
    IdentityScanned,
    ScanDecoder,
    ScanEvent,
    ScanRejected,
    SerialScanner,
)
from firmware_mocks.cdc_scanner import EmulatedCdcScanner

from .strategies import qr_identities

QR = "079203000111||Đặng Quốc Việt|31121999|Nam|Số 5 Lê Lợi, Huế|01012022"


def events_of(*chunks: bytes) -> list[ScanEvent]:
    decoder = ScanDecoder()
    out: list[ScanEvent] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        while not isinstance(event := decoder.next_event(), NeedData):
            out.append(event)
    return out


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\r\n"])
def test_terminators(terminator: bytes) -> None:
    wire = b"TRACK-1" + terminator + b"TRACK-2" + terminator
    assert events_of(wire) == [CodeScanned(text="TRACK-1"), CodeScanned(text="TRACK-2")]


def test_crlf_split_across_reads_is_one_terminator() -> None:
    assert events_of(b"A\r", b"\nB\r", b"", b"\n") == [
        CodeScanned(text="A"),
        CodeScanned(text="B"),
    ]


def test_partial_line_needs_data() -> None:
    decoder = ScanDecoder()
    decoder.receive_data(b"TRACK")
    assert decoder.next_event() is NEED_DATA


def test_cccd_qr_becomes_an_identity() -> None:
    [event] = events_of(QR.encode() + b"\r\n")
    assert isinstance(event, IdentityScanned)
    assert event.identity.full_name == "Đặng Quốc Việt"
    assert event.identity.source == "qr"


def test_malformed_cccd_qr_is_rejected_with_the_reason() -> None:
    [event] = events_of(b"079203000111|x|y\n")
    assert isinstance(event, ScanRejected)
    assert event.reason.startswith("CCCD QR: qr: expected at least 7")
    assert "079203000111" not in event.reason


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\xff\xfeabc\n", "not UTF-8"),
        (b"abc\x1b[2Jdef\n", "control characters"),
        (b"x" * (MAX_LINE + 1) + b"\n", f"longer than {MAX_LINE}"),
    ],
)
def test_rejections(wire: bytes, reason: str) -> None:
    [event] = events_of(wire, b"OK\n")[:1]
    assert isinstance(event, ScanRejected)
    assert reason in event.reason
    assert events_of(wire, b"OK\n")[-1] == CodeScanned(text="OK")


def test_runaway_line_without_terminator_is_bounded() -> None:
    decoder = ScanDecoder()
    out: list[ScanEvent] = []
    for _ in range(10):
        decoder.receive_data(b"y" * 1000)
        while not isinstance(event := decoder.next_event(), NeedData):
            out.append(event)
        assert decoder.buffered <= MAX_LINE + 1000
    decoder.receive_data(b"tail\nNEXT\n")
    while not isinstance(event := decoder.next_event(), NeedData):
        out.append(event)
    assert len([e for e in out if isinstance(e, ScanRejected)]) == 1
    assert out[-1] == CodeScanned(text="NEXT")


def test_empty_lines_are_skipped() -> None:
    assert events_of(b"\r\n\r\n  \nA\n\n") == [CodeScanned(text="A")]


@given(st.binary(max_size=3000), st.data())
def test_arbitrary_bytes_never_raise(data: bytes, draw: st.DataObject) -> None:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=5)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    for event in events_of(*chunks):
        assert isinstance(event, CodeScanned | IdentityScanned | ScanRejected)


@given(
    st.lists(qr_identities(), min_size=1, max_size=3),
    st.sampled_from([b"\r", b"\n", b"\r\n"]),
    st.data(),
)
def test_qr_round_trip_through_any_split(
    identities: list[Identity], terminator: bytes, draw: st.DataObject
) -> None:
    wire = b"".join(encode_cccd_qr(i).encode() + terminator for i in identities)
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert events_of(*chunks) == [IdentityScanned(identity=i) for i in identities]


# ---------------------------------------------------------------- real pty


@pytest.fixture
def scanner_pair() -> Iterator[tuple[EmulatedCdcScanner, SerialScanner]]:
    with EmulatedCdcScanner() as mock, SerialScanner(mock.port_path) as driver:
        yield mock, driver


def test_pty_scan_of_a_cccd(scanner_pair: tuple[EmulatedCdcScanner, SerialScanner]) -> None:
    mock, driver = scanner_pair
    mock.scan(QR)
    event = driver.read_scan(timeout=2.0)
    assert isinstance(event, IdentityScanned)
    assert event.identity.id_number == "079203000111"
    assert event.identity.address == "Số 5 Lê Lợi, Huế"


def test_pty_tracking_code_and_silence(
    scanner_pair: tuple[EmulatedCdcScanner, SerialScanner],
) -> None:
    mock, driver = scanner_pair
    assert driver.read_scan(timeout=0.1) is None
    mock.terminator = b"\r"
    mock.scan("000.00.14.H56-200203-0118")
    mock.scan("SECOND")
    assert driver.read_scan(timeout=2.0) == CodeScanned(text="000.00.14.H56-200203-0118")
    assert driver.read_scan(timeout=2.0) == CodeScanned(text="SECOND")


def test_pty_split_and_broken_input(
    scanner_pair: tuple[EmulatedCdcScanner, SerialScanner],
) -> None:
    mock, driver = scanner_pair
    raw = QR.encode()
    mock.send_raw(raw[:10])
    assert driver.read_scan(timeout=0.1) is None
    mock.send_raw(raw[10:] + b"\r")
    mock.send_raw(b"\n\xc3\x28\n")
    assert isinstance(driver.read_scan(timeout=2.0), IdentityScanned)
    rejected = driver.read_scan(timeout=2.0)
    assert isinstance(rejected, ScanRejected)
    assert "UTF-8" in rejected.reason


def test_not_open() -> None:
    with pytest.raises(Exception, match="not open; call open"):
        SerialScanner("/dev/null").read_scan(0.0)
