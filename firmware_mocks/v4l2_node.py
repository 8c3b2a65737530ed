"""A /dev/videoN node emulated below linuxpy: the V4L2 ioctls, the mmap'd buffers, select.

Which seam, and why: :class:`drivers.document_camera.LinuxpySource` drives a camera through
linuxpy, which opens the device path, calls ``fcntl.ioctl`` with V4L2 requests (QUERYCAP,
S_FMT, G_FMT, REQBUFS, QUERYBUF, QBUF, DQBUF, STREAMON, STREAMOFF), maps the kernel's buffers
with ``mmap.mmap(fd, length, offset=...)`` and waits with ``select`` on the fd. A container
cannot load v4l2loopback, so this module stands in for the kernel at exactly those calls:

- the device node is a FIFO at :attr:`EmulatedV4l2Node.path`, so linuxpy's real ``open`` and the
  driver's real ``select`` work on a real fd; the FIFO holds one byte while a frame is ready;
- :meth:`EmulatedV4l2Node.install` swaps the ``fcntl`` and ``mmap`` modules *as linuxpy sees
  them* (``linuxpy.ioctl.fcntl``, ``linuxpy.video.device.mmap``) for shims that answer for this
  node's fd and pass every other fd to the real call, so nothing else in the process changes;
- frames come from a :class:`firmware_mocks.v4l2_camera.EmulatedV4l2Camera` (the synthetic page,
  MJPEG or YUYV, and its faults), written into the buffer the driver mapped, as a UVC driver
  does, with ``bytesused`` set and the buffer's index, sequence and timestamp.

Faults as the kernel shows them: no device (the node is absent: ``open`` raises
``FileNotFoundError``), unplugged mid-capture (DQBUF fails with ``ENODEV`` and the node goes
away, :meth:`EmulatedV4l2Node.unplug_after`), a blank frame (the camera's ``show_blank``).
An ioctl this emulation does not know answers ``ENOTTY``, as the kernel does.
"""

from __future__ import annotations

import contextlib
import errno
import mmap as real_mmap
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from firmware_mocks.v4l2_camera import EmulatedV4l2Camera

__all__ = ["EmulatedV4l2Node"]

#: Most buffers a driver may request (uvcvideo allows 32; the driver asks for 2).
MAX_BUFFERS = 8


def _fourcc(code: str) -> int:
    a, b, c, d = (ord(ch) for ch in code)
    return a | (b << 8) | (c << 16) | (d << 24)


class EmulatedV4l2Node:
    """One emulated capture node over ``camera``; see the module docstring."""

    def __init__(self, directory: Path, camera: EmulatedV4l2Camera, name: str = "video0") -> None:
        self.camera = camera
        self.path = Path(directory) / name
        self._lock = threading.RLock()
        self._frames_before_unplug: int | None = None
        self._fifo_fd: int | None = None
        self._ino: int | None = None
        self.calls: list[str] = []  # the ioctl names seen, in order (tests read them)
        self._reset_stream()
        self.plug()

    # -- the node's presence ----------------------------------------------------------
    def plug(self) -> None:
        with self._lock:
            self.close_node()
            os.mkfifo(self.path, 0o600)
            self._fifo_fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
            self._ino = os.fstat(self._fifo_fd).st_ino
            self._frames_before_unplug = None
            self.camera.plug()
            self._reset_stream()

    def unplug(self) -> None:
        """The camera is pulled: the node disappears, calls on an open fd fail with ENODEV."""
        with self._lock:
            self.close_node()
            self.camera.unplug()

    def unplug_after(self, frames: int) -> None:
        with self._lock:
            self._frames_before_unplug = frames

    def close_node(self) -> None:
        with self._lock:
            if self._fifo_fd is not None:
                os.close(self._fifo_fd)
                self._fifo_fd = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _reset_stream(self) -> None:
        self.width, self.height = self.camera.width, self.camera.height
        self.fourcc = _fourcc(self.camera.pixel_format)
        self.buffers: list[real_mmap.mmap | None] = []
        self.queued: deque[int] = deque()
        self.streaming = False
        self.sequence = 0

    @property
    def sizeimage(self) -> int:
        return self.width * self.height * 2  # YUYV size; MJPEG frames are smaller

    # -- the shims linuxpy calls ----------------------------------------------------------
    def _mine(self, fd: Any) -> bool:
        try:
            number = fd if isinstance(fd, int) else fd.fileno()
            return self._ino is not None and os.fstat(number).st_ino == self._ino
        except (OSError, ValueError, AttributeError):
            return False

    @contextlib.contextmanager
    def install(self) -> Iterator[EmulatedV4l2Node]:
        """Answer linuxpy's ioctls and mmaps for this node while the block runs."""
        import fcntl as real_fcntl

        import linuxpy.ioctl
        import linuxpy.video.device

        node = self

        class _Fcntl:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_fcntl, name)

            def ioctl(self, fd: Any, request: int, *args: Any) -> Any:
                if node._mine(fd):
                    return node.ioctl(request, args[0] if args else None)
                return real_fcntl.ioctl(fd, request, *args)

        class _Mmap:
            def __getattr__(self, name: str) -> Any:
                return getattr(real_mmap, name)

            def mmap(self, fd: Any, length: int, *args: Any, **kwargs: Any) -> Any:
                if node._mine(fd):
                    return node.map(length, int(kwargs.get("offset", 0)))
                return real_mmap.mmap(fd, length, *args, **kwargs)

        saved = (linuxpy.ioctl.fcntl, linuxpy.video.device.mmap)
        linuxpy.ioctl.fcntl = _Fcntl()
        linuxpy.video.device.mmap = _Mmap()
        try:
            yield self
        finally:
            linuxpy.ioctl.fcntl, linuxpy.video.device.mmap = saved

    def map(self, length: int, offset: int) -> real_mmap.mmap:
        with self._lock:
            index, rest = divmod(offset, self._stride)
            if rest or not 0 <= index < len(self.buffers) or length > self.sizeimage:
                raise OSError(errno.EINVAL, "Invalid argument")
            memory = real_mmap.mmap(-1, length)
            self.buffers[index] = memory
            return memory

    @property
    def _stride(self) -> int:
        page = real_mmap.PAGESIZE
        return (self.sizeimage + page - 1) // page * page

    def ioctl(self, request: int, arg: Any) -> Any:
        from linuxpy.video.raw import IOC

        with self._lock:
            name = IOC(request).name if request in IOC._value2member_map_ else hex(request)
            self.calls.append(name)
            if self._fifo_fd is None:
                raise OSError(errno.ENODEV, "No such device")
            handler = getattr(self, f"_ioc_{name.lower()}", None)
            if handler is None:
                raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
            handler(arg)
            return arg

    # -- the ioctls -----------------------------------------------------------------------
    def _ioc_querycap(self, caps: Any) -> None:
        from linuxpy.video.raw import Capability

        caps.driver = b"uvcvideo"
        caps.card = b"APS emulated document camera"
        caps.bus_info = b"usb-0000:01:00.0-1.3"
        caps.version = (6 << 16) | (1 << 8)
        device = Capability.VIDEO_CAPTURE | Capability.STREAMING | Capability.EXT_PIX_FORMAT
        caps.device_caps = device
        caps.capabilities = device | Capability.DEVICE_CAPS

    def _pix(self, fmt: Any) -> None:
        fmt.fmt.pix.width, fmt.fmt.pix.height = self.width, self.height
        fmt.fmt.pix.pixelformat = self.fourcc
        fmt.fmt.pix.field = 1  # V4L2_FIELD_NONE
        fmt.fmt.pix.bytesperline = self.width * 2 if self.camera.pixel_format == "YUYV" else 0
        fmt.fmt.pix.sizeimage = self.sizeimage

    def _ioc_g_fmt(self, fmt: Any) -> None:
        if fmt.type != 1:  # V4L2_BUF_TYPE_VIDEO_CAPTURE
            raise OSError(errno.EINVAL, "Invalid argument")
        self._pix(fmt)

    def _ioc_s_fmt(self, fmt: Any) -> None:
        if self.buffers:
            raise OSError(errno.EBUSY, "Device or resource busy")
        # A UVC camera offers its own format and size: what it cannot do, it adjusts (S_FMT
        # never fails for an unknown fourcc; the caller reads back what it got).
        self._ioc_g_fmt(fmt)

    def _ioc_reqbufs(self, req: Any) -> None:
        if self.streaming and req.count:
            raise OSError(errno.EBUSY, "Device or resource busy")
        for memory in self.buffers:
            if memory is not None:
                memory.close()
        self.queued.clear()
        self.buffers = [None] * min(int(req.count), MAX_BUFFERS)
        req.count = len(self.buffers)

    def _check_index(self, buff: Any) -> int:
        index = int(buff.index)
        if not 0 <= index < len(self.buffers):
            raise OSError(errno.EINVAL, "Invalid argument")
        return index

    def _ioc_querybuf(self, buff: Any) -> None:
        index = self._check_index(buff)
        buff.length = self.sizeimage
        buff.m.offset = index * self._stride

    def _ioc_qbuf(self, buff: Any) -> None:
        index = self._check_index(buff)
        if index in self.queued:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.queued.append(index)
        self._ready()

    def _ioc_dqbuf(self, buff: Any) -> None:
        if not self.streaming or not self.queued:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        if self._frames_before_unplug is not None:
            if self._frames_before_unplug <= 0:
                self.unplug()
                raise OSError(errno.ENODEV, "No such device")
            self._frames_before_unplug -= 1
        frame = self.camera.read_frame(timeout=1.0)  # OSError(ENODEV) when the camera is gone
        index = self.queued.popleft()
        memory = self.buffers[index]
        if memory is None:
            raise OSError(errno.EINVAL, "Invalid argument")  # queued but never mapped
        data = frame.data[: self.sizeimage]
        memory.seek(0)
        memory.write(data)
        buff.index = index
        buff.bytesused = len(data)
        buff.length = self.sizeimage
        buff.field = 1
        buff.sequence = self.sequence
        self.sequence += 1
        now = time.monotonic()
        buff.timestamp.secs = int(now)
        buff.timestamp.usecs = int((now % 1) * 1_000_000)
        self._drain()
        self._ready()

    def _ioc_streamon(self, _arg: Any) -> None:
        if not self.buffers:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.camera.open()
        self.streaming = True
        self._ready()

    def _ioc_streamoff(self, _arg: Any) -> None:
        self.streaming = False
        self.camera.close()
        self.queued.clear()
        self._drain()

    # -- readiness through the FIFO -------------------------------------------------------
    def _ready(self) -> None:
        if self.streaming and self.queued and self._fifo_fd is not None:
            self._drain()
            os.write(self._fifo_fd, b"\x01")

    def _drain(self) -> None:
        if self._fifo_fd is None:
            return
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fifo_fd, 64):
                pass
