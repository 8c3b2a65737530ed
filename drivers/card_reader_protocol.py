"""Sans-I/O framing of the serial chip/ID-card reader protocol (docs/devices.md).

No I/O here: bytes in, events out; requests in, bytes out. The pyserial adapter
(:mod:`drivers.card_reader`) and the emulated reader
(:mod:`firmware_mocks.card_reader`) are thin layers around this module.

Theory of operation
-------------------
A frame on the wire is::

    STX(0x02) LEN_HI LEN_LO CMD PAYLOAD... BCC ETX(0x03)

``LEN`` counts CMD plus PAYLOAD (1..:data:`MAX_BODY`); ``BCC`` is the XOR of
LEN_HI, LEN_LO, CMD and every PAYLOAD byte.

:class:`FrameDecoder` buffers what :meth:`~FrameDecoder.receive_data` gets and
:meth:`~FrameDecoder.next_event` returns a :class:`Frame`, a
:class:`FrameError`, or :data:`NEED_DATA`. A serial line is lossy, so nothing
the peer sends is fatal: bytes before an STX are reported once as
``garbage`` and dropped; a frame whose length is out of range, whose ETX is
missing or whose checksum is wrong loses only its STX byte, and the search for
the next STX resumes inside it: a corrupted length byte may have made the
"frame" swallow the real frames behind it, which this recovers. The buffer
never holds more than one maximal frame, and :meth:`reset` drops a partial
frame when the adapter gives up waiting for its tail.

:class:`HostConnection` is the kiosk's side: it turns frames into the events of
:data:`ReaderEvent` (card inserted/removed, status, identity, reader error, or
a :class:`FrameError` when a frame was corrupt or meaningless) and encodes
requests with :meth:`~HostConnection.send`. Malformed peer data never raises;
only misuse by the caller raises :class:`LocalProtocolError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from typing import Final

from drivers import DeviceError
from drivers.identity import SEXES, Identity, IdentityError, Sex
from drivers.sansio import NEED_DATA, NeedData

__all__ = [
    "ETX",
    "MAX_BODY",
    "NEED_DATA",
    "STX",
    "CardInserted",
    "CardRemoved",
    "Command",
    "ErrorCode",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "FrameErrorKind",
    "GetStatus",
    "HostConnection",
    "IdentityRead",
    "LocalProtocolError",
    "NeedData",
    "ReadIdentity",
    "ReaderError",
    "ReaderEvent",
    "Request",
    "StatusReport",
    "Tag",
    "decode_identity",
    "decode_request",
    "encode_event",
    "encode_frame",
    "encode_identity",
]

STX: Final = 0x02
ETX: Final = 0x03
#: Largest LEN (command byte + payload) either side accepts.
MAX_BODY: Final = 1025
_HEADER = 3  # STX LEN_HI LEN_LO
_TRAILER = 2  # BCC ETX


class LocalProtocolError(DeviceError):
    """The caller asked for something the protocol cannot express."""


class Command(enum.IntEnum):
    """Command byte of a frame. Host requests are below 0x80, reader frames above."""

    GET_STATUS = 0x10
    READ_IDENTITY = 0x11
    STATUS = 0x90
    IDENTITY = 0x91
    CARD_INSERTED = 0xA0
    CARD_REMOVED = 0xA1
    ERROR = 0xE0


class ErrorCode(enum.IntEnum):
    """Payload byte of an ERROR frame."""

    NO_CARD = 0x01
    CARD_UNREADABLE = 0x02
    CHIP_TIMEOUT = 0x03
    CARD_REMOVED = 0x04
    BAD_FRAME = 0x05
    UNKNOWN_COMMAND = 0x06


_ERROR_TEXT: Final = {
    ErrorCode.NO_CARD: "no card on the reader",
    ErrorCode.CARD_UNREADABLE: "card unreadable: place the card flat on the reader again",
    ErrorCode.CHIP_TIMEOUT: "the card's chip did not answer in time: try again",
    ErrorCode.CARD_REMOVED: "card removed during the read: leave it on the reader",
    ErrorCode.BAD_FRAME: "the reader received a corrupt request",
    ErrorCode.UNKNOWN_COMMAND: "the reader does not know the requested command",
}


class Tag(enum.IntEnum):
    """Tags of the identity payload (tag byte, 2-byte big-endian length, UTF-8 value)."""

    ID_NUMBER = 0x01
    OLD_ID_NUMBER = 0x02
    FULL_NAME = 0x03
    DATE_OF_BIRTH = 0x04
    SEX = 0x05
    ADDRESS = 0x06
    ISSUE_DATE = 0x07
    EXPIRY_DATE = 0x08
    DOCUMENT_NUMBER = 0x09
    NATIONALITY = 0x0A


class FrameErrorKind(enum.Enum):
    GARBAGE = "garbage"
    BAD_LENGTH = "bad length"
    MISSING_END = "missing end byte"
    BAD_CHECKSUM = "bad checksum"
    UNEXPECTED_COMMAND = "unexpected command"
    BAD_PAYLOAD = "bad payload"


# ---------------------------------------------------------------- events


@dataclass(frozen=True, kw_only=True)
class Frame:
    """A well-formed frame: its command byte and payload."""

    command: int
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.command <= 0xFF:
            raise LocalProtocolError(f"command: {self.command} does not fit in one byte")
        if 1 + len(self.payload) > MAX_BODY:
            raise LocalProtocolError(
                f"payload: {len(self.payload)} bytes exceeds the limit of {MAX_BODY - 1}"
            )


@dataclass(frozen=True, kw_only=True)
class FrameError:
    """Input that was not a usable frame; ``discarded`` bytes were dropped."""

    kind: FrameErrorKind
    detail: str
    discarded: int


@dataclass(frozen=True, kw_only=True)
class CardInserted:
    """Unsolicited: a card was placed on the reader."""


@dataclass(frozen=True, kw_only=True)
class CardRemoved:
    """Unsolicited: the card was taken off the reader."""


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    """Answer to :class:`GetStatus`."""

    card_present: bool


@dataclass(frozen=True, kw_only=True)
class IdentityRead:
    """Answer to :class:`ReadIdentity`: the chip's identity record."""

    identity: Identity


@dataclass(frozen=True, kw_only=True)
class ReaderError:
    """The reader reported a failure; ``code`` is an :class:`ErrorCode` value."""

    code: int

    def __post_init__(self) -> None:
        if not 0 <= self.code <= 0xFF:
            raise LocalProtocolError(f"code: {self.code} does not fit in one byte (0..255)")

    @property
    def message(self) -> str:
        try:
            return _ERROR_TEXT[ErrorCode(self.code)]
        except ValueError:
            return f"reader error code 0x{self.code:02x} (not in the protocol)"


ReaderEvent = CardInserted | CardRemoved | StatusReport | IdentityRead | ReaderError | FrameError


@dataclass(frozen=True, kw_only=True)
class GetStatus:
    """Ask whether a card is on the reader."""


@dataclass(frozen=True, kw_only=True)
class ReadIdentity:
    """Ask the reader to read the card's chip."""


Request = GetStatus | ReadIdentity


# ---------------------------------------------------------------- framing


def _bcc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def encode_frame(command: int, payload: bytes = b"") -> bytes:
    """Frame ``command`` and ``payload``; raises :class:`LocalProtocolError` if too big."""
    frame = Frame(command=command, payload=payload)
    length = 1 + len(frame.payload)
    body = bytes((length >> 8, length & 0xFF, frame.command)) + frame.payload
    return bytes((STX,)) + body + bytes((_bcc(body), ETX))


class FrameDecoder:
    """Buffers received bytes and cuts them into frames, resynchronising on garbage."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the line."""
        self._buffer += data

    def reset(self) -> None:
        """Drop whatever partial frame is buffered (after a timeout, a reopen)."""
        self._buffer.clear()

    def next_event(self) -> Frame | FrameError | NeedData:
        """Return the next frame, a :class:`FrameError`, or :data:`NEED_DATA`."""
        buf = self._buffer
        start = buf.find(STX)
        if start != 0:
            dropped = len(buf) if start < 0 else start
            if dropped == 0:
                return NEED_DATA
            del buf[:dropped]
            return FrameError(
                kind=FrameErrorKind.GARBAGE,
                detail=f"{dropped} byte(s) outside any frame",
                discarded=dropped,
            )
        if len(buf) < _HEADER:
            return NEED_DATA
        length = (buf[1] << 8) | buf[2]
        if not 1 <= length <= MAX_BODY:
            del buf[:1]
            return FrameError(
                kind=FrameErrorKind.BAD_LENGTH,
                detail=f"length {length} outside 1..{MAX_BODY}",
                discarded=1,
            )
        total = _HEADER + length + _TRAILER
        if len(buf) < total:
            return NEED_DATA
        if buf[total - 1] != ETX:
            detail = f"byte 0x{buf[total - 1]:02x} where ETX 0x03 belongs"
            del buf[:1]
            return FrameError(kind=FrameErrorKind.MISSING_END, detail=detail, discarded=1)
        body = bytes(buf[1 : _HEADER + length])
        received = buf[total - 2]
        if _bcc(body) != received:
            del buf[:1]
            return FrameError(
                kind=FrameErrorKind.BAD_CHECKSUM,
                detail=f"checksum 0x{received:02x}, computed 0x{_bcc(body):02x}",
                discarded=1,
            )
        del buf[:total]
        return Frame(command=body[2], payload=body[3:])


# ---------------------------------------------------------------- identity payload

_TEXT_TAGS: Final = {
    Tag.ID_NUMBER: "id_number",
    Tag.OLD_ID_NUMBER: "old_id_number",
    Tag.FULL_NAME: "full_name",
    Tag.SEX: "sex",
    Tag.ADDRESS: "address",
    Tag.DOCUMENT_NUMBER: "document_number",
    Tag.NATIONALITY: "nationality",
}
_DATE_TAGS: Final = {
    Tag.DATE_OF_BIRTH: "date_of_birth",
    Tag.ISSUE_DATE: "issue_date",
    Tag.EXPIRY_DATE: "expiry_date",
}


def _tlv(tag: Tag, value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise LocalProtocolError(f"{tag.name.lower()}: {len(raw)} bytes exceeds 65535")
    return bytes((tag, len(raw) >> 8, len(raw) & 0xFF)) + raw


def _yyyymmdd(value: date) -> str:
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def encode_identity(identity: Identity) -> bytes:
    """Identity payload of an IDENTITY frame (the inverse of :func:`decode_identity`)."""
    out = bytearray()
    for tag, name in _TEXT_TAGS.items():
        value = getattr(identity, name)
        if value is not None:
            out += _tlv(tag, value)
    for tag, name in _DATE_TAGS.items():
        value = getattr(identity, name)
        if value is not None:
            out += _tlv(tag, _yyyymmdd(value))
    return bytes(out)


class _PayloadError(Exception):
    pass


def _parse_date(name: str, text: str) -> date:
    if not (len(text) == 8 and text.isascii() and text.isdigit()):
        raise _PayloadError(f"{name}: expected 8 digits YYYYMMDD")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise _PayloadError(f"{name}: {text!r} is not a calendar date") from None


def decode_identity(payload: bytes) -> Identity | FrameError:
    """Decode an identity payload; a malformed one gives a ``bad payload`` FrameError."""
    try:
        return _decode_identity(payload)
    except _PayloadError as exc:
        return FrameError(kind=FrameErrorKind.BAD_PAYLOAD, detail=str(exc), discarded=0)


def _decode_identity(payload: bytes) -> Identity:
    values: dict[int, str] = {}
    pos = 0
    while pos < len(payload):
        if pos + 3 > len(payload):
            raise _PayloadError(f"identity: truncated field header at byte {pos}")
        tag = payload[pos]
        size = (payload[pos + 1] << 8) | payload[pos + 2]
        raw = payload[pos + 3 : pos + 3 + size]
        if len(raw) != size:
            raise _PayloadError(f"identity: field 0x{tag:02x} runs past the payload")
        pos += 3 + size
        if tag in values:
            raise _PayloadError(f"identity: field 0x{tag:02x} appears twice")
        try:
            values[tag] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _PayloadError(f"identity: field 0x{tag:02x} is not UTF-8") from None
    for tag in (Tag.ID_NUMBER, Tag.FULL_NAME, Tag.DATE_OF_BIRTH, Tag.SEX):
        if tag not in values:
            raise _PayloadError(f"{tag.name.lower()}: missing from the identity payload")
    sex = values[Tag.SEX]
    if sex not in SEXES:
        raise _PayloadError(f"sex: expected M, F or X, got {sex!r}")
    dates = {
        name: _parse_date(name, values[tag]) if tag in values else None
        for tag, name in _DATE_TAGS.items()
    }
    birth = dates["date_of_birth"]
    if birth is None:  # checked above; keeps the type checker informed
        raise _PayloadError("date_of_birth: missing from the identity payload")
    sex_value: Sex = "M" if sex == "M" else "F" if sex == "F" else "X"
    try:
        return Identity(
            id_number=values[Tag.ID_NUMBER],
            old_id_number=values.get(Tag.OLD_ID_NUMBER),
            full_name=values[Tag.FULL_NAME],
            date_of_birth=birth,
            sex=sex_value,
            address=values.get(Tag.ADDRESS),
            issue_date=dates["issue_date"],
            expiry_date=dates["expiry_date"],
            document_number=values.get(Tag.DOCUMENT_NUMBER),
            nationality=values.get(Tag.NATIONALITY),
            source="chip",
        )
    except IdentityError as exc:
        raise _PayloadError(str(exc)) from None


# ---------------------------------------------------------------- both sides


def _unexpected(frame: Frame, why: str) -> FrameError:
    return FrameError(
        kind=FrameErrorKind.UNEXPECTED_COMMAND,
        detail=f"command 0x{frame.command:02x}: {why}",
        discarded=0,
    )


def _bad_payload(frame: Frame, why: str) -> FrameError:
    return FrameError(
        kind=FrameErrorKind.BAD_PAYLOAD, detail=f"command 0x{frame.command:02x}: {why}", discarded=0
    )


def _interpret_reader_frame(frame: Frame) -> ReaderEvent:
    command, payload = frame.command, frame.payload
    if command in (Command.CARD_INSERTED, Command.CARD_REMOVED):
        if payload:
            return _bad_payload(frame, "card events carry no payload")
        return CardInserted() if command == Command.CARD_INSERTED else CardRemoved()
    if command == Command.STATUS:
        if payload not in (b"\x00", b"\x01"):
            return _bad_payload(frame, "status payload must be one byte, 0 or 1")
        return StatusReport(card_present=payload == b"\x01")
    if command == Command.ERROR:
        if len(payload) != 1:
            return _bad_payload(frame, "error payload must be one byte")
        return ReaderError(code=payload[0])
    if command == Command.IDENTITY:
        decoded = decode_identity(payload)
        return decoded if isinstance(decoded, FrameError) else IdentityRead(identity=decoded)
    return _unexpected(frame, "not a frame a reader sends")


def encode_event(
    event: CardInserted | CardRemoved | StatusReport | IdentityRead | ReaderError,
) -> bytes:
    """Reader side: the frame that carries ``event`` (used by the emulated reader)."""
    if isinstance(event, CardInserted):
        return encode_frame(Command.CARD_INSERTED)
    if isinstance(event, CardRemoved):
        return encode_frame(Command.CARD_REMOVED)
    if isinstance(event, StatusReport):
        return encode_frame(Command.STATUS, b"\x01" if event.card_present else b"\x00")
    if isinstance(event, ReaderError):
        return encode_frame(Command.ERROR, bytes((event.code,)))
    return encode_frame(Command.IDENTITY, encode_identity(event.identity))


def decode_request(frame: Frame) -> Request | None:
    """Reader side: the request a host frame carries, or ``None`` if unknown."""
    if frame.payload:
        return None
    if frame.command == Command.GET_STATUS:
        return GetStatus()
    if frame.command == Command.READ_IDENTITY:
        return ReadIdentity()
    return None


class HostConnection:
    """The kiosk's side of the reader protocol: bytes in, :data:`ReaderEvent` out."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder()

    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the serial line."""
        self._decoder.receive_data(data)

    def next_event(self) -> ReaderEvent | NeedData:
        """Return the next event or :data:`NEED_DATA`; never raises on peer data."""
        item = self._decoder.next_event()
        if isinstance(item, Frame):
            return _interpret_reader_frame(item)
        return item

    def reset(self) -> None:
        """Forget any partial frame (call after a reply timed out or the port reopened)."""
        self._decoder.reset()

    @property
    def buffered(self) -> int:
        return self._decoder.buffered

    def send(self, request: Request) -> bytes:
        """Bytes to write to the line for ``request``."""
        if isinstance(request, GetStatus):
            return encode_frame(Command.GET_STATUS)
        if isinstance(request, ReadIdentity):
            return encode_frame(Command.READ_IDENTITY)
        raise LocalProtocolError(f"request: {request!r} is not a card-reader request")
