"""Document capture over the API: preview, retake, accept, faults, and the pages filed.

The emulated V4L2 camera (firmware_mocks.v4l2_camera) stands under the real driver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.document_camera import DocumentCamera
from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from firmware_mocks.v4l2_camera import EmulatedV4l2Camera
from tests.kiosk import app_config, card, strokes

V1 = "/api/v1"
URL = "v4l2:///dev/video0?width=800&height=600&format=YUYV&warmup=1"
COPY_FORM = {"ten_giay_to": "Học bạ", "so_trang": 2, "so_ban": 1}


@pytest.fixture
def cam() -> EmulatedV4l2Camera:
    return EmulatedV4l2Camera(width=800, height=600, pixel_format="YUYV")


@pytest.fixture
def kiosk(tmp_path: Path, cam: EmulatedV4l2Camera) -> Iterator[KioskApp]:
    cfg = app_config(tmp_path, devices={"document_camera": URL})
    app = KioskApp(cfg, camera=DocumentCamera(URL, source=cam, reopen_s=0))
    yield app
    app.stop()


@pytest.fixture
def http(kiosk: KioskApp) -> Iterator[httpx.Client]:
    srv = ApiServer(kiosk, "127.0.0.1:0")
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=30.0) as client:
        yield client
    srv.stop()


def shoot(http: httpx.Client) -> dict[str, Any]:
    r = http.post(f"{V1}/capture")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_two_pages_photographed_retaken_accepted_and_filed(
    kiosk: KioskApp, cam: EmulatedV4l2Camera, http: httpx.Client
) -> None:
    kiosk.identify(card())
    assert http.get(f"{V1}/kiosk").json()["capture"] is True
    assert http.get(f"{V1}/capture").json() == {"available": True, "pages": [], "pending": None}

    first = shoot(http)
    assert first["accepted"] is False and first["url"] == f"{V1}/capture/{first['id']}.jpg"
    assert (first["width"], first["height"]) == (800, 600) and first["bytes"] == first["size"]
    jpeg = http.get(first["url"])
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    assert len(jpeg.content) == first["bytes"]
    assert http.get(f"{V1}/capture").json()["pending"] == first

    cam.next_page()
    retaken = http.post(f"{V1}/capture/{first['id']}/retake").json()
    assert retaken["id"] != first["id"]
    assert http.get(first["url"]).status_code == 404  # the first shot is gone
    r = http.post(f"{V1}/capture/{first['id']}/accept")
    assert r.status_code == 404 and r.json()["error"]["field"] == "id"
    assert http.post(f"{V1}/capture/{retaken['id']}/accept").json() == {"pages": 1}
    cam.next_page()
    second = shoot(http)
    assert http.post(f"{V1}/capture/{second['id']}/accept").json() == {"pages": 2}
    state = http.get(f"{V1}/capture").json()
    assert [p["id"] for p in state["pages"]] == [retaken["id"], second["id"]]
    assert all(p["accepted"] for p in state["pages"]) and state["pending"] is None
    pages = [http.get(p["url"]).content for p in state["pages"]]

    prepared = http.post(
        f"{V1}/filings/prepare",
        json={"procedure": "2.000815", "form": COPY_FORM, "phone": "0912345678"},
    ).json()
    sig = {"type": "handwritten", "width": 400, "height": 200, "strokes": strokes()}
    r = http.post(
        f"{V1}/filings", json={"document_sha256": prepared["document_sha256"], "signature": sig}
    )
    assert r.status_code == 200, r.text
    code = r.json()["code"]
    assert http.get(f"{V1}/capture").json()["pages"] == []  # cleared after the commit

    records = kiosk.outbox.records()
    (dossier,) = [row["body"] for row in records if row["kind"] == "dossier"]
    assert dossier["code"] == code
    names = [m["name"] for m in dossier["attachments"]]
    assert names == ["trang-01.jpg", "trang-02.jpg", "chu-ky.json", "chu-ky.png"]
    metas = {m["name"]: m for m in dossier["attachments"]}
    chunks = [row["body"] for row in records if row["kind"] == "chunk"]
    for name, data in zip(["trang-01.jpg", "trang-02.jpg"], pages, strict=True):
        mine = sorted(
            (c for c in chunks if c["att"] == metas[name]["att"]), key=lambda c: c["index"]
        )
        assert mine and metas[name]["size"] == len(data)


def test_camera_faults_and_no_camera_are_409(
    tmp_path: Path, kiosk: KioskApp, cam: EmulatedV4l2Camera, http: httpx.Client
) -> None:
    cam.show_blank()
    r = http.post(f"{V1}/capture")
    assert r.status_code == 409 and r.json()["error"]["field"] == "capture"
    assert "Ông/Bà" in r.json()["error"]["message_vi"]
    cam.show_blank(False)
    cam.unplug()
    r = http.post(f"{V1}/capture")
    assert r.status_code == 409 and r.json()["error"]["field"] == "capture"
    cam.plug()
    assert shoot(http)["accepted"] is False  # back on its own

    (tmp_path / "bare").mkdir()
    bare = KioskApp(app_config(tmp_path / "bare"))
    srv = ApiServer(bare, "127.0.0.1:0")
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as other:
            state = other.get(f"{V1}/capture").json()
            assert state == {"available": False, "pages": [], "pending": None}
            r = other.post(f"{V1}/capture")
            assert r.status_code == 409 and r.json()["error"]["field"] == "capture"
            assert "máy chụp giấy tờ" in r.json()["error"]["message_vi"]
            assert other.get(f"{V1}/kiosk").json()["capture"] is False
    finally:
        srv.stop()
        bare.stop()


def test_remove_and_the_session_end_drop_pages(
    kiosk: KioskApp, cam: EmulatedV4l2Camera, http: httpx.Client
) -> None:
    kiosk.identify(card())
    one = shoot(http)
    http.post(f"{V1}/capture/{one['id']}/accept")
    cam.next_page()
    two = shoot(http)
    assert http.delete(f"{V1}/capture/{two['id']}").json() == {"pages": 1}  # the preview
    assert http.delete(f"{V1}/capture/{one['id']}").json() == {"pages": 0}
    r = http.delete(f"{V1}/capture/{one['id']}")
    assert r.status_code == 404 and r.json()["error"]["field"] == "id"
    assert http.get(f"{V1}/capture/..%2Fetc.jpg").status_code in (404, 422)

    three = shoot(http)
    http.post(f"{V1}/capture/{three['id']}/accept")
    http.delete(f"{V1}/session")
    assert http.get(f"{V1}/capture").json()["pages"] == []
    assert http.get(three["url"]).status_code == 404
    assert "087205001234" not in json.dumps(http.get(f"{V1}/capture").json())

    kiosk.identify(card())
    four = shoot(http)
    http.post(f"{V1}/capture/{four['id']}/accept")
    kiosk.identify(card("Trần Văn Ân", "087205005555"))  # the next citizen's card
    assert http.get(f"{V1}/capture").json()["pages"] == []


def test_the_page_limit_is_409_naming_the_limit(
    kiosk: KioskApp, cam: EmulatedV4l2Camera, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edge_agent.services.capture.MAX_PAGES", 2)
    for _ in range(2):
        http.post(f"{V1}/capture/{shoot(http)['id']}/accept")
        cam.next_page()
    r = http.post(f"{V1}/capture")
    assert r.status_code == 409 and r.json()["error"]["field"] == "capture"
    assert (
        "2 trang" in r.json()["error"]["message_vi"]
        and "limit is 2" in r.json()["error"]["message"]
    )
