"""Document camera: a UVC camera over V4L2 (linuxpy) that photographs paper originals.

Theory of operation
-------------------
The camera is named by a URL in the agent's configuration
(``devices.document_camera``)::

    v4l2:///dev/video0?width=1920&height=1080&format=MJPG

parsed by :func:`parse_camera_url` (``width``/``height`` 320..8192, ``format``
``MJPG``, ``YUYV`` or ``auto`` = MJPEG if the camera takes it, else YUYV;
``warmup`` frames dropped after stream-on while auto-exposure settles, 0..30).

:class:`DocumentCamera` opens the camera only for a capture (a UVC camera that
streams all day heats up and holds USB bandwidth), takes one frame, and makes
it a page: :func:`make_page` decodes MJPEG or converts YUYV with Pillow, refuses
a near-uniform frame (:class:`BlankFrame`: lens covered, nothing under the
camera, the lamp off), and encodes a JPEG that fits ``max_bytes``, lowering the
quality and then the size until it does, or refusing (:class:`PageTooLarge`)
when even the smallest legible page does not fit.

Faults: a camera that is missing or fails mid-capture raises
:class:`CameraUnplugged` (an ``OSError``); the camera is closed, its
:meth:`DocumentCamera.health` says ``unplugged`` with the error, and the next
capture opens it again (no sooner than ``reopen_s`` after the failure, so a
citizen tapping "Chụp" on a dead camera does not hammer USB).

The seam below the driver is :class:`FrameSource`: ``open``, ``read_frame``,
``close``. :class:`LinuxpySource` is the real one (linuxpy's ``Device`` and
``VideoCapture``, mmap streaming, a bounded ``select`` before each dequeue);
``firmware_mocks.v4l2_camera`` provides an emulated one for tests, and
``firmware_mocks.v4l2_node`` emulates the node below linuxpy (ioctls, mmap, select), so
the tests also run LinuxpySource itself.
"""

from __future__ import annotations

import contextlib
import io
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageStat

__all__ = [
    "BlankFrame",
    "CameraConfigError",
    "CameraError",
    "CameraHealth",
    "CameraUnplugged",
    "CameraUrl",
    "CapturedPage",
    "DocumentCamera",
    "FrameSource",
    "LinuxpySource",
    "PageTooLarge",
    "RawFrame",
    "make_page",
    "parse_camera_url",
]

PixelFormat = Literal["MJPG", "YUYV"]
MIN_SIDE = 320
MAX_SIDE = 8192
#: The smallest long side a page is shrunk to before it is refused (still legible A4 text).
MIN_PAGE_LONG_SIDE = 1000
#: Grey-level standard deviation under which a frame is blank (0..255 scale).
BLANK_STDDEV = 3.0
_QUALITIES = (85, 75, 65, 55, 45)


class CameraConfigError(ValueError):
    """The document camera URL is wrong; the message names the field and the fix."""


class CameraError(Exception):
    """A capture failed; ``citizen_text`` is the Vietnamese message for the screen."""

    citizen_text = "Không chụp được giấy tờ. Xin mời Ông/Bà thử lại hoặc gọi cán bộ hỗ trợ."


class CameraUnplugged(CameraError, OSError):
    """The camera is missing, or stopped answering (unplugged) during a capture."""

    citizen_text = (
        "Máy chụp giấy tờ đang không hoạt động. Xin mời Ông/Bà gọi cán bộ hỗ trợ "
        "hoặc nộp bản giấy tại quầy."
    )


class BlankFrame(CameraError):
    """The frame is near-uniform: nothing is under the camera, or it is covered."""

    citizen_text = (
        "Ảnh chụp bị trống. Xin mời Ông/Bà đặt giấy tờ ngay ngắn dưới máy chụp rồi chụp lại."
    )


class PageTooLarge(CameraError):
    """No JPEG of the page fits the byte limit, even at the lowest quality and size."""

    citizen_text = "Ảnh giấy tờ quá lớn để gửi. Xin mời Ông/Bà gọi cán bộ hỗ trợ."


@dataclass(frozen=True, kw_only=True)
class CameraUrl:
    path: str
    width: int
    height: int
    format: PixelFormat | Literal["auto"]
    warmup: int


def parse_camera_url(url: str) -> CameraUrl:
    """Parse ``v4l2:///dev/videoN?width=..&height=..&format=..&warmup=..``."""
    fix = "e.g. v4l2:///dev/video0?width=1920&height=1080 (docs/devices.md, Document camera)"
    parts = urlsplit(url)
    if parts.scheme != "v4l2":
        raise CameraConfigError(
            f"devices.document_camera {url!r}: scheme must be v4l2://, not "
            f"{parts.scheme or 'none'!r}; {fix}"
        )
    if parts.netloc:
        raise CameraConfigError(
            f"devices.document_camera {url!r}: no host after v4l2:// (three slashes before "
            f"/dev); {fix}"
        )
    if not parts.path.startswith("/dev/") or parts.path.endswith("/") or "\x00" in parts.path:
        raise CameraConfigError(
            f"devices.document_camera {url!r}: path must be a device under /dev/, such as "
            f"/dev/video0 or a /dev/v4l/by-id/... link; {fix}"
        )
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise CameraConfigError(
            f"devices.document_camera {url!r}: bad query: {exc}; {fix}"
        ) from exc
    unknown = sorted(set(query) - {"width", "height", "format", "warmup"})
    if unknown:
        raise CameraConfigError(
            f"devices.document_camera {url!r}: unknown option {unknown[0]!r}; the options are "
            f"width, height, format, warmup; {fix}"
        )
    for key, values in query.items():
        if len(values) > 1:
            raise CameraConfigError(
                f"devices.document_camera {url!r}: option {key!r} given {len(values)} times; "
                "give it once"
            )

    def number(key: str, default: int, low: int, high: int) -> int:
        raw = query.get(key, [str(default)])[0]
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise CameraConfigError(
                f"devices.document_camera {url!r}: {key} must be a whole number from {low} "
                f"to {high}, not {raw!r}; {fix}"
            )
        return int(raw)

    width = number("width", 1920, MIN_SIDE, MAX_SIDE)
    height = number("height", 1080, MIN_SIDE, MAX_SIDE)
    warmup = number("warmup", 3, 0, 30)
    fmt = query.get("format", ["auto"])[0].upper()
    if fmt not in ("MJPG", "YUYV", "AUTO"):
        raise CameraConfigError(
            f"devices.document_camera {url!r}: format must be MJPG, YUYV or auto, not "
            f"{query['format'][0]!r}; {fix}"
        )
    return CameraUrl(
        path=parts.path,
        width=width,
        height=height,
        format="auto" if fmt == "AUTO" else fmt,  # type: ignore[arg-type]
        warmup=warmup,
    )


@dataclass(frozen=True, kw_only=True)
class RawFrame:
    """One frame as the camera delivered it."""

    pixel_format: PixelFormat
    width: int
    height: int
    data: bytes


@dataclass(frozen=True, kw_only=True)
class CapturedPage:
    """A photographed page: a JPEG within the limit, and its size in pixels."""

    jpeg: bytes
    width: int
    height: int
    quality: int

    def __repr__(self) -> str:
        return f"CapturedPage({self.width}x{self.height}, q{self.quality}, {len(self.jpeg)} B)"


class FrameSource(Protocol):
    """The camera as the driver uses it (linuxpy below, or the emulated camera)."""

    def open(self) -> None: ...

    def read_frame(self, timeout: float) -> RawFrame: ...

    def close(self) -> None: ...


def _yuyv_to_image(frame: RawFrame) -> Image.Image:
    w, h = frame.width, frame.height
    if w % 2 or len(frame.data) < w * h * 2:
        raise CameraError(
            f"YUYV frame {w}x{h} has {len(frame.data)} bytes, needs {w * h * 2} (even width)"
        )
    data = frame.data[: w * h * 2]
    y = Image.frombytes("L", (w, h), data[0::2])
    u = Image.frombytes("L", (w // 2, h), data[1::4]).resize((w, h))
    v = Image.frombytes("L", (w // 2, h), data[3::4]).resize((w, h))
    return Image.merge("YCbCr", (y, u, v)).convert("RGB")


def frame_image(frame: RawFrame) -> Image.Image:
    """The frame decoded to RGB (MJPEG through Pillow's JPEG decoder, YUYV converted)."""
    if frame.pixel_format == "YUYV":
        return _yuyv_to_image(frame)
    try:
        image = Image.open(io.BytesIO(frame.data))
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:  # a frame cut short by an unplug
        raise CameraError(f"MJPEG frame of {len(frame.data)} bytes does not decode: {exc}") from exc
    return image.convert("RGB")


def is_blank(image: Image.Image, threshold: float = BLANK_STDDEV) -> bool:
    """True when the grey levels hardly vary (a covered lens, an empty tray)."""
    small = image.convert("L")
    small.thumbnail((256, 256))
    return float(ImageStat.Stat(small).stddev[0]) < threshold


def make_page(frame: RawFrame, *, max_bytes: int) -> CapturedPage:
    """A JPEG page of ``frame`` of at most ``max_bytes``; see the module docstring."""
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, not {max_bytes}")
    image = frame_image(frame)
    if is_blank(image):
        raise BlankFrame(f"blank frame ({frame.width}x{frame.height}): nothing to photograph")
    smallest = 0
    while True:
        for quality in _QUALITIES:
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality, optimize=True)
            size = out.tell()
            smallest = size if not smallest else min(smallest, size)
            if size <= max_bytes:
                return CapturedPage(
                    jpeg=out.getvalue(), width=image.width, height=image.height, quality=quality
                )
        long_side = max(image.size)
        if long_side <= MIN_PAGE_LONG_SIDE:
            break
        scale = max(0.75, MIN_PAGE_LONG_SIDE / long_side)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.LANCZOS,
        )
    raise PageTooLarge(
        f"page {frame.width}x{frame.height}: the smallest JPEG ({image.width}x{image.height}, "
        f"quality {_QUALITIES[-1]}) is {smallest} bytes, over the limit of {max_bytes} bytes "
        "per page; raise the page limit or lower the camera's width/height in "
        "devices.document_camera"
    )


@dataclass(frozen=True, kw_only=True)
class CameraHealth:
    state: str
    last_error: str | None
    since: datetime

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "last_error": self.last_error,
            "since": self.since.isoformat(timespec="seconds"),
        }


class LinuxpySource:
    """The real camera: linuxpy ``Device`` + ``VideoCapture`` (mmap streaming).

    Each :meth:`read_frame` waits for the device to be readable with a bounded
    ``select`` (linuxpy's own non-blocking wait calls the ``select`` module
    itself and fails), then dequeues one buffer.
    """

    def __init__(self, url: CameraUrl) -> None:
        self.url = url
        self._device: Any = None
        self._capture: Any = None
        self._format: PixelFormat = "MJPG"

    def open(self) -> None:
        from linuxpy.video.device import BufferType, Device, VideoCapture
        from linuxpy.video.device import PixelFormat as V4l2Format

        device = Device(self.url.path, blocking=False)
        device.open()  # FileNotFoundError / PermissionError: OSError
        try:
            wanted: tuple[str, ...] = (
                ("MJPG", "YUYV") if self.url.format == "auto" else (self.url.format,)
            )
            names: dict[Any, PixelFormat] = {V4l2Format.MJPEG: "MJPG", V4l2Format.YUYV: "YUYV"}
            for fourcc in wanted:
                device.set_format(BufferType.VIDEO_CAPTURE, self.url.width, self.url.height, fourcc)
                got = names.get(device.get_format(BufferType.VIDEO_CAPTURE).pixel_format)
                if got is not None:
                    self._format = got
                    break
            else:
                raise CameraError(
                    f"camera {self.url.path}: takes none of {', '.join(wanted)}; set format=auto"
                )
            capture = VideoCapture(device)
            capture.open()
        except BaseException:
            device.close()
            raise
        self._device, self._capture = device, capture

    def read_frame(self, timeout: float) -> RawFrame:
        if self._device is None:
            raise CameraUnplugged(f"camera {self.url.path}: not open")
        readable, _, _ = select.select([self._device], [], [], timeout)
        if not readable:
            raise CameraUnplugged(f"camera {self.url.path}: no frame within {timeout:g} s")
        frame = self._capture.buffer.raw_read()
        return RawFrame(
            pixel_format=self._format,
            width=int(frame.width),
            height=int(frame.height),
            data=bytes(frame.data),
        )

    def close(self) -> None:
        device, capture = self._device, self._capture
        self._device = self._capture = None
        try:
            if capture is not None:
                capture.close()
        finally:
            if device is not None:
                device.close()


class DocumentCamera:
    """Captures pages; thread-safe (one capture at a time); see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        source: FrameSource | None = None,
        reopen_s: float = 5.0,
        frame_timeout_s: float = 5.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.url = parse_camera_url(url)
        self._source: FrameSource = source or LinuxpySource(self.url)
        self.reopen_s = reopen_s
        self.frame_timeout_s = frame_timeout_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._health = CameraHealth(state="idle", last_error=None, since=self._clock())
        self._failed_at: float | None = None

    def health(self) -> dict[str, Any]:
        return self._health.to_json_dict()

    def _set(self, state: str, error: str | None = None) -> None:
        old = self._health
        if old.state == state and error in (None, old.last_error):
            return
        self._health = CameraHealth(
            state=state,
            last_error=error if error is not None else old.last_error,
            since=old.since if old.state == state else self._clock(),
        )

    def capture(self, *, max_bytes: int) -> CapturedPage:
        """Open, take one frame (after the warm-up frames), close; a page or a CameraError."""
        with self._lock:
            if self._failed_at is not None:
                wait = self._failed_at + self.reopen_s - time.monotonic()
                if wait > 0:
                    raise CameraUnplugged(
                        f"camera {self.url.path}: {self._health.state} "
                        f"({self._health.last_error}); next try in {wait:.1f} s"
                    )
            try:
                self._source.open()
            except Exception as exc:
                raise self._fault(exc) from exc
            try:
                frame = self._source.read_frame(self.frame_timeout_s)
                for _ in range(self.url.warmup):
                    frame = self._source.read_frame(self.frame_timeout_s)
            except Exception as exc:
                self._close()
                raise self._fault(exc) from exc
            self._close()
            self._failed_at = None
            self._set("ok")
            try:
                return make_page(frame, max_bytes=max_bytes)
            except BlankFrame as exc:
                self._set("ok", f"last capture blank: {exc}")
                raise

    def _close(self) -> None:
        with contextlib.suppress(Exception):  # a yanked camera may fail to close
            self._source.close()

    def _fault(self, exc: Exception) -> CameraError:
        text = str(exc) or type(exc).__name__
        self._failed_at = time.monotonic()
        if isinstance(exc, OSError):
            self._set("unplugged", text)
            return (
                exc
                if isinstance(exc, CameraUnplugged)
                else CameraUnplugged(f"camera {self.url.path}: {text}")
            )
        self._set("error", f"{type(exc).__name__}: {text}")
        return (
            exc
            if isinstance(exc, CameraError)
            else CameraError(f"camera {self.url.path}: {type(exc).__name__}: {text}")
        )
