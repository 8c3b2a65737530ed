"""The real linuxpy capture path (LinuxpySource) against a V4L2 node emulated at the kernel ABI.

firmware_mocks.v4l2_node answers linuxpy's own ioctls, mmaps and select on a real fd, so these
tests run the code a kiosk runs with a real camera, from S_FMT to STREAMOFF.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import os
import termios
from collections.abc import Iterator
from pathlib import Path

import linuxpy.ioctl
import pytest
from PIL import Image, ImageChops, ImageStat

from drivers.document_camera import (
    BlankFrame,
    CameraUnplugged,
    DocumentCamera,
    LinuxpySource,
    parse_camera_url,
)
from firmware_mocks.v4l2_camera import EmulatedV4l2Camera, page_image
from firmware_mocks.v4l2_node import EmulatedV4l2Node

URL = "v4l2:///dev/video0?width=1280&height=720&format=auto&warmup=1"


def camera_on(node: EmulatedV4l2Node, url: str = URL) -> DocumentCamera:
    # The config parser insists on /dev/...; the emulated node lives in tmp_path.
    source = LinuxpySource(dataclasses.replace(parse_camera_url(url), path=str(node.path)))
    return DocumentCamera(url, source=source, reopen_s=0, frame_timeout_s=2)


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EmulatedV4l2Node]:
    fmt = getattr(request, "param", "MJPG")
    emulated = EmulatedV4l2Node(tmp_path, EmulatedV4l2Camera(pixel_format=fmt))
    with emulated.install():
        yield emulated
    emulated.close_node()


@pytest.mark.parametrize("node", ["MJPG", "YUYV"], indirect=True)
def test_linuxpy_captures_a_page_true_to_the_paper(node: EmulatedV4l2Node) -> None:
    camera = camera_on(node)
    page = camera.capture(max_bytes=1_500_000)
    assert (page.width, page.height) == (1280, 720)
    with Image.open(io.BytesIO(page.jpeg)) as got:
        diff = ImageChops.difference(got.convert("RGB"), page_image(1280, 720, 0))
        assert max(ImageStat.Stat(diff).mean) < 12
        r, g, b = got.convert("RGB").getpixel((1280 - 106 - 120, 720 - 106 - 120))  # the seal
        assert r > 150 and g < 90 and b < 90, (r, g, b)
    # The whole streaming life cycle went through linuxpy, and the buffers were given back.
    calls = node.calls
    assert calls[0] == "S_FMT" and "QUERYCAP" in calls
    assert calls.index("REQBUFS") < calls.index("STREAMON") < calls.index("DQBUF")
    assert calls.count("DQBUF") == 2  # one warm-up frame, one page
    assert calls[-2:] == ["STREAMOFF", "REQBUFS"] and node.buffers == []
    assert camera.health()["state"] == "ok"


def test_each_capture_opens_and_closes_the_device(node: EmulatedV4l2Node) -> None:
    camera = camera_on(node)
    for _ in range(3):
        camera.capture(max_bytes=1_500_000)
    assert node.calls.count("STREAMON") == node.calls.count("STREAMOFF") == 3
    assert node.camera.opens == 3 and not node.streaming


def test_a_blank_frame_is_refused(node: EmulatedV4l2Node) -> None:
    node.camera.show_blank()
    camera = camera_on(node)
    with pytest.raises(BlankFrame):
        camera.capture(max_bytes=1_500_000)
    node.camera.show_blank(False)
    assert camera.capture(max_bytes=1_500_000).width == 1280


def test_no_device_then_plugged(tmp_path: Path) -> None:
    emulated = EmulatedV4l2Node(tmp_path, EmulatedV4l2Camera())
    emulated.unplug()  # no /dev/video0 at all
    with emulated.install():
        camera = camera_on(emulated)
        with pytest.raises(CameraUnplugged, match="No such file"):
            camera.capture(max_bytes=1_500_000)
        assert camera.health()["state"] == "unplugged"
        emulated.plug()
        assert camera.capture(max_bytes=1_500_000).width == 1280
        assert camera.health()["state"] == "ok"
    emulated.close_node()


def test_unplugged_mid_capture_is_reported_and_recovers(node: EmulatedV4l2Node) -> None:
    camera = camera_on(node)
    node.unplug_after(1)  # the warm-up frame comes, then the camera is pulled
    with pytest.raises(CameraUnplugged, match="No such device"):
        camera.capture(max_bytes=1_500_000)
    assert camera.health()["state"] == "unplugged"
    assert not node.path.exists()  # the node went away with the camera
    node.plug()
    assert camera.capture(max_bytes=1_500_000).width == 1280


def test_other_file_descriptors_keep_the_real_ioctl(node: EmulatedV4l2Node) -> None:
    master, slave = os.openpty()
    try:
        # linuxpy's fcntl is the shim now; a tty's fd still gets the real ioctl through it
        shim = linuxpy.ioctl.fcntl
        assert shim is not fcntl
        assert shim.ioctl(slave, termios.TIOCGWINSZ, b"\0" * 8) == fcntl.ioctl(
            slave, termios.TIOCGWINSZ, b"\0" * 8
        )
    finally:
        os.close(master)
        os.close(slave)
    assert node.calls == []
