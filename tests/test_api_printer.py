"""Printer out: staff called once per fault episode, and the slip reprinted over the API.

The emulated USB printer (firmware_mocks.usb_printer) under the real driver and the
app's device supervisor; the app's housekeeping tick sees the printer recover.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from edge_agent.devices import DeviceSupervisor
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from tests.kiosk import app_config, card, strokes
from tests.waiting import wait_until

V1 = "/api/v1"
COPY_FORM = {"ten_giay_to": "Học bạ", "so_trang": 2, "so_ban": 1}
ID = "087205001234"


@pytest.fixture
def usb() -> EmulatedUsbPrinter:
    return EmulatedUsbPrinter()


@pytest.fixture
def kiosk(tmp_path: Path, usb: EmulatedUsbPrinter) -> Iterator[KioskApp]:
    cfg = app_config(
        tmp_path,
        devices={"printer": "usb://04b8:0e15", "printer_poll_s": 0.1, "reopen_s": 0.1},
    )
    devices = DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb)
    app = KioskApp(cfg, devices=devices)
    app.start()
    yield app
    app.stop()


@pytest.fixture
def http(kiosk: KioskApp) -> Iterator[httpx.Client]:
    srv = ApiServer(kiosk, "127.0.0.1:0")
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=30.0) as client:
        yield client
    srv.stop()


def printer_state(http: httpx.Client) -> str:
    return str(http.get(f"{V1}/health").json()["printer"]["state"])


def file(http: httpx.Client) -> dict[str, Any]:
    prepared = http.post(f"{V1}/filings/prepare", json={"procedure": "2.000815", "form": COPY_FORM})
    assert prepared.status_code == 200, prepared.text
    sig = {"type": "handwritten", "width": 400, "height": 200, "strokes": strokes()}
    r = http.post(
        f"{V1}/filings",
        json={"document_sha256": prepared.json()["document_sha256"], "signature": sig},
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def printer_calls(kiosk: KioskApp) -> list[dict[str, Any]]:
    return [
        r["body"]
        for r in kiosk.outbox.records()
        if r["kind"] == "support" and r["body"].get("topic") == "printer"
    ]


def test_staff_called_once_per_episode_and_the_slip_reprinted(
    kiosk: KioskApp, usb: EmulatedUsbPrinter, http: httpx.Client
) -> None:
    kiosk.identify(card())
    wait_until(lambda: printer_state(http) == "ok", 20, "the printer ok")
    fine = file(http)
    assert fine["printed"] is True and fine["staff_called"] is False
    assert printer_calls(kiosk) == []

    usb.paper_end = True
    wait_until(lambda: printer_state(http) == "paper_out", 20, "paper out")
    first, second = file(http), file(http)
    for r in (first, second):
        assert r["printed"] is False and r["staff_called"] is True
        assert r["code"] in r["screen_text"]
    (call,) = printer_calls(kiosk)  # one episode, one call
    assert call["source"] == "kiosk" and first["code"] in call["message"]
    assert "paper_out" in call["message"] and ID not in str(call) and ID[-4:] not in str(call)

    not_yet = http.post(f"{V1}/filings/{first['code']}/reprint").json()
    assert not_yet["printed"] is False and first["code"] in not_yet["screen_text"]

    usb.paper_end = False  # staff refill the paper
    wait_until(lambda: not kiosk.printer_help.episode_open, 20, "the tick to end the episode")
    usb.take_received()
    again = http.post(f"{V1}/filings/{first['code']}/reprint").json()
    assert (
        again
        == {
            "printed": True,
            "screen_text": again["screen_text"],
        }
        and "khe máy in" in again["screen_text"]
    )
    assert usb.take_received()  # the slip came out

    usb.paper_end = True  # a new episode calls again
    wait_until(lambda: printer_state(http) == "paper_out", 20, "paper out again")
    third = file(http)
    assert third["staff_called"] is True
    assert [third["code"] in c["message"] for c in printer_calls(kiosk)] == [False, True]


def test_reprint_of_an_unknown_code_is_404(http: httpx.Client) -> None:
    r = http.post(f"{V1}/filings/000.00.14.H56-261201-9999/reprint")
    assert r.status_code == 404 and r.json()["error"]["field"] == "code"


def test_no_printer_configured_calls_no_one(tmp_path: Path) -> None:
    app = KioskApp(app_config(tmp_path))
    srv = ApiServer(app, "127.0.0.1:0")
    srv.start()
    try:
        app.identify(card())
        with httpx.Client(base_url=srv.url, timeout=30.0) as http:
            r = file(http)
        assert r["printed"] is False and r["staff_called"] is False
        assert printer_calls(app) == []
    finally:
        srv.stop()
        app.stop()
