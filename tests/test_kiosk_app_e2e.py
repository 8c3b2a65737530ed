"""The kiosk application end to end: emulated devices, real broker, real collector.

The citizen's side is driven as the screen will drive it (KioskApp's methods),
the devices are the emulated ones (CCCD QR on a CDC scanner pty, a USB printer
through pyusb, a help button through python-evdev's read path), and what
counts is what central's database holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from drivers.cccd_qr import encode_cccd_qr
from edge_agent.app import KioskApp, Notice
from edge_agent.devices import DeviceSupervisor
from edge_agent.signature import HandwrittenSignature
from firmware_mocks.cdc_scanner import EmulatedCdcScanner
from firmware_mocks.help_button import EmulatedHelpButton
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from tests import identity as keyring
from tests.kiosk import KIOSK, app_config, card, strokes
from tests.waiting import wait_until


@pytest.fixture
def collector(broker: MosquittoProcess, tmp_path: Path) -> Iterator[SQLiteStore]:
    db = tmp_path / "central.db"
    c = Collector(
        store_factory=lambda: SQLiteStore(db),
        mqtt_settings=broker.collector("aps-c-app"),
        settings=CollectorSettings(client_id="aps-c-app"),
        **keyring.CENTRAL,
    )
    c.start()
    store = SQLiteStore(db)
    try:
        yield store
    finally:
        c.stop()
        store.close()


def central_bodies(store: SQLiteStore, kind: str) -> list[dict[str, object]]:
    rows = store.conn.execute(
        "SELECT body FROM records WHERE kind = ? AND kiosk = ? ORDER BY seq", (kind, KIOSK)
    ).fetchall()
    return [json.loads(r[0]) for r in rows]


def take_notice(app: KioskApp, kind: str) -> Notice:
    for _ in range(50):
        notice = app.next_notice(timeout=0.2)
        if notice is not None and notice.kind == kind:
            return notice
    raise AssertionError(f"no {kind} notice")


def test_a_citizen_files_signs_rates_asks_and_presses_help(
    broker: MosquittoProcess, collector: SQLiteStore, tmp_path: Path
) -> None:
    usb, scanner, button = EmulatedUsbPrinter(), EmulatedCdcScanner(), EmulatedHelpButton()
    cfg = app_config(
        tmp_path,
        broker.kiosk(KIOSK),
        devices={
            "printer": "usb://04b8:0e15",
            "scanner": scanner.port_path,
            "help_button": "emulated",
            "reopen_s": 0.2,
        },
    )
    devices = DeviceSupervisor(
        cfg.devices,
        spool_dir=cfg.agent.receipts_dir,
        usb_backend=usb,
        open_help_button=lambda: button,
    )
    app = KioskApp(cfg, devices=devices)
    app.start()
    try:
        wait_until(lambda: devices.health()["scanner"]["state"] == "ok", 20, "scanner open")
        # The citizen holds their CCCD under the scanner: the app puts it in the session.
        scanner.scan(encode_cccd_qr(card()))
        notice = take_notice(app, "identity")
        assert notice.data["full_name"] == "Nguyễn Thị Ngọc Hường"
        prepared = app.filing.prepare(
            "2.000815", {"ten_giay_to": "Học bạ", "so_trang": 12, "so_ban": 1}, phone="0912345678"
        )
        sig = HandwrittenSignature.from_strokes(strokes(), width=400, height=150)
        result = app.filing.file(prepared, signature=sig)
        assert result.receipt.printed, result.receipt
        assert app.filing.confirm_shown(result.code)
        app.ratings.rate("hai_long", dossier_code=result.code)
        question = app.feedback.submit("question", "Bao giờ có kết quả?")
        # The physical help button, pressed twice quickly (one request), then again later.
        wait_until(lambda: devices.health()["help_button"]["state"] == "ok", 20, "button open")
        button.press(1000.0)
        button.press(1000.5, repeat=3)
        button.press(1010.0)

        def at_central() -> bool:
            return (
                len(collector.attachments(KIOSK)) == 2
                and len(central_bodies(collector, "support")) == 2
                and len(central_bodies(collector, "feedback")) == 1
                and len(central_bodies(collector, "rating")) == 1
            )

        wait_until(at_central, 60, "everything at central")
    finally:
        app.stop()
    (dossier,) = central_bodies(collector, "dossier")
    assert dossier["code"] == result.code
    # 2 x 2.000 + 10 x 1.000 = 14.000 đồng for one copy of 12 pages.
    assert dossier["fee"] == {"rule": "per-page", "amount_vnd": 14000, "pages": 12, "copies": 1}
    signature = dossier["signature"]
    assert isinstance(signature, dict)
    assert signature["document_sha256"] == prepared.document_sha256
    png = collector.attachment_data(KIOSK, str(signature["image_att"]))
    stroke_data = collector.attachment_data(KIOSK, str(signature["strokes_att"]))
    assert png == sig.render_png() and png is not None and png.startswith(b"\x89PNG")
    assert stroke_data is not None and json.loads(stroke_data)["strokes"] == strokes()
    supports = central_bodies(collector, "support")
    assert [s["source"] for s in supports] == ["button", "button"]
    assert all(str(s["lookup_code"]).startswith("HO-") for s in supports)
    assert central_bodies(collector, "feedback")[0]["lookup_code"] == question.lookup_code
    assert usb.take_received()  # the slip went to the printer


def test_a_commit_wakes_the_sync_no_polling(
    broker: MosquittoProcess, collector: SQLiteStore, tmp_path: Path
) -> None:
    cfg = app_config(tmp_path, broker.kiosk(KIOSK))
    # The sync's own look for new records comes once an hour: only the wake can publish.
    settings = replace(cfg.sync.settings(), tick_s=3600.0, heartbeat_interval_s=3600.0)
    app = KioskApp(cfg, sync_settings=settings)
    app.start()
    try:
        wait_until(app.sync.network.connected.is_set, 20, "kiosk connected")
        wait_until(lambda: app.sync.counters.connects >= 1, 20, "sync session started")
        app.feedback.submit("feedback", "Ki-ốt dễ dùng.")
        wait_until(lambda: len(central_bodies(collector, "feedback")) == 1, 20, "published")
        wait_until(lambda: app.outbox.stats().queued == 0, 20, "acked")
    finally:
        app.stop()


def test_a_chip_read_on_the_card_reader_becomes_the_session(tmp_path: Path) -> None:
    from firmware_mocks.card_reader import EmulatedCardReader

    with EmulatedCardReader() as reader:
        cfg = app_config(tmp_path, devices={"card_reader": reader.port_path, "reopen_s": 0.2})
        app = KioskApp(cfg)
        app.start()  # no broker: the sync keeps trying in the background
        try:
            wait_until(
                lambda: app.devices.health()["card_reader"]["state"] == "ok", 20, "reader ok"
            )
            reader.insert_card(card("Phạm Hữu Lộc", "087205004321", source="chip"))
            notice = take_notice(app, "identity")
            assert notice.data["source"] == "chip" and notice.data["id_masked"] == "********4321"
            prepared = app.filing.prepare("2.000884", {"ten_van_ban": "Hợp đồng"})
            assert prepared.identity_source == "chip"
            assert prepared.applicant.full_name == "Phạm Hữu Lộc"
        finally:
            app.stop()
