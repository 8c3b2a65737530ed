"""Two collectors share the load through an MQTT shared subscription."""

from __future__ import annotations

from pathlib import Path

import pytest

from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from tests import identity as keyring
from tests import stack
from tests.waiting import wait_until


@pytest.mark.slow
def test_two_collectors_share_records_and_each_is_stored_once(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    ids = stack.fill_outbox(kiosk_db, 600)
    SQLiteStore(central_db).close()
    collectors = [
        Collector(
            store_factory=lambda: SQLiteStore(central_db),
            mqtt_settings=broker.collector(f"aps-collector-{n}"),
            settings=CollectorSettings(
                client_id=f"aps-collector-{n}", shared_group="aps-collectors"
            ),
            **keyring.CENTRAL,
        )
        for n in (1, 2)
    ]
    for c in collectors:
        c.start()
    for c in collectors:
        wait_until(c.online.is_set, 30, "collector subscribed")
    client = SyncClient(
        database=kiosk_db,
        kiosk=stack.KIOSK,
        mqtt_settings=broker.kiosk(stack.KIOSK),
        settings=SyncSettings(inflight_window=16, ack_timeout_s=5, tick_s=0.05),
        identity=keyring.kiosk_identity(),
    )
    client.start()
    try:
        wait_until(lambda: stack.kiosk_acked(kiosk_db) == 600, 90, "all acked")
    finally:
        client.stop()
        for c in collectors:
            c.stop()
    stored = [c.counters.stored for c in collectors]
    assert sum(stored) == 600 and min(stored) > 0, stored  # both took a share
    assert sorted(stack.central_ids(central_db)) == sorted(ids)
