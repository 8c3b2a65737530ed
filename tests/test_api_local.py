"""The kiosk screen's local API (edge_agent/api): a real KioskApp behind uvicorn on loopback."""

from __future__ import annotations

import json
import logging
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from central.mosquitto import MosquittoProcess
from edge_agent.agent import Agent
from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from edge_agent.config import UiSection
from edge_agent.devices import DeviceEvent
from tests.kiosk import KIOSK, app_config, card, strokes
from tests.waiting import wait_until

COPY_FORM = {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 5, "so_ban": 2}
V1 = "/api/v1"


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[KioskApp]:
    app = KioskApp(app_config(tmp_path))
    app.start()
    yield app
    app.stop()


@pytest.fixture
def server(kiosk: KioskApp) -> Iterator[ApiServer]:
    srv = ApiServer(kiosk, "127.0.0.1:0", max_body_kb=16, max_event_clients=2)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def http(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield client


def test_filing_from_card_to_slip_over_http(kiosk: KioskApp, http: httpx.Client) -> None:
    assert http.get(f"{V1}/session").json()["active"] is False
    kiosk.handle_device_event(DeviceEvent(device="scanner", kind="identity", identity=card()))
    session = http.get(f"{V1}/session").json()
    assert session["full_name"] == "Nguyễn Thị Ngọc Hường"
    assert "087205001234" not in json.dumps(session)  # masked

    found = http.get(f"{V1}/catalogue", params={"q": "sao y bang"}).json()
    assert "2.000815" in [p["code"] for p in found["procedures"]]
    everything = http.get(f"{V1}/catalogue").json()["procedures"]
    assert len(everything) >= len(found["procedures"])
    one = http.get(f"{V1}/catalogue/2.000815").json()
    assert one["procedure"] == "2.000815" and one["papers"]
    assert any(t["field"] == "form.so_trang" for t in one["to_type"])

    r = http.post(
        f"{V1}/filings/prepare",
        json={"procedure": "2.000815", "form": COPY_FORM, "phone": "0912345678"},
    )
    assert r.status_code == 200, r.text
    prepared = r.json()
    assert len(prepared["document_sha256"]) == 64 and prepared["fee"]["amount_vnd"] > 0

    r = http.post(
        f"{V1}/filings",
        json={
            "document_sha256": prepared["document_sha256"],
            "signature": {"type": "handwritten", "width": 400, "height": 200, "strokes": strokes()},
        },
    )
    assert r.status_code == 200, r.text
    code = r.json()["code"]
    assert [row["body"]["code"] for row in kiosk.outbox.records() if row["kind"] == "dossier"] == [
        code
    ]
    # the same prepared filing cannot be filed twice
    again = http.post(
        f"{V1}/filings",
        json={
            "document_sha256": prepared["document_sha256"],
            "signature": {"type": "handwritten", "width": 400, "height": 200, "strokes": strokes()},
        },
    )
    assert again.status_code == 404 and again.json()["error"]["field"] == "document_sha256"

    assert http.get(f"{V1}/filings/last-unconfirmed").json()["filing"]["code"] == code
    assert http.post(f"{V1}/filings/{code}/shown").json() == {"code": code, "shown": True}
    assert http.get(f"{V1}/filings/last-unconfirmed").json()["filing"] is None
    assert http.post(f"{V1}/filings/{code}/shown").status_code == 404

    tracked = http.get(f"{V1}/tracking", params={"code": code}).json()
    assert tracked["code"] == code
    rated = http.post(f"{V1}/ratings", json={"level": "rat_hai_long", "dossier_code": code})
    assert rated.status_code == 200, rated.text
    twice = http.post(f"{V1}/ratings", json={"level": "hai_long", "dossier_code": code})
    assert twice.status_code == 422 and twice.json()["error"]["field"] == "dossier_code"
    levels_refused = http.post(f"{V1}/ratings", json={"level": "nope"})
    assert levels_refused.status_code == 422
    assert "hài lòng" in levels_refused.json()["error"]["message_vi"]

    cleared = http.delete(f"{V1}/session").json()
    assert cleared["active"] is False and cleared["full_name"] is None
    assert http.get(f"{V1}/session").json()["active"] is False


def test_support_feedback_info_health(http: httpx.Client) -> None:
    ticket = http.post(f"{V1}/support/help", json={"message": "Tôi cần giúp"}).json()
    status = http.get(f"{V1}/support/{ticket['lookup_code']}").json()
    assert status["status"] == "waiting" and "0277 3861 234" in status["message"]
    r = http.post(
        f"{V1}/support/home-visit",
        json={"full_name": "Trần Văn Ân", "phone": "0912345678", "address": " ", "reason": "ốm"},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "body.address"
    assert r.json()["error"]["message_vi"] == "Vui lòng nhập «Địa chỉ»."

    sent = http.post(f"{V1}/feedback", json={"category": "question", "message": "Lệ phí?"})
    assert sent.status_code == 200, sent.text
    answer = http.get(f"{V1}/feedback/{sent.json()['lookup_code']}").json()
    assert answer["answer"] is None
    assert http.get(f"{V1}/feedback/xx").status_code == 422

    assert http.get(f"{V1}/faq", params={"q": "lệ phí"}).json() == {"items": []}
    assert http.get(f"{V1}/news").json() == {"items": []}
    health = http.get(f"{V1}/health").json()
    assert health["online"] is False and health["queued"] >= 2
    assert "state" in health["printer"]


def test_bad_input_names_the_field(kiosk: KioskApp, http: httpx.Client) -> None:
    r = http.post(f"{V1}/filings/prepare", json={"procedure": "2.000815", "form": COPY_FORM})
    assert r.status_code == 422  # no card read, no applicant typed
    assert "thẻ căn cước" in r.json()["error"]["message_vi"]
    r = http.post(
        f"{V1}/filings/prepare",
        json={
            "procedure": "2.000815",
            "form": {**COPY_FORM, "so_trang": "năm"},
            "applicant": {"full_name": "Lê Thị Hoa", "id_number": "087205001234"},
        },
    )
    assert r.status_code == 422 and r.json()["error"]["field"].startswith("form.so_trang"), r.text
    r = http.post(
        f"{V1}/filings/prepare",
        json={"procedure": "9.999999", "applicant": {"full_name": "A", "id_number": "1"}},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "procedure"
    assert r.json()["error"]["message_vi"].startswith("Không tìm thấy thủ tục")
    r = http.post(f"{V1}/filings/prepare", json={"procedure": "x" * 65})
    assert r.status_code == 422 and r.json()["error"]["field"] == "procedure"
    assert "64" in r.json()["error"]["message"]
    kiosk.handle_device_event(DeviceEvent(device="scanner", kind="identity", identity=card()))
    sha = http.post(
        f"{V1}/filings/prepare", json={"procedure": "2.000815", "form": COPY_FORM}
    ).json()["document_sha256"]
    one_dot = {"type": "handwritten", "width": 400, "height": 200, "strokes": [[[5000, 1, 0]]]}
    r = http.post(f"{V1}/filings", json={"document_sha256": sha, "signature": one_dot})
    assert r.status_code == 422 and r.json()["error"]["field"].startswith("signature."), r.text
    assert kiosk.outbox.stats().queued == 0
    r = http.post(f"{V1}/filings", json={"document_sha256": "ab", "signature": {"type": "x"}})
    assert r.status_code == 422 and r.json()["error"]["field"] == "document_sha256"
    r = http.post(f"{V1}/signing", json={"document_sha256": "0" * 64})
    assert r.status_code == 404 and r.json()["error"]["field"] == "document_sha256"
    assert http.get(f"{V1}/signing/nope").status_code == 404
    assert http.get(f"{V1}/catalogue/9.999999").status_code == 404
    json_type = {"content-type": "application/json"}
    r = http.post(f"{V1}/ratings", content=b"{not json", headers=json_type)
    assert r.status_code == 422


def test_bodies_are_bounded(server: ApiServer, http: httpx.Client) -> None:
    big = {"message": "a" * 20_000}
    r = http.post(f"{V1}/support/help", json=big)
    assert r.status_code == 413 and "16 KiB" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it comes
        yield b'{"message": "'
        for _ in range(40):
            yield b"a" * 1000
        yield b'"}'

    r = http.post(
        f"{V1}/support/help", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    ok = http.post(f"{V1}/support/help", json={"message": "ngắn"})
    assert ok.status_code == 200


def sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs from an event stream's lines; ends when the stream does."""
    kind = "message"
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])
            kind = "message"


def next_event(events: Iterator[tuple[str, dict[str, Any]]], want: str) -> dict[str, Any]:
    """The next ``want`` event (bounded by the client's read timeout); fails if none comes."""
    for kind, data in events:
        if kind == want:
            return data
    raise AssertionError(f"the event stream ended without a {want!r} event")


def test_events_carry_notices_and_state(
    kiosk: KioskApp, server: ApiServer, http: httpx.Client
) -> None:
    with http.stream("GET", f"{V1}/events") as first:
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/event-stream")
        events = sse(first.iter_lines())
        # the current state comes first: sync (offline here: no broker) and the printer
        assert next_event(events, "sync")["online"] is False
        assert next_event(events, "printer")["state"] == "absent"
        kiosk.handle_device_event(DeviceEvent(device="button", kind="help_pressed"))
        ticket = next_event(events, "support")
        assert ticket["lookup_code"] in ticket["screen_text"]
        kiosk.handle_device_event(DeviceEvent(device="scanner", kind="identity", identity=card()))
        assert next_event(events, "identity")["full_name"] == "Nguyễn Thị Ngọc Hường"
        # a second client is allowed, a third is not (max_event_clients=2)
        with http.stream("GET", f"{V1}/events") as second:
            assert second.status_code == 200
            third = http.get(f"{V1}/events")
            assert third.status_code == 429
            assert third.json()["error"]["field"] == "events"
    # both closed: their places are freed, a new one is let in again
    wait_until(lambda: server.hub.client_count == 0, 20, "the closed streams to be dropped")
    with http.stream("GET", f"{V1}/events") as again:
        assert again.status_code == 200


def test_events_follow_the_sync_going_online(broker: MosquittoProcess, tmp_path: Path) -> None:
    app = KioskApp(app_config(tmp_path, broker.kiosk(KIOSK)))
    srv = ApiServer(app, "127.0.0.1:0")
    srv.start()  # before the app: the stream sees offline, then online
    try:
        with (
            httpx.Client(base_url=srv.url, timeout=30.0) as http,
            http.stream("GET", f"{V1}/events") as stream,
        ):
            events = sse(stream.iter_lines())
            assert next_event(events, "sync")["online"] is False
            app.start()
            assert next_event(events, "sync")["online"] is True
    finally:
        srv.stop()
        app.stop()


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8765", "192.168.1.20:8765", "localhost:8765", "[::]:1", "8765"]
)
def test_config_refuses_non_loopback(listen: str) -> None:
    with pytest.raises(ValidationError) as err:
        UiSection(listen=listen)
    text = str(err.value)
    assert "listen" in text and "127.0.0.1:8765" in text


def test_config_takes_loopback() -> None:
    assert UiSection(listen="127.0.0.1:8765").listen == "127.0.0.1:8765"
    assert UiSection(listen="[::1]:8765").listen == "[::1]:8765"
    assert UiSection().listen == ""


def test_agent_serves_the_api_when_configured(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = app_config(tmp_path)
    cfg = cfg.model_copy(update={"ui": UiSection(listen=f"127.0.0.1:{port}")})
    agent = Agent(cfg)
    try:
        agent.start_api()
        assert agent.api is not None
        r = httpx.get(f"http://127.0.0.1:{port}{V1}/openapi.json", timeout=10)
        assert r.status_code == 200 and "/api/v1/filings" in r.json()["paths"]
    finally:
        if agent.api is not None:
            agent.api.stop()
        agent.app.stop()


def test_agent_keeps_running_when_the_port_is_taken(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = app_config(tmp_path)
        cfg = cfg.model_copy(update={"ui": UiSection(listen=f"127.0.0.1:{port}")})
        agent = Agent(cfg)
        agent.stop_event.set()  # run() starts, finds the port taken, then stops at once
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            with caplog.at_level(logging.ERROR, logger="aps.agent"):
                assert agent.run() == 0
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    assert agent.api is None
    assert f"local API not served on 127.0.0.1:{port}" in caplog.text


def test_a_double_tap_files_once(kiosk: KioskApp, server: ApiServer) -> None:
    kiosk.handle_device_event(DeviceEvent(device="scanner", kind="identity", identity=card()))
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        sha = http.post(
            f"{V1}/filings/prepare", json={"procedure": "2.000815", "form": COPY_FORM}
        ).json()["document_sha256"]
    body = {
        "document_sha256": sha,
        "signature": {"type": "handwritten", "width": 400, "height": 200, "strokes": strokes()},
    }

    def tap() -> int:
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            return http.post(f"{V1}/filings", json=body).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: tap(), range(4)))
    assert codes == [200, 404, 404, 404]
    dossiers = [r for r in kiosk.outbox.records() if r["kind"] == "dossier"]
    assert len(dossiers) == 1
