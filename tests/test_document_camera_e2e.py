"""Two pages photographed at the kiosk reach central byte-exact, with the filing.

Emulated camera (firmware_mocks.v4l2_camera) under the real driver and
capture service, real KioskApp, real broker and collector; what counts is
what central's database holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from drivers.document_camera import DocumentCamera
from edge_agent.app import KioskApp
from firmware_mocks.v4l2_camera import EmulatedV4l2Camera
from tests import identity as keyring
from tests.kiosk import KIOSK, app_config, card
from tests.waiting import wait_until

URL = "v4l2:///dev/video0?width=1600&height=1200&format=YUYV&warmup=1"


@pytest.fixture
def collector(broker: MosquittoProcess, tmp_path: Path) -> Iterator[SQLiteStore]:
    db = tmp_path / "central.db"
    c = Collector(
        store_factory=lambda: SQLiteStore(db),
        mqtt_settings=broker.collector("aps-c-cap"),
        settings=CollectorSettings(client_id="aps-c-cap"),
        **keyring.CENTRAL,
    )
    c.start()
    store = SQLiteStore(db)
    try:
        yield store
    finally:
        c.stop()
        store.close()


def test_two_captured_pages_reach_central_byte_exact(
    broker: MosquittoProcess, collector: SQLiteStore, tmp_path: Path
) -> None:
    cam = EmulatedV4l2Camera(width=1600, height=1200, pixel_format="YUYV")
    cfg = app_config(tmp_path, broker.kiosk(KIOSK), devices={"document_camera": URL})
    # Pages over 150 kB: each is more than one 96 KiB chunk, so the reassembly is exercised.
    app = KioskApp(cfg, camera=DocumentCamera(URL, source=cam, reopen_s=0))
    app.start()
    try:
        app.identify(card())
        first = app.capture.capture()
        cam.next_page()
        retaken = app.capture.retake(first.id)
        app.capture.accept(retaken.id)
        cam.next_page()
        second = app.capture.capture()
        app.capture.accept(second.id)
        assert min(retaken.size, second.size) > 100 * 1024
        prepared = app.filing.prepare(
            "2.000815", {"ten_giay_to": "Học bạ", "so_trang": 2, "so_ban": 1}, phone="0912345678"
        )
        result = app.filing.file(prepared, attachments=app.capture.attachments())
        app.capture.clear()

        def both_at_central() -> bool:
            rows = collector.attachments(KIOSK)
            return len(rows) == 2 and all(r["status"] == "complete" for r in rows)

        wait_until(both_at_central, 60, "both pages at central")
    finally:
        app.stop()
    (row,) = collector.conn.execute(
        "SELECT body FROM records WHERE kind = 'dossier' AND kiosk = ?", (KIOSK,)
    ).fetchall()
    dossier = json.loads(row[0])
    assert dossier["code"] == result.code
    metas = dossier["attachments"]
    assert [m["name"] for m in metas] == ["trang-01.jpg", "trang-02.jpg"]
    for meta, page in zip(metas, [retaken, second], strict=True):
        assert meta["mime"] == "image/jpeg" and meta["chunks"] >= 2
        data = collector.attachment_data(KIOSK, str(meta["att"]))
        assert data == page.jpeg
        assert meta["sha256"] == hashlib.sha256(page.jpeg).hexdigest()
    assert first.jpeg not in (retaken.jpeg, second.jpeg)
