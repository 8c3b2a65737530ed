"""GET /metrics on central's API, served by uvicorn, scraped with httpx, read back with
prometheus_client's own parser."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from central import backoffice_db
from central.backoffice_db import Target
from central.collector import CollectorCounters
from central.config import load_central_config
from central.fleet import alert_engine as engine
from central.fleet.alert_watch import AlertSettings, evaluate_round
from central.fleet.registry import Registry
from central.web.app import create_app, settings_from_config
from central.web.common import ApiSettings
from central.web.server import ApiServer
from tests.pg import CentralDb
from tests.stack import write_central_config

TOKEN = b"metrics-token-0123456789"


def _seed(db: Target) -> None:
    Registry(db).close()  # the registry's tables (SQLite: made at its first open)
    conn = backoffice_db.connect(db)
    now = time.time()
    for slot, (kiosk, office) in enumerate((("k1", "HN01"), ("k2", "HN01"), ("k3", "HN02"))):
        conn.execute(
            "INSERT INTO fleet_kiosks (kiosk, office, slot, agency, state, enrolled_at)"
            " VALUES (?, ?, ?, 'a', 'active', '2026-01-01T00:00:00Z')",
            (kiosk, office, slot + 1),
        )
    for kiosk, at, beat in (
        ("k1", now - 10, {"oldest_queued_s": 30.0, "devices": {"printer": {"state": "ok"}}}),
        ("k2", now - 10, {"oldest_queued_s": 90.0, "devices": {"printer": {"state": "paper_out"}}}),
    ):
        conn.execute(
            "INSERT INTO kiosks (kiosk, state, state_at, last_heartbeat_at, queued, heartbeat)"
            " VALUES (?, 'online', ?, ?, 4, ?)",
            (kiosk, at, at, json.dumps(beat)),
        )
    conn.execute(
        "INSERT INTO dead_letters (at, topic, topic_kiosk, reason, payload_len, payload_head)"
        " VALUES (?, 't', 'k2', 'bad', 1, ?)",
        (now, b"\x00"),
    )
    conn.execute(
        "INSERT INTO dossier_index (code, office, state, indexed_at) VALUES"
        " ('HN01-1', 'HN01', 'received', 0), ('HN01-2', 'HN01', 'received', 0),"
        " ('HN02-1', 'HN02', 'received', 0)"
    )
    obs = [engine.Observation(kiosk="k2", kind="paper-out", office="HN01", detail="printer")]
    evaluate_round(conn, AlertSettings(), now, observations=obs)
    conn.close()


def _serve(db: Target, token: bytes | None, counters: CollectorCounters | None) -> ApiServer:
    app = create_app(ApiSettings(database=db, metrics_token=token))
    app.state.collector_counters = counters
    server = ApiServer(app, "127.0.0.1", 0)
    server.start()
    return server


@pytest.fixture
def scrape(central_db: CentralDb) -> Iterator[httpx.Client]:
    db = central_db.target
    _seed(db)
    server = _serve(db, None, CollectorCounters(stored=12, received=15, dead_letters=1))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.bound_port}", timeout=30) as c:
            yield c
    finally:
        server.stop()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_scrape_parses_and_counts(scrape: httpx.Client) -> None:
    reply = scrape.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    s = _samples(reply.text)
    assert s[("aps_kiosks", (("state", "operational"),))] == 1
    assert s[("aps_kiosks", (("state", "degraded"),))] == 1
    assert s[("aps_kiosks", (("state", "never-seen"),))] == 1
    assert s[("aps_office_kiosks", (("office", "HN01"), ("state", "degraded")))] == 1
    assert s[("aps_office_kiosks", (("office", "HN02"), ("state", "never-seen")))] == 1
    key = (("kind", "paper-out"), ("severity", "critical"), ("state", "open"))
    assert s[("aps_alerts_open", key)] == 1
    assert (
        s[("aps_alerts_open", (("kind", "offline"), ("severity", "critical"), ("state", "open")))]
        == 0
    )
    assert s[("aps_ingest_lag_seconds", (("stat", "max"),))] == 90.0
    assert s[("aps_ingest_lag_seconds", (("stat", "sum"),))] == 120.0
    assert s[("aps_kiosk_queued_records", ())] == 8
    assert s[("aps_dead_letters", ())] == 1
    assert s[("aps_records_ingested_total", ())] == 12
    assert s[("aps_dossiers_filed_total", (("office", "HN01"),))] == 2
    assert s[("aps_dossiers_filed_total", (("office", "HN02"),))] == 1


def test_token_when_set(central_db: CentralDb) -> None:
    db = central_db.target
    _seed(db)
    server = _serve(db, TOKEN, None)
    try:
        url = f"http://127.0.0.1:{server.bound_port}/metrics"
        assert httpx.get(url).status_code == 401
        wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "metrics_token" in wrong.json()["error"]["message"]
        ok = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN.decode()}"})
        assert ok.status_code == 200
        names = {f.name for f in text_string_to_metric_families(ok.text)}
        assert "aps_records_ingested" not in names  # no collector in this process
        assert "aps_kiosks" in names
    finally:
        server.stop()


def test_empty_database_scrapes(central_db: CentralDb) -> None:
    db = central_db.target
    backoffice_db.connect(db).close()
    server = _serve(db, None, None)
    try:
        s = _samples(httpx.get(f"http://127.0.0.1:{server.bound_port}/metrics").text)
        assert s[("aps_kiosks", (("state", "operational"),))] == 0
        assert s[("aps_dead_letters", ())] == 0
    finally:
        server.stop()


def test_kiosk_states_follow_the_configured_fleet_thresholds(
    tmp_path: Path, central_db: CentralDb
) -> None:
    """k1 and k2 were heard 10 s ago: operational/degraded by default, offline once
    ``[fleet] offline_after_s`` is 5 s, as the console and ``aps-central fleet`` say."""
    db = tmp_path / "central.db"
    _seed(central_db.target)
    path = write_central_config(tmp_path / "central.toml", db, 18830, kiosks=())
    text = path.read_text(encoding="utf-8").replace(
        f'[central]\ndatabase = "{db}"\n', "[central]\n" + central_db.central_toml(db), 1
    )
    path.write_text(text + "\n[fleet]\noffline_after_s = 5\n", encoding="utf-8")
    server = ApiServer(create_app(settings_from_config(load_central_config(path))), "127.0.0.1", 0)
    server.start()
    try:
        s = _samples(httpx.get(f"http://127.0.0.1:{server.bound_port}/metrics").text)
    finally:
        server.stop()
    assert s[("aps_kiosks", (("state", "offline"),))] == 2
    assert s[("aps_kiosks", (("state", "operational"),))] == 0
    assert s[("aps_kiosks", (("state", "degraded"),))] == 0
    assert s[("aps_office_kiosks", (("office", "HN01"), ("state", "offline")))] == 2
