"""A full kiosk refuses new filings clearly, and everything filed before still syncs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from edge_agent import CitizenError
from edge_agent.catalogue import bundled_catalogue
from edge_agent.dossiers import Applicant, DossierDesk
from edge_agent.due_date import OfficeRules, WorkCalendar
from sync.client import SyncClient, SyncSettings
from sync.outbox import Outbox
from tests import identity as keyring
from tests.waiting import wait_until

KIOSK = "k-full-01"


def _desk(db: Path) -> DossierDesk:
    ob = Outbox(db, KIOSK, max_db_bytes=256 * 1024, min_free_disk_bytes=0)
    return DossierDesk(
        ob, bundled_catalogue(), WorkCalendar(OfficeRules()), agency="000.00.14.H56", slot=2
    )


def test_full_database_refuses_filing_and_drains(broker: MosquittoProcess, tmp_path: Path) -> None:
    db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    desk = _desk(db)
    filed = []
    with pytest.raises(CitizenError) as err:
        for i in range(10_000):
            filed.append(
                desk.file(
                    "2.000884",
                    Applicant(full_name="Nguyễn Thị Ngọc Hường", id_number=f"0872050{i:05d}"),
                    {"ten_van_ban": "Giấy uỷ quyền " + "x" * 150},
                )
            )
    assert "full" in str(err.value) and "sync.max_db_bytes" in str(err.value)
    assert "bộ nhớ đầy" in err.value.message_vi
    assert len(filed) > 50
    # Nothing committed before the limit was lost, and no half-filed dossier is left.
    assert desk.outbox.stats().queued == len(filed)
    rows = desk.outbox.conn.execute("SELECT count(*) FROM dossiers").fetchone()[0]
    assert rows == len(filed)
    desk.outbox.close()

    collector = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector("aps-c-full"),
        settings=CollectorSettings(client_id="aps-c-full"),
        **keyring.CENTRAL,
    )
    client = SyncClient(
        database=db,
        kiosk=KIOSK,
        mqtt_settings=broker.kiosk(KIOSK),
        settings=SyncSettings(ack_timeout_s=5, tick_s=0.05, retention_s=0),
        outbox_options={"max_db_bytes": 256 * 1024, "min_free_disk_bytes": 0},
        identity=keyring.kiosk_identity(),
    )
    collector.start()
    client.start()
    try:
        check = Outbox(db, KIOSK, max_db_bytes=256 * 1024, min_free_disk_bytes=0)
        wait_until(lambda: check.stats().queued == 0, 60, "the full kiosk drained")
        check.close()
    finally:
        client.stop()
        collector.stop()
    store = SQLiteStore(central_db)
    assert sorted(store.record_ids(KIOSK)) == sorted(f.record_id for f in filed)
    store.close()
    # After the purge of synced records the kiosk takes filings again.
    desk = _desk(db)
    desk.outbox.purge(retention_s=0)
    desk.outbox.conn.execute("DELETE FROM dossiers")
    again = desk.file(
        "2.000884",
        Applicant(full_name="Đặng Quốc Việt", id_number="087205000001"),
        {"ten_van_ban": "Giấy uỷ quyền"},
    )
    assert again.code.startswith("000.00.14.H56-")
    desk.outbox.close()


def test_purging_synced_dossiers_removes_the_kiosks_own_rows(tmp_path: Path) -> None:
    desk = _desk(tmp_path / "k.db")
    kept = desk.file(
        "2.000884",
        Applicant(full_name="Đặng Quốc Việt", id_number="087205000001"),
        {"ten_van_ban": "Giấy uỷ quyền"},
    )
    gone = desk.file(
        "2.000884",
        Applicant(full_name="Trần Văn Ổn", id_number="087205000002"),
        {"ten_van_ban": "Giấy uỷ quyền"},
    )
    desk.outbox.mark_acked([gone.record_id])
    assert desk.outbox.purge(retention_s=0, now=time.time() + 1) == 1
    codes = [r[0] for r in desk.outbox.conn.execute("SELECT code FROM dossiers")]
    assert codes == [kept.code]  # the synced one is gone, the unsynced one stays
    plan = " ".join(
        str(r)
        for r in desk.outbox.conn.execute(
            "EXPLAIN QUERY PLAN DELETE FROM dossiers WHERE code = ? AND record_id = ?", ("x", "y")
        )
    )
    assert "SCAN" not in plan, plan
    desk.outbox.close()
