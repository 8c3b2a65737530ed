"""Document camera: URL parser, driver against the emulated camera (each fault), capture service."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageStat

from drivers.document_camera import (
    BlankFrame,
    CameraConfigError,
    CameraUnplugged,
    DocumentCamera,
    PageTooLarge,
    RawFrame,
    make_page,
    parse_camera_url,
)
from edge_agent import CitizenError
from edge_agent.app import KioskApp
from edge_agent.services.capture import CaptureService
from firmware_mocks.v4l2_camera import EmulatedV4l2Camera, page_image
from sync.config import ConfigError
from sync.schemas import check_fleet_message
from tests.kiosk import app_config

URL = "v4l2:///dev/video0?width=1280&height=720&warmup=1"


def jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.size


# --- URL parser -------------------------------------------------------------------------
@given(
    path=st.from_regex(r"/dev/(video[0-9]{1,2}|v4l/by-id/[A-Za-z0-9_.-]{1,40})", fullmatch=True),
    width=st.integers(320, 8192),
    height=st.integers(320, 8192),
    fmt=st.sampled_from(["MJPG", "YUYV", "auto", "mjpg", "yuyv"]),
    warmup=st.integers(0, 30),
)
def test_every_valid_url_parses_to_its_parts(
    path: str, width: int, height: int, fmt: str, warmup: int
) -> None:
    url = parse_camera_url(
        f"v4l2://{path}?width={width}&height={height}&format={fmt}&warmup={warmup}"
    )
    assert (url.path, url.width, url.height, url.warmup) == (path, width, height, warmup)
    assert url.format == ("auto" if fmt == "auto" else fmt.upper())


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_with_a_config_error(text: str) -> None:
    try:
        url = parse_camera_url(text)
    except CameraConfigError as exc:
        assert "devices.document_camera" in str(exc)
    else:
        assert text.startswith("v4l2:///dev/") and url.path.startswith("/dev/")


@given(st.integers().filter(lambda n: not 320 <= n <= 8192))
def test_a_width_out_of_range_names_the_field_and_the_limits(width: int) -> None:
    with pytest.raises(CameraConfigError, match=r"width must be a whole number from 320 to 8192"):
        parse_camera_url(f"v4l2:///dev/video0?width={width}")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("/dev/video0", "scheme must be v4l2://"),
        ("v4l2://dev/video0", "no host after v4l2://"),
        ("v4l2:///tmp/video0", "path must be a device under /dev/"),
        ("v4l2:///dev/video0?fps=30", "unknown option 'fps'"),
        ("v4l2:///dev/video0?format=H264", "format must be MJPG, YUYV or auto"),
        ("v4l2:///dev/video0?width=640&width=800", "given 2 times"),
        ("v4l2:///dev/video0?height=1080p", "height must be a whole number"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, match: str) -> None:
    with pytest.raises(CameraConfigError, match=match):
        parse_camera_url(url)


def test_the_agent_config_refuses_a_bad_camera_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"document_camera.*width must be"):
        app_config(tmp_path, devices={"document_camera": "v4l2:///dev/video0?width=99"})


# --- driver against the emulated camera ----------------------------------------------------
@pytest.mark.parametrize("pixel_format", ["MJPG", "YUYV"])
def test_a_capture_is_a_jpeg_page_true_to_the_paper(pixel_format: str) -> None:
    cam = EmulatedV4l2Camera(width=1280, height=720, pixel_format=pixel_format)  # type: ignore[arg-type]
    camera = DocumentCamera(URL, source=cam, reopen_s=0)
    page = camera.capture(max_bytes=1_500_000)
    assert jpeg_size(page.jpeg) == (1280, 720) == (page.width, page.height)
    assert cam.frames_read == 2  # one warm-up frame dropped
    assert camera.health()["state"] == "ok"
    # The page is the paper (YUYV converted right: colours and text where they were).
    with Image.open(io.BytesIO(page.jpeg)) as got:
        diff = ImageChops.difference(got.convert("RGB"), page_image(1280, 720, 0))
        assert max(ImageStat.Stat(diff).mean) < 12
        r, g, b = got.convert("RGB").getpixel((1280 - 106 - 120, 720 - 106 - 120))  # the seal
        assert r > 150 and g < 90 and b < 90, (r, g, b)


def test_a_page_over_the_limit_is_recompressed_then_downscaled_until_it_fits() -> None:
    cam = EmulatedV4l2Camera(width=1920, height=1080)
    camera = DocumentCamera(URL, source=cam, reopen_s=0)
    roomy = camera.capture(max_bytes=1_500_000)
    tight = camera.capture(max_bytes=len(roomy.jpeg) // 3)
    assert len(tight.jpeg) <= len(roomy.jpeg) // 3
    assert (tight.width, tight.height) < (1920, 1080) or tight.quality < roomy.quality
    assert jpeg_size(tight.jpeg) == (tight.width, tight.height)


def test_a_page_that_cannot_fit_is_refused_naming_the_limit() -> None:
    cam = EmulatedV4l2Camera(width=1920, height=1080)
    camera = DocumentCamera(URL, source=cam, reopen_s=0)
    with pytest.raises(PageTooLarge, match=r"over the limit of 5000 bytes per page") as info:
        camera.capture(max_bytes=5000)
    assert "Ảnh giấy tờ quá lớn" in info.value.citizen_text


def test_a_blank_frame_is_reported_not_returned() -> None:
    cam = EmulatedV4l2Camera()
    cam.show_blank()
    camera = DocumentCamera(URL, source=cam, reopen_s=0)
    with pytest.raises(BlankFrame) as info:
        camera.capture(max_bytes=1_500_000)
    assert "đặt giấy tờ ngay ngắn" in info.value.citizen_text
    health = camera.health()
    assert health["state"] == "ok" and "blank" in str(health["last_error"])
    cam.show_blank(False)
    assert camera.capture(max_bytes=1_500_000).width == 1280


def test_a_corrupt_yuyv_frame_is_an_error_not_a_crash() -> None:
    frame = RawFrame(pixel_format="YUYV", width=640, height=480, data=b"\x80" * 100)
    with pytest.raises(Exception, match=r"YUYV frame 640x480 has 100 bytes, needs 614400"):
        make_page(frame, max_bytes=1_000_000)


def test_no_device_is_unplugged_in_health_and_works_once_plugged() -> None:
    cam = EmulatedV4l2Camera(present=False)
    camera = DocumentCamera(URL, source=cam, reopen_s=0)
    with pytest.raises(CameraUnplugged, match="No such file or directory"):
        camera.capture(max_bytes=1_500_000)
    assert camera.health()["state"] == "unplugged"
    cam.plug()
    assert camera.capture(max_bytes=1_500_000).height == 720
    health = camera.health()
    assert health["state"] == "ok" and "No such file" in str(health["last_error"])  # history


def test_unplugged_mid_capture_closes_reports_and_reopens_later() -> None:
    cam = EmulatedV4l2Camera()
    camera = DocumentCamera(URL, source=cam, reopen_s=0)
    cam.unplug_after(1)  # the first frame comes, the camera is pulled before the second
    with pytest.raises(CameraUnplugged, match="No such device"):
        camera.capture(max_bytes=1_500_000)
    assert camera.health()["state"] == "unplugged"
    assert not cam._open  # closed after the fault
    cam.plug()
    assert camera.capture(max_bytes=1_500_000).width == 1280
    assert camera.health()["state"] == "ok" and cam.opens == 2


def test_a_failed_camera_is_not_reopened_before_reopen_s() -> None:
    cam = EmulatedV4l2Camera(present=False)
    camera = DocumentCamera(URL, source=cam, reopen_s=3600)
    with pytest.raises(CameraUnplugged):
        camera.capture(max_bytes=1_500_000)
    cam.plug()
    with pytest.raises(CameraUnplugged, match=r"unplugged .*next try in"):
        camera.capture(max_bytes=1_500_000)
    assert cam.opens == 0


# --- capture service ----------------------------------------------------------------------
def service(cam: EmulatedV4l2Camera, page_max_bytes: int = 1_500_000) -> CaptureService:
    return CaptureService(
        DocumentCamera(URL, source=cam, reopen_s=0), page_max_bytes=page_max_bytes
    )


def test_capture_preview_retake_accept_become_attachments_in_order() -> None:
    cam = EmulatedV4l2Camera()
    capture = service(cam)
    first = capture.capture()
    assert first.size == len(first.jpeg) and first.to_json_dict()["width"] == 1280
    cam.next_page()
    again = capture.retake(first.id)
    assert again.id != first.id and again.jpeg != first.jpeg
    with pytest.raises(CitizenError) as info:
        capture.accept(first.id)  # retaken: gone
    assert "chụp lại" in info.value.message_vi
    assert capture.accept(again.id) == 1
    cam.next_page()
    second = capture.capture()
    assert capture.accept(second.id) == 2
    atts = capture.attachments()
    assert [a.name for a in atts] == ["trang-01.jpg", "trang-02.jpg"]
    assert [a.data for a in atts] == [again.jpeg, second.jpeg]
    assert {a.mime for a in atts} == {"image/jpeg"}
    assert capture.remove(again.id) == 1
    capture.clear()
    assert capture.attachments() == []


def test_capture_faults_reach_the_citizen_in_vietnamese() -> None:
    cam = EmulatedV4l2Camera()
    capture = service(cam)
    cam.show_blank()
    with pytest.raises(CitizenError) as blank:
        capture.capture()
    assert "Ảnh chụp bị trống" in blank.value.message_vi
    cam.show_blank(False)
    cam.unplug()
    with pytest.raises(CitizenError) as unplugged:
        capture.capture()
    assert "Máy chụp giấy tờ đang không hoạt động" in unplugged.value.message_vi
    with pytest.raises(CitizenError) as none:
        CaptureService(None, page_max_bytes=1_500_000).capture()
    assert "không có máy chụp giấy tờ" in none.value.message_vi


def test_the_app_reports_the_camera_in_health(tmp_path: Path) -> None:
    cam = EmulatedV4l2Camera(present=False)
    cfg = app_config(tmp_path, devices={"document_camera": URL, "reopen_s": 0.1})
    app = KioskApp(cfg, camera=DocumentCamera(URL, source=cam, reopen_s=0))
    try:
        assert app.health()["devices"]["document_camera"]["state"] == "idle"
        with pytest.raises(CitizenError):
            app.capture.capture()
        assert app.health()["devices"]["document_camera"]["state"] == "unplugged"
        fields = app._heartbeat_fields()
        assert fields["devices"]["document_camera"]["state"] == "unplugged"
        check_fleet_message("heartbeat", fields)  # what central accepts
    finally:
        app.stop()


def test_the_app_builds_the_real_driver_from_config(tmp_path: Path) -> None:
    cfg = app_config(tmp_path, devices={"document_camera": "v4l2:///dev/video-absent-97"})
    app = KioskApp(cfg)
    try:
        assert app.capture.available
        with pytest.raises(CitizenError) as info:
            app.capture.capture()  # linuxpy opens /dev/video-absent-97: no such file
        assert "Máy chụp giấy tờ" in info.value.message_vi
        assert app.health()["devices"]["document_camera"]["state"] == "unplugged"
    finally:
        app.stop()
