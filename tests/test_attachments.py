"""Attachments: chunked through the outbox, resumable after a cut, verified at central."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.collector import Collector, CollectorSettings
from central.ingest import Accept
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from edge_agent import CitizenError
from edge_agent.catalogue import bundled_catalogue
from edge_agent.dossiers import Applicant, DossierDesk
from edge_agent.due_date import OfficeRules, WorkCalendar
from sync.attachments import AttachmentIn, chunk_bodies
from sync.client import SyncClient, SyncSettings
from sync.envelope import records_topic
from sync.outbox import Outbox
from tests import identity as keyring
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until

KIOSK = "k-att-01"


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5000), chunk=st.integers(min_value=1, max_value=700))
def test_chunks_reassemble_to_the_file(data: bytes, chunk: int) -> None:
    bodies = chunk_bodies("01JDX5V7Q6M1B8X3Z4K0N2R7TA", data, chunk)
    assert [b["index"] for b in bodies] == list(range(len(bodies)))
    assert all(b["total"] == len(bodies) for b in bodies)
    assert b"".join(base64.b64decode(b["data"]) for b in bodies) == data
    assert bodies[0]["file_sha256"] == hashlib.sha256(data).hexdigest()


def _desk(db: Path) -> DossierDesk:
    return DossierDesk(
        Outbox(db, KIOSK, min_free_disk_bytes=0),
        bundled_catalogue(),
        WorkCalendar(OfficeRules()),
        agency="000.00.14.H56",
        slot=3,
    )


def test_attachments_over_the_limit_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    desk = _desk(tmp_path / "k.db")
    big = AttachmentIn(name="trang1.jpg", mime="image/jpeg", data=b"\0" * (10 * 1024 * 1024 + 1))
    with pytest.raises(CitizenError) as err:
        desk.file(
            "2.000884",
            Applicant(full_name="Đặng Quốc Việt", id_number="087205000123"),
            {"ten_van_ban": "Giấy uỷ quyền"},
            attachments=[big],
        )
    assert "10485760" in str(err.value) and "Ảnh giấy tờ quá lớn" in err.value.message_vi
    assert desk.outbox.stats().queued == 0  # nothing half-filed
    desk.outbox.close()


def test_a_corrupt_file_is_flagged_at_central(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    ob = Outbox(tmp_path / "k.db", KIOSK, min_free_disk_bytes=0)
    bodies = chunk_bodies("01JDX5V7Q6M1B8X3Z4K0N2R7TA", b"photo-bytes" * 50, 100)
    for b in bodies:
        b["file_sha256"] = "0" * 64  # each chunk is fine, the whole file is not
    with ob.transaction() as tx:
        recs = [tx.add("chunk", b) for b in bodies]
    items = [keyring.classify(records_topic(KIOSK), r.encode()) for r in recs]
    assert all(isinstance(i, Accept) for i in items)
    out = store.ingest(items)
    assert out.attachments["corrupt"] == 1
    [att] = store.attachments(KIOSK)
    assert att["status"] == "corrupt" and "expected" in att["reason"]
    store.close()
    ob.close()


@pytest.mark.slow
def test_photos_resume_after_a_cut_and_arrive_intact(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    photo1, photo2 = os.urandom(6 * 1024 * 1024), os.urandom(10_000)
    desk = _desk(kiosk_db)
    filed = desk.file(
        "2.000815",
        Applicant(full_name="Nguyễn Thị Ngọc Hường", id_number="087205000123"),
        {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 2, "so_ban": 1},
        attachments=[
            AttachmentIn(name="trang1.jpg", mime="image/jpeg", data=photo1),
            AttachmentIn(name="trang2.jpg", mime="image/jpeg", data=photo2),
        ],
    )
    chunks = desk.outbox.stats().queued - 1
    desk.outbox.close()
    assert chunks == 64 + 1

    kiosk_mqtt = broker.kiosk(KIOSK)
    proxy = TcpProxy(kiosk_mqtt.port)
    collector = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector("aps-c-att"),
        settings=CollectorSettings(client_id="aps-c-att"),
        **keyring.CENTRAL,
    )
    client = SyncClient(
        database=kiosk_db,
        kiosk=KIOSK,
        mqtt_settings=replace(kiosk_mqtt, port=proxy.port),
        settings=SyncSettings(
            inflight_bytes=1024 * 1024,
            ack_timeout_s=3,
            tick_s=0.05,
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
        ),
        identity=keyring.kiosk_identity(),
    )
    collector.start()
    client.start()
    store = SQLiteStore(central_db)
    try:
        wait_until(lambda: store.count("chunk") >= 30, 60, "half the photo at central", poll=0.005)
        proxy.cut()
        wait_until(lambda: not client.network.connected.is_set(), 30, "kiosk sees the cut")
        at_cut = store.count("chunk")
        assert at_cut < chunks
        proxy.restore()
        wait_until(lambda: len(store.attachments(KIOSK)) == 2, 120, "both photos assembled")
        wait_until(lambda: client.counters.acked == chunks + 1, 60, "everything acked")
    finally:
        client.stop()
        collector.stop()
        proxy.close()
    atts = {a["att"]: a for a in store.attachments(KIOSK)}
    by_name = {m["name"]: m for m in _dossier_attachments(store, filed.record_id)}
    for name, data in (("trang1.jpg", photo1), ("trang2.jpg", photo2)):
        meta = by_name[name]
        assert atts[meta["att"]]["status"] == "complete"
        assert store.attachment_data(KIOSK, meta["att"]) == data
    # Resumed, not restarted: only what was in flight at the cut went again
    # (the window holds about 1 MiB, i.e. at most 8 chunks).
    assert client.counters.connects >= 2, client.counters
    assert client.counters.published <= chunks + 1 + 16, client.counters
    store.close()


def _dossier_attachments(store: SQLiteStore, record_id: str) -> list[dict[str, object]]:
    row = store.conn.execute("SELECT body FROM records WHERE id = ?", (record_id,)).fetchone()
    return list(json.loads(row[0])["attachments"])
