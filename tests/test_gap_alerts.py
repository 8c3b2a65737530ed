"""A sequence gap that stays open is raised as an alert; one that closes is not."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.cli import main as central_cli
from central.config import load_central_config
from central.service import CentralService
from central.store import SQLiteStore
from sync.envelope import records_topic
from sync.outbox import Outbox
from tests import identity as keyring
from tests import stack


def test_gap_opens_alerts_and_closes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ob = Outbox(tmp_path / "k.db", stack.KIOSK)
    recs = [ob.add("rating", {"level": "hai_long"}) for _ in range(3)]
    ob.close()
    central_db = tmp_path / "central.db"
    cfg_path = stack.write_central_config(tmp_path / "central.toml", central_db, 1883)
    with cfg_path.open("a") as fh:
        fh.write("\n[alerts]\ngap_alert_after_s = 60\n")
    store = SQLiteStore(central_db)
    topic = records_topic(stack.KIOSK)
    store.ingest(
        [keyring.classify(topic, recs[0].encode()), keyring.classify(topic, recs[2].encode())]
    )
    [state] = store.streams(stack.KIOSK)
    assert state.gaps == ((2, 2),) and state.missing_count == 1 and state.gap_since is not None
    assert store.stale_gaps(60) == []  # just opened: not an alert yet
    later = state.gap_since + 61
    assert [g.stream for g in store.stale_gaps(60, now=later)] == [state.stream]

    service = CentralService(load_central_config(cfg_path))
    with caplog.at_level(logging.WARNING, logger="aps.central"):
        assert service.log_gap_alerts(store) == 0
        assert service.log_gap_alerts(store, now=later) == 1
    assert "ALERT kiosk k-fault-01" in caplog.text and "1 seqs in 1 ranges (2)" in caplog.text
    # The CLI reads the real clock: make the gap a minute old instead of waiting.
    store.conn.execute("UPDATE streams SET gap_since = gap_since - 61")
    status = json.loads(
        CliRunner().invoke(central_cli, ["status", "--config", str(cfg_path)]).output
    )
    assert len(status["alerts"]) == 1 and "1 records committed" in status["alerts"][0]

    store.ingest([keyring.classify(topic, recs[1].encode())])  # the missing record arrives
    [state] = store.streams(stack.KIOSK)
    assert state.gaps == () and state.missing_count == 0 and state.gap_since is None
    assert store.stale_gaps(0.0, now=time.time() + 3600) == []
    store.close()
