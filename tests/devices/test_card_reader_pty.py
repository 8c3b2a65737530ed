"""The pyserial card-reader driver against the emulated reader on a real pty."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date

import pytest
import serial

from drivers.card_reader import CardReader, CardReadError, ReaderNotAnswering
from drivers.card_reader_protocol import (
    CardInserted,
    CardRemoved,
    ErrorCode,
    FrameError,
    GetStatus,
    HostConnection,
    NeedData,
    ReaderError,
    ReadIdentity,
)
from drivers.identity import Identity
from firmware_mocks.card_reader import EmulatedCardReader

CARD = Identity(
    id_number="079203000111",
    old_id_number="123456789",
    full_name="Đặng Quốc Việt",
    date_of_birth=date(1999, 12, 31),
    sex="M",
    address="Số 5 Lê Lợi, Phường Thuận Hóa, Huế",
    issue_date=date(2022, 1, 1),
    expiry_date=date(2039, 12, 31),
    document_number=None,
    nationality="VNM",
    source="chip",
)


@pytest.fixture
def mock() -> Iterator[EmulatedCardReader]:
    with EmulatedCardReader() as reader:
        yield reader


@pytest.fixture
def reader(mock: EmulatedCardReader) -> Iterator[CardReader]:
    with CardReader(mock.port_path, reply_timeout=0.3, read_timeout=0.5, retries=1) as driver:
        yield driver


def insert(mock: EmulatedCardReader, reader: CardReader) -> None:
    mock.insert_card(CARD)
    assert reader.poll(timeout=2.0) == [CardInserted()]


def test_status_and_identity(mock: EmulatedCardReader, reader: CardReader) -> None:
    assert reader.card_present() is False
    insert(mock, reader)
    assert reader.card_present() is True
    identity = reader.read_identity()
    assert identity == CARD
    assert identity.source == "chip"
    assert mock.requests == [GetStatus(), GetStatus(), ReadIdentity()]


def test_card_events(mock: EmulatedCardReader, reader: CardReader) -> None:
    assert reader.poll() == []
    insert(mock, reader)
    mock.remove_card()
    assert reader.poll(timeout=2.0) == [CardRemoved()]


def test_no_card(reader: CardReader) -> None:
    with pytest.raises(CardReadError, match="no card") as info:
        reader.read_identity()
    assert info.value.code == ErrorCode.NO_CARD


@pytest.mark.parametrize("code", [ErrorCode.CARD_UNREADABLE, ErrorCode.CHIP_TIMEOUT])
def test_chip_errors(mock: EmulatedCardReader, reader: CardReader, code: ErrorCode) -> None:
    insert(mock, reader)
    mock.faults.chip_error = code
    with pytest.raises(CardReadError) as info:
        reader.read_identity()
    assert info.value.code == code
    assert str(info.value) == ReaderError(code=code).message


def test_garbage_before_replies(mock: EmulatedCardReader, reader: CardReader) -> None:
    insert(mock, reader)
    mock.faults.garbage_before_reply = b"\xff\x00\x13noise\x7f"
    assert reader.read_identity() == CARD
    assert reader.card_present() is True
    assert reader.frame_errors >= 2
    assert len(mock.requests) == 2  # garbage alone does not cause a resend


def test_split_replies(mock: EmulatedCardReader, reader: CardReader) -> None:
    insert(mock, reader)
    mock.faults.split_replies = True
    assert reader.read_identity() == CARD
    assert reader.card_present() is True


def test_one_bad_checksum_is_retried_at_once(mock: EmulatedCardReader, reader: CardReader) -> None:
    insert(mock, reader)
    mock.faults.corrupt_checksums = 1
    started = time.monotonic()
    assert reader.read_identity() == CARD
    assert time.monotonic() - started < reader.read_timeout  # resent without waiting
    assert mock.requests == [ReadIdentity(), ReadIdentity()]
    notices = reader.poll()
    assert any(isinstance(n, FrameError) and n.kind.value == "bad checksum" for n in notices)


def test_bad_checksums_every_time_end_in_not_answering(
    mock: EmulatedCardReader, reader: CardReader
) -> None:
    insert(mock, reader)
    mock.faults.corrupt_checksums = 10
    with pytest.raises(ReaderNotAnswering, match="after 2 attempt"):
        reader.card_present()


def test_reader_stops_answering_then_recovers(mock: EmulatedCardReader, reader: CardReader) -> None:
    insert(mock, reader)
    mock.faults.silent = True
    started = time.monotonic()
    with pytest.raises(ReaderNotAnswering, match=r"not answering on .*check its cable"):
        reader.read_identity()
    elapsed = time.monotonic() - started
    assert 2 * reader.read_timeout <= elapsed < 2 * reader.read_timeout + 1.0
    assert isinstance(ReaderNotAnswering("x"), TimeoutError)
    mock.faults.silent = False
    assert reader.read_identity() == CARD


def test_card_pulled_mid_read(mock: EmulatedCardReader, reader: CardReader) -> None:
    insert(mock, reader)
    mock.faults.pull_card_during_read = True
    with pytest.raises(CardReadError, match="card removed during the read") as info:
        reader.read_identity()
    assert info.value.code == ErrorCode.CARD_REMOVED
    assert reader.poll(timeout=2.0) == [CardRemoved()]
    mock.faults.pull_card_during_read = False
    assert reader.card_present() is False


def test_close_and_reopen(mock: EmulatedCardReader, reader: CardReader) -> None:
    insert(mock, reader)
    reader.close()
    assert not reader.is_open
    reader.open()
    assert reader.read_identity() == CARD


def test_reader_rejects_a_corrupt_request(mock: EmulatedCardReader) -> None:
    with serial.serial_for_url(mock.port_path, timeout=0.05) as port:
        request = bytearray(HostConnection().send(GetStatus()))
        request[-2] ^= 0x55
        port.write(bytes(request))
        conn = HostConnection()
        deadline = time.monotonic() + 2.0
        event: object = NeedData.NEED_DATA
        while isinstance(event, NeedData) and time.monotonic() < deadline:
            conn.receive_data(port.read(16))
            event = conn.next_event()
    assert event == ReaderError(code=ErrorCode.BAD_FRAME)
    assert mock.bad_frames == 1


def test_missing_device_is_an_oserror() -> None:
    with pytest.raises(OSError):
        CardReader("/dev/does-not-exist-aps").open()


def test_not_open_is_reported() -> None:
    with pytest.raises(Exception, match="not open; call open"):
        CardReader("/dev/null").card_present()


def test_unplugged_reader_is_an_oserror_for_the_supervisor() -> None:
    mock = EmulatedCardReader(CARD)
    mock.start()
    driver = CardReader(mock.port_path, reply_timeout=0.3, retries=0)
    driver.open()
    try:
        assert driver.card_present() is True
        mock.close()  # the USB cable is pulled: the pty goes away
        with pytest.raises(OSError):
            driver.card_present()
    finally:
        driver.close()
    replugged = EmulatedCardReader(CARD)
    with replugged, CardReader(replugged.port_path, reply_timeout=0.3) as again:
        assert again.read_identity() == CARD


def test_citizen_text_is_vietnamese() -> None:
    from drivers.card_reader import READER_FAULT_TEXT, citizen_text

    assert citizen_text(ErrorCode.NO_CARD) == "Vui lòng đặt thẻ căn cước lên đầu đọc."
    assert "nhấc ra" in citizen_text(ErrorCode.CARD_REMOVED)
    assert citizen_text(ErrorCode.BAD_FRAME) == READER_FAULT_TEXT
    assert citizen_text(0x7F) == READER_FAULT_TEXT
    assert CardReadError(ErrorCode.CARD_UNREADABLE, "x").citizen_text.startswith("Không đọc được")
