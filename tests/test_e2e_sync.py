"""End to end on a real mosquitto: outbox -> sync client -> collector -> store -> ack."""

from __future__ import annotations

from pathlib import Path

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.outbox import Outbox
from tests.waiting import wait_until


def _dossier(i: int) -> dict[str, object]:
    return {
        "code": f"000.00.14.H56-261126-{1000 + i:04d}",
        "procedure": "1.001193",
        "form": {"ho_ten": "Nguyễn Thị Ngọc Hường"},
        "applicant": {"full_name": "Nguyễn Thị Ngọc Hường", "id_number": "079123456789"},
    }


def test_records_reach_central_once_and_are_acked_after_commit(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db = tmp_path / "kiosk.db"
    central_db = tmp_path / "central.db"
    ob = Outbox(kiosk_db, "k01")
    ids = [ob.add("dossier", _dossier(i)).id for i in range(200)]
    ob.close()

    collector = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector(),
        settings=CollectorSettings(),
    )
    collector.start()
    client = SyncClient(
        database=kiosk_db,
        kiosk="k01",
        mqtt_settings=broker.kiosk("k01"),
        settings=SyncSettings(ack_timeout_s=5, tick_s=0.05),
    )
    client.start()
    check = Outbox(kiosk_db, "k01")
    central = SQLiteStore(central_db)
    try:
        wait_until(lambda: check.stats().queued == 0, 60, "all records acked")
        # Every acked id is committed at central (ack means committed).
        acked = {r["id"] for r in check.records("acked")}
        assert acked == set(ids)
        assert set(central.record_ids("k01")) == set(ids)
        [stream] = central.streams("k01")
        assert stream.contiguous_seq == 200 and stream.gaps == ()
    finally:
        client.stop()
        collector.stop()
        check.close()
        central.close()
