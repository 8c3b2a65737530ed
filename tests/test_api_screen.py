"""The screen's settings (GET /kiosk) and read aloud (/speech), over real HTTP."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from edge_agent.api import ApiServer, create_app
from edge_agent.api.speech import Speech
from edge_agent.app import KioskApp
from edge_agent.config import AgentConfig
from tests.kiosk import app_config, card

V1 = "/api/v1"
HAS_ESPEAK = shutil.which("espeak-ng") is not None


def serve(app: KioskApp) -> ApiServer:
    srv = ApiServer(app, "127.0.0.1:0")
    srv.start()
    return srv


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[KioskApp]:
    app = KioskApp(app_config(tmp_path, kiosk_extra={"office_name": "UBND Phường 1"}))
    yield app
    app.stop()


@pytest.fixture
def http(kiosk: KioskApp) -> Iterator[httpx.Client]:
    srv = serve(kiosk)
    with httpx.Client(base_url=srv.url, timeout=20.0) as client:
        yield client
    srv.stop()


def test_kiosk_settings_come_from_the_config(http: httpx.Client) -> None:
    got = http.get(f"{V1}/kiosk").json()
    assert got == {
        "office_name": "UBND Phường 1",
        "hotline": "0277 3861 234",
        "typing": {"method": "telex", "style": "new"},
        "idle_timeout_s": 120.0,
        "idle_warning_s": 30.0,
        "speech": HAS_ESPEAK,
        "capture": False,
    }


def test_kiosk_settings_follow_ui_keys(tmp_path: Path) -> None:
    cfg = app_config(tmp_path)
    cfg = AgentConfig.model_validate(
        {
            **cfg.model_dump(),
            "kiosk": {**cfg.kiosk.model_dump(), "session_idle_s": 300},
            "ui": {"typing_method": "vni", "tone_style": "old", "idle_warning_s": 45},
        }
    )
    app = KioskApp(cfg)
    srv = serve(app)
    try:
        got = httpx.get(f"{srv.url}{V1}/kiosk", timeout=20).json()
    finally:
        srv.stop()
        app.stop()
    assert got["typing"] == {"method": "vni", "style": "old"}
    assert got["idle_timeout_s"] == 300 and got["idle_warning_s"] == 45
    text = str(got)
    assert "account" not in text and "password" not in text and "bank" not in text


def test_the_warning_must_come_before_the_timeout(tmp_path: Path) -> None:
    cfg = app_config(tmp_path)
    with pytest.raises(ValidationError) as err:
        AgentConfig.model_validate(
            {
                **cfg.model_dump(),
                "kiosk": {**cfg.kiosk.model_dump(), "session_idle_s": 20},
            }
        )
    assert "idle_warning_s" in str(err.value) and "session_idle_s" in str(err.value)
    with pytest.raises(ValidationError):
        AgentConfig.model_validate({**cfg.model_dump(), "ui": {"typing_method": "qwerty"}})


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
def test_speech_renders_vietnamese_wav(http: httpx.Client) -> None:
    assert http.get(f"{V1}/speech").json() == {"available": True}
    r = http.post(f"{V1}/speech", json={"text": "Xin mời Ông/Bà quét thẻ căn cước."})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    assert r.content[:4] == b"RIFF" and r.content[8:12] == b"WAVE" and len(r.content) > 10_000
    again = http.post(f"{V1}/speech", json={"text": "Xin mời Ông/Bà quét thẻ căn cước."})
    assert again.content == r.content
    dash = http.post(f"{V1}/speech", json={"text": "--help"})  # text, not an option
    assert dash.status_code == 200 and dash.content[:4] == b"RIFF"


def test_speech_input_limits_are_4xx(http: httpx.Client) -> None:
    for body in ({"text": ""}, {"text": "a" * 1501}, {}, {"text": 5}, {"text": "a", "x": 1}):
        r = http.post(f"{V1}/speech", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["field"].startswith("text") or body.get("x") == 1


def test_speech_missing_or_failing_is_503(kiosk: KioskApp, tmp_path: Path) -> None:
    fails = tmp_path / "fails"
    fails.write_text("#!/bin/sh\necho 'no voice' >&2\nexit 1\n")
    fails.chmod(0o755)
    for binary, available in ((str(tmp_path / "no-espeak"), False), (str(fails), True)):
        _check_503(kiosk, binary, available)


def _check_503(kiosk: KioskApp, binary: str, available: bool) -> None:
    asgi = create_app(kiosk, speech=Speech(binary=binary))

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://k", timeout=20
        ) as http:
            return await http.get(f"{V1}/speech"), await http.post(
                f"{V1}/speech", json={"text": "Xin chào"}
            )

    # on a thread of its own: another test's live event loop (Playwright's) may hold this one
    with ThreadPoolExecutor(1) as pool:
        status, spoken = pool.submit(asyncio.run, go()).result()
    assert status.json() == {"available": available}
    assert spoken.status_code == 503, spoken.text
    error = spoken.json()["error"]
    assert error["field"] == "speech" and "đọc to" in error["message_vi"]


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
def test_speech_files_are_private_bounded_and_wiped() -> None:
    speech = Speech(cache_entries=2)
    try:
        first = speech.render("Xin chào Ông Nguyễn Văn An.")
        assert speech._dir is not None and (speech._dir.stat().st_mode & 0o777) == 0o700
        assert speech.render("Xin chào Ông Nguyễn Văn An.") == first  # from the cache
        speech.render("Một.")
        speech.render("Hai.")
        assert len(list(speech._dir.iterdir())) == 2  # the oldest evicted
        for f in speech._dir.iterdir():
            f.unlink()  # a temp cleaner: rendered again, not a failure
        assert speech.render("Hai.")[:4] == b"RIFF"
        speech.forget()
        assert list(speech._dir.iterdir()) == []
        directory = speech._dir
    finally:
        speech.close()
    assert not directory.exists()


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng is not installed")
def test_the_session_end_forgets_what_was_read_aloud(kiosk: KioskApp) -> None:
    srv = serve(kiosk)
    try:
        with httpx.Client(base_url=srv.url, timeout=20.0) as http:
            http.post(f"{V1}/speech", json={"text": "Ông Nguyễn Văn An, xin mời ký tên."})
            assert srv.speech._dir is not None and list(srv.speech._dir.iterdir())
            kiosk.identify(card())
            http.delete(f"{V1}/session")
            assert list(srv.speech._dir.iterdir()) == []
    finally:
        srv.stop()
