from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.card_reader_protocol import (
    ETX,
    MAX_BODY,
    NEED_DATA,
    STX,
    CardInserted,
    CardRemoved,
    Command,
    ErrorCode,
    Frame,
    FrameDecoder,
    FrameError,
    FrameErrorKind,
    GetStatus,
    HostConnection,
    IdentityRead,
    LocalProtocolError,
    NeedData,
    ReaderError,
    ReaderEvent,
    ReadIdentity,
    StatusReport,
    Tag,
    decode_identity,
    decode_request,
    encode_event,
    encode_frame,
    encode_identity,
)
from drivers.identity import Identity

from .strategies import chip_identities

CARD = Identity(
    id_number="001099012345",
    old_id_number=None,
    full_name="Nguyễn Thị Ngọc Hường",
    date_of_birth=date(1990, 2, 1),
    sex="F",
    address="Hà Nội",
    issue_date=date(2021, 8, 15),
    expiry_date=date(2030, 2, 1),
    document_number=None,
    nationality="VNM",
    source="chip",
)

# Idle line after the data: enough non-STX bytes to settle any frame a corrupted
# length left waiting (the adapter does the same with reset() on a timeout).
IDLE = b"\xff" * (3 + MAX_BODY + 2)


def drain(conn: HostConnection) -> list[ReaderEvent]:
    events: list[ReaderEvent] = []
    while not isinstance(event := conn.next_event(), NeedData):
        events.append(event)
    return events


def feed(data: bytes) -> list[ReaderEvent]:
    conn = HostConnection()
    conn.receive_data(data)
    return drain(conn)


# ---------------------------------------------------------------- exact bytes


@pytest.mark.parametrize(
    ("request_", "wire"),
    [(GetStatus(), "02 00 01 10 11 03"), (ReadIdentity(), "02 00 01 11 10 03")],
)
def test_requests_on_the_wire(request_: GetStatus | ReadIdentity, wire: str) -> None:
    assert HostConnection().send(request_) == bytes.fromhex(wire)


@pytest.mark.parametrize(
    ("wire", "event"),
    [
        ("02 00 02 90 01 93 03", StatusReport(card_present=True)),
        ("02 00 02 90 00 92 03", StatusReport(card_present=False)),
        ("02 00 01 a0 a1 03", CardInserted()),
        ("02 00 01 a1 a0 03", CardRemoved()),
        ("02 00 02 e0 02 e0 03", ReaderError(code=ErrorCode.CARD_UNREADABLE)),
    ],
)
def test_reader_frames_table(wire: str, event: ReaderEvent) -> None:
    assert feed(bytes.fromhex(wire)) == [event]
    assert encode_event(event) == bytes.fromhex(wire)  # type: ignore[arg-type]


def test_identity_payload_bytes() -> None:
    small = Identity(
        id_number="001099012345",
        old_id_number=None,
        full_name="Đặng",
        date_of_birth=date(1990, 2, 1),
        sex="M",
        address=None,
        issue_date=None,
        expiry_date=None,
        document_number=None,
        nationality=None,
        source="chip",
    )
    assert encode_identity(small) == (
        b"\x01\x00\x0c001099012345"
        + b"\x03\x00\x07"
        + "Đặng".encode()
        + b"\x05\x00\x01M"
        + b"\x04\x00\x0819900201"
    )
    assert decode_identity(encode_identity(small)) == small


def test_reader_error_messages() -> None:
    assert "unreadable" in ReaderError(code=ErrorCode.CARD_UNREADABLE).message
    assert "not in the protocol" in ReaderError(code=0x7F).message


def test_identity_read_masks_id_in_repr() -> None:
    assert "001099012345" not in repr(IdentityRead(identity=CARD))


# ---------------------------------------------------------------- resync and errors


def kinds(events: list[ReaderEvent]) -> list[object]:
    return [e.kind if isinstance(e, FrameError) else e for e in events]


def test_garbage_before_a_frame_is_reported_once_and_dropped() -> None:
    events = feed(b"\xff\x00noise" + encode_event(CardInserted()))
    assert kinds(events) == [FrameErrorKind.GARBAGE, CardInserted()]
    assert isinstance(events[0], FrameError)
    assert events[0].discarded == 7


def test_bad_checksum_drops_the_frame_and_the_next_one_is_read() -> None:
    frame = bytearray(encode_event(StatusReport(card_present=True)))
    frame[-2] ^= 0x01
    events = feed(bytes(frame) + encode_event(CardRemoved()))
    assert kinds(events)[0] == FrameErrorKind.BAD_CHECKSUM
    assert kinds(events)[-1] == CardRemoved()
    assert StatusReport(card_present=True) not in events


def test_a_swallowing_checksum_failure_gives_the_inner_frame_back() -> None:
    # Corrupt length: the fake frame ends exactly on the real frame's ETX.
    events = feed(bytes((STX, 0x00, 0x04)) + encode_event(CardInserted()))
    assert kinds(events) == [FrameErrorKind.BAD_CHECKSUM, FrameErrorKind.GARBAGE, CardInserted()]


def test_missing_etx_resyncs_inside_the_rejected_bytes() -> None:
    # An STX with a plausible length swallows the start of a real frame.
    noise = bytes((STX, 0x00, 0x02))
    conn = HostConnection()
    conn.receive_data(noise + encode_event(CardInserted()))
    # The resync lands on "02 02 00": a plausible length of 512 that waits for data.
    assert kinds(drain(conn)) == [FrameErrorKind.MISSING_END, FrameErrorKind.GARBAGE]
    conn.receive_data(IDLE)
    events = drain(conn)
    assert kinds(events)[:2] == [FrameErrorKind.MISSING_END, CardInserted()]
    assert conn.buffered == 0


def test_bad_length_loses_only_the_stx() -> None:
    events = feed(bytes((STX, 0xFF, 0xFF)) + encode_event(CardRemoved()))
    assert kinds(events)[0] == FrameErrorKind.BAD_LENGTH
    assert kinds(events)[-1] == CardRemoved()


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (encode_frame(Command.GET_STATUS), FrameErrorKind.UNEXPECTED_COMMAND),
        (encode_frame(0x55, b"x"), FrameErrorKind.UNEXPECTED_COMMAND),
        (encode_frame(Command.STATUS, b"\x02"), FrameErrorKind.BAD_PAYLOAD),
        (encode_frame(Command.STATUS), FrameErrorKind.BAD_PAYLOAD),
        (encode_frame(Command.CARD_INSERTED, b"x"), FrameErrorKind.BAD_PAYLOAD),
        (encode_frame(Command.ERROR, b""), FrameErrorKind.BAD_PAYLOAD),
        (encode_frame(Command.IDENTITY, b"\x01\x00"), FrameErrorKind.BAD_PAYLOAD),
        (encode_frame(Command.IDENTITY, b"\x01\x00\x09abc"), FrameErrorKind.BAD_PAYLOAD),
        (encode_frame(Command.IDENTITY, b""), FrameErrorKind.BAD_PAYLOAD),
    ],
)
def test_meaningless_frames_become_frame_errors(frame: bytes, kind: FrameErrorKind) -> None:
    assert kinds(feed(frame)) == [kind]


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda p: p + p[:15], "appears twice"),
        (lambda p: p.replace(b"\x05\x00\x01F", b"\x05\x00\x01Q"), "sex: expected M, F or X"),
        (lambda p: p.replace(b"19900201", b"19900231"), "date_of_birth: '19900231'"),
        (lambda p: p.replace(b"19900201", b"1990-2-1"), "date_of_birth: expected 8 digits"),
        (lambda p: p.replace(b"\x03\x00", b"\x0b\x00", 1), "full_name: missing"),
        (lambda p: p.replace("Hường".encode(), b"H\xff\xfe\xfd\xfc\xfb\xfa"), "not UTF-8"),
    ],
)
def test_malformed_identity_payloads_name_the_problem(mutate: object, detail: str) -> None:
    payload = mutate(encode_identity(CARD))  # type: ignore[operator]
    [event] = feed(encode_frame(Command.IDENTITY, payload))
    assert isinstance(event, FrameError)
    assert event.kind == FrameErrorKind.BAD_PAYLOAD
    assert detail in event.detail


def test_unknown_tags_are_ignored() -> None:
    payload = encode_identity(CARD) + bytes((0x42, 0x00, 0x02)) + b"ok"
    assert feed(encode_frame(Command.IDENTITY, payload)) == [IdentityRead(identity=CARD)]


def test_need_data_until_the_frame_is_whole() -> None:
    conn = HostConnection()
    wire = encode_event(IdentityRead(identity=CARD))
    for byte in wire[:-1]:
        conn.receive_data(bytes((byte,)))
        assert conn.next_event() is NEED_DATA
    conn.receive_data(wire[-1:])
    assert conn.next_event() == IdentityRead(identity=CARD)
    assert conn.next_event() is NEED_DATA
    assert conn.buffered == 0


def test_reset_drops_a_partial_frame() -> None:
    conn = HostConnection()
    conn.receive_data(encode_event(CardInserted())[:3])
    conn.reset()
    conn.receive_data(encode_event(CardRemoved()))
    assert drain(conn) == [CardRemoved()]


def test_local_misuse_raises_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError, match=r"^payload: 1025 bytes exceeds the limit"):
        encode_frame(Command.IDENTITY, b"x" * MAX_BODY)
    with pytest.raises(LocalProtocolError, match=r"^command"):
        Frame(command=0x100, payload=b"")
    with pytest.raises(LocalProtocolError, match=r"^request"):
        HostConnection().send("status")  # type: ignore[arg-type]


def test_reader_side_decodes_requests() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(HostConnection().send(ReadIdentity()) + encode_frame(0x33))
    first, second = decoder.next_event(), decoder.next_event()
    assert isinstance(first, Frame)
    assert isinstance(second, Frame)
    assert decode_request(first) == ReadIdentity()
    assert decode_request(second) is None
    assert decode_request(Frame(command=Command.GET_STATUS, payload=b"x")) is None


# ---------------------------------------------------------------- hypothesis

reader_events = st.one_of(
    st.just(CardInserted()),
    st.just(CardRemoved()),
    st.builds(StatusReport, card_present=st.booleans()),
    st.builds(ReaderError, code=st.integers(0, 255)),
    chip_identities().map(lambda identity: IdentityRead(identity=identity)),
)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    conn = HostConnection()
    conn.receive_data(data)
    events = drain(conn)
    assert conn.buffered <= 3 + MAX_BODY + 2
    for event in events:
        assert isinstance(
            event,
            CardInserted | CardRemoved | StatusReport | IdentityRead | ReaderError | FrameError,
        )


@given(st.lists(reader_events, max_size=6), st.data())
def test_round_trip_through_any_split(events: list[ReaderEvent], data: st.DataObject) -> None:
    wire = b"".join(encode_event(e) for e in events)  # type: ignore[arg-type]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    conn = HostConnection()
    got: list[ReaderEvent] = []
    start = 0
    for cut in [*cuts, len(wire)]:
        conn.receive_data(wire[start:cut])
        start = cut
        got.extend(drain(conn))
    assert got == events


@given(st.lists(reader_events, min_size=1, max_size=4), st.binary(min_size=1, max_size=40))
def test_garbage_between_frames_is_survived(events: list[ReaderEvent], noise: bytes) -> None:
    # Noise without STX cannot fake a frame start, so every real frame still arrives.
    noise = noise.replace(bytes((STX,)), b"\x00")
    wire = b"".join(noise + encode_event(e) for e in events)  # type: ignore[arg-type]
    got = [e for e in feed(wire) if not isinstance(e, FrameError)]
    assert got == events


@given(st.lists(reader_events, min_size=1, max_size=4), st.data())
def test_one_corrupted_byte_loses_only_its_frame(
    events: list[ReaderEvent], data: st.DataObject
) -> None:
    frames = [encode_event(e) for e in events]  # type: ignore[arg-type]
    victim = data.draw(st.integers(0, len(frames) - 1))
    frame = bytearray(frames[victim])
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] ^= data.draw(st.integers(1, 255))
    frames[victim] = bytes(frame)
    conn = HostConnection()
    conn.receive_data(b"".join(frames) + IDLE)
    got = drain(conn)
    assert conn.buffered == 0
    assert any(isinstance(e, FrameError) for e in got)
    survivors = [e for e in got if not isinstance(e, FrameError)]
    assert survivors == events[:victim] + events[victim + 1 :]


@given(chip_identities())
def test_identity_payload_round_trip(identity: Identity) -> None:
    assert decode_identity(encode_identity(identity)) == identity


@given(st.binary(max_size=300))
def test_arbitrary_identity_payload_never_raises(payload: bytes) -> None:
    result = decode_identity(payload)
    assert isinstance(result, Identity | FrameError)


def test_tag_values_are_stable() -> None:
    assert [t.value for t in Tag] == list(range(1, 11))
    assert ETX == 0x03


def test_reader_error_code_must_fit_a_byte() -> None:
    with pytest.raises(LocalProtocolError, match=r"^code: 256 does not fit"):
        ReaderError(code=256)
