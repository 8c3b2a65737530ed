"""An emulated UVC document camera, at the seam drivers.document_camera reads frames from.

Which seam: :class:`drivers.document_camera.FrameSource` (``open`` / ``read_frame`` /
``close``), delivering what a UVC camera delivers: MJPEG frames (JPEG bytes) or YUYV 4:2:2
frames (2 bytes per pixel). Tests of paging, limits and the capture service use it directly;
:mod:`firmware_mocks.v4l2_node` puts the same camera below linuxpy, at the V4L2 ioctls and
mmap'd buffers, so the real ``LinuxpySource`` runs against it.

Faults: ``present=False`` (no device: ``open`` raises ``FileNotFoundError``
like ``open("/dev/video0")``), :meth:`unplug_after` (the next frames fail with
``ENODEV``, what the kernel returns on DQBUF once the camera is pulled), and
:meth:`show_blank` (a uniform frame: covered lens / empty tray).
"""

from __future__ import annotations

import errno
import io
import random
import threading

from PIL import Image, ImageDraw

from drivers.document_camera import PixelFormat, RawFrame

__all__ = ["EmulatedV4l2Camera", "page_image"]


def page_image(width: int, height: int, seed: int) -> Image.Image:
    """A synthetic page: off-white paper, dark text-like lines, a red seal, sensor noise."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (236, 234, 228))
    draw = ImageDraw.Draw(image)
    margin = max(4, width // 12)
    y = margin
    while y < height - margin:
        x = margin
        while x < width - margin:
            word = rng.randint(width // 40 + 2, width // 10 + 4)
            draw.rectangle(
                [x, y, min(x + word, width - margin), y + max(2, height // 90)], fill=(30, 30, 40)
            )
            x += word + max(3, width // 80)
        y += max(6, height // 30)
    # The office's red seal (mộc đỏ): colour, so a YUYV conversion that swaps U and V shows.
    r = max(8, min(width, height) // 6)
    cx, cy = width - margin - r, height - margin - r
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 30, 35))
    noise = Image.effect_noise((width, height), 12).convert("RGB")
    return Image.blend(image, noise, 0.08)


class EmulatedV4l2Camera:
    """A camera that hands out frames of ``width`` x ``height`` in ``pixel_format``."""

    def __init__(
        self,
        *,
        width: int = 1280,
        height: int = 720,
        pixel_format: PixelFormat = "MJPG",
        present: bool = True,
    ) -> None:
        self.width, self.height, self.pixel_format = width, height, pixel_format
        self.present = present
        self._lock = threading.Lock()
        self._open = False
        self._blank = False
        self._frames_before_unplug: int | None = None
        self._seed = 0
        self.opens = 0
        self.frames_read = 0

    # -- faults ------------------------------------------------------------------
    def unplug(self) -> None:
        with self._lock:
            self.present = False

    def plug(self) -> None:
        with self._lock:
            self.present = True
            self._frames_before_unplug = None

    def unplug_after(self, frames: int) -> None:
        """Deliver ``frames`` more frames, then the camera is pulled (ENODEV)."""
        with self._lock:
            self._frames_before_unplug = frames

    def show_blank(self, blank: bool = True) -> None:
        with self._lock:
            self._blank = blank

    def next_page(self) -> None:
        """The citizen puts another page under the camera."""
        with self._lock:
            self._seed += 1

    # -- FrameSource -------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            if not self.present:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/dev/video0")
            self._open = True
            self.opens += 1

    def close(self) -> None:
        with self._lock:
            self._open = False

    def read_frame(self, timeout: float) -> RawFrame:
        with self._lock:
            if not self._open:
                raise OSError(errno.EBADF, "camera not open")
            if self._frames_before_unplug is not None:
                if self._frames_before_unplug <= 0:
                    self.present = False
                    raise OSError(errno.ENODEV, "No such device")
                self._frames_before_unplug -= 1
            if not self.present:
                raise OSError(errno.ENODEV, "No such device")
            self.frames_read += 1
            image = (
                Image.new("RGB", (self.width, self.height), (128, 128, 128))
                if self._blank
                else page_image(self.width, self.height, self._seed)
            )
        return RawFrame(
            pixel_format=self.pixel_format,
            width=self.width,
            height=self.height,
            data=_encode(image, self.pixel_format),
        )


def _encode(image: Image.Image, pixel_format: PixelFormat) -> bytes:
    if pixel_format == "MJPG":
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        return out.getvalue()
    y, cb, cr = image.convert("YCbCr").split()
    w, h = image.size
    cb2 = cb.resize((w // 2, h)).tobytes()
    cr2 = cr.resize((w // 2, h)).tobytes()
    luma = y.tobytes()
    data = bytearray(w * h * 2)
    data[0::2] = luma
    data[1::4] = cb2
    data[3::4] = cr2
    return bytes(data)
