"""Kiosks learn that central is back and resend at once (docs/protocol.md, "Central's presence").

After a broker restart a kiosk may reconnect and publish its window before
the collector has subscribed again: those records go to nobody. Every test
here sets ``ack_timeout_s`` to 600 s and waits at most 60 s, so a kiosk that
waits out its ack timeout shows up as a failure, never as a slow pass.
"""

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


def _collector(broker: MosquittoProcess, central_db: Path) -> Collector:
    c = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector("aps-collector-1"),
        settings=CollectorSettings(
            client_id="aps-collector-1", reconnect_min_s=0.1, reconnect_max_s=0.5
        ),
        **keyring.CENTRAL,
    )
    c.start()
    return c


def _kiosk(broker: MosquittoProcess, db: Path) -> SyncClient:
    client = SyncClient(
        database=db,
        kiosk=stack.KIOSK,
        mqtt_settings=broker.kiosk(stack.KIOSK),
        settings=SyncSettings(
            inflight_window=32,
            ack_timeout_s=600,
            tick_s=0.05,
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
        ),
        identity=keyring.kiosk_identity(),
    )
    client.start()
    return client


def test_records_published_before_the_collector_resubscribes_are_resent_at_once(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    ids = stack.fill_outbox(kiosk_db, 20)
    collector = _collector(broker, central_db)
    kiosk = _kiosk(broker, kiosk_db)
    try:
        wait_until(lambda: stack.kiosk_acked(kiosk_db) == 20, 60, "first 20 acked")
        collector.stop()
        broker.kill()  # SIGKILL before any autosave: sessions and subscriptions are gone
        more = stack.fill_outbox(kiosk_db, 30, start=21)
        broker.start()
        # The kiosk is back first and publishes its whole window into nothing.
        wait_until(lambda: kiosk.counters.connects >= 2, 60, "kiosk reconnected")
        wait_until(lambda: kiosk.counters.published >= 20 + 30, 60, "window published")
        assert stack.central_count(central_db) == 20
        collector = _collector(broker, central_db)
        wait_until(lambda: stack.kiosk_acked(kiosk_db) == 50, 60, "all 50 acked")
        assert kiosk.counters.central_restarts >= 1
    finally:
        kiosk.stop()
        collector.stop()
    assert sorted(stack.central_ids(central_db)) == sorted(ids + more)


@pytest.mark.slow
def test_records_flow_after_a_clean_restart_with_persistence(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    """The production settings: persistence on, the collectors' sessions saved on stop."""
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    ids = stack.fill_outbox(kiosk_db, 200)
    collector = _collector(broker, central_db)
    kiosk = _kiosk(broker, kiosk_db)
    try:
        for threshold in (50, 120):
            wait_until(lambda t=threshold: stack.central_count(central_db) >= t, 60, "progress")
            broker.restart()  # clean: mosquitto saves sessions and retained messages
            ids += stack.fill_outbox(kiosk_db, 10, start=len(ids) + 1)
        wait_until(lambda: stack.kiosk_acked(kiosk_db) == len(ids), 60, "all acked")
    finally:
        kiosk.stop()
        collector.stop()
    assert sorted(stack.central_ids(central_db)) == sorted(ids)
    assert (broker.data / "mosquitto.db").exists()  # persistence was really on
