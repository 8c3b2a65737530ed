"""Fleet view at central: heartbeats, online/offline through the Last Will."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner

from central.cli import main as central_cli
from central.ingest import DeadLetter, FleetUpdate, classify_fleet
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import encode_heartbeat, encode_status, heartbeat_topic, status_topic
from sync.mqtt_link import make_paho_client
from tests import identity as keyring
from tests import stack
from tests.waiting import wait_until


def test_status_and_heartbeat_must_come_from_their_own_kiosk() -> None:
    ok = classify_fleet(status_topic("k1"), encode_status("k1", "online", "t"))
    assert isinstance(ok, FleetUpdate) and ok.body["state"] == "online"
    spoof = classify_fleet(status_topic("k1"), encode_status("k2", "offline", "t"))
    assert isinstance(spoof, DeadLetter) and spoof.reason.startswith("kiosk-mismatch")
    wrong = classify_fleet(heartbeat_topic("k1"), encode_status("k1", "online", "t"))
    assert isinstance(wrong, DeadLetter) and "type" in wrong.reason
    junk = classify_fleet(heartbeat_topic("k1"), b"\xff\xfe")
    assert isinstance(junk, DeadLetter) and junk.reason.startswith("bad-json")
    hb = classify_fleet(heartbeat_topic("k1"), encode_heartbeat("k1", "t", queued=3))
    assert isinstance(hb, FleetUpdate) and hb.body["queued"] == 3


def _fleet_answers(cfg: Path) -> bool:
    """Central's store is there with its schema (the file exists a moment before it)."""
    return CliRunner().invoke(central_cli, ["fleet", "--config", str(cfg)]).exit_code == 0


def _fleet(cfg: Path) -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(central_cli, ["fleet", "--json", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    return {str(r["kiosk"]): r for r in rows}


@pytest.mark.slow
def test_kiosk_heartbeats_then_goes_offline_by_last_will(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    stack.fill_outbox(kiosk_db, 3)
    agent_cfg = stack.write_agent_config(
        tmp_path / "agent.toml",
        kiosk_db,
        broker.kiosk(stack.KIOSK),
        keepalive_s=5,
        heartbeat_interval_s=1,
    )
    central_cfg = stack.write_central_config(
        tmp_path / "central.toml", central_db, broker.collector()
    )
    central = stack.spawn("central.cli", central_cfg, tmp_path / "central.log")
    agent = stack.spawn("edge_agent.cli", agent_cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: _fleet_answers(central_cfg), 30, "central store")

        def online_and_drained() -> bool:
            k = _fleet(central_cfg).get(stack.KIOSK)
            return bool(k and k["presence"] == "online" and k["queued"] == 0 and not k["down"])

        wait_until(online_and_drained, 60, "an online, drained kiosk in the fleet view")
        stack.kill9(agent)  # no clean disconnect: only the broker's Last Will tells central
        wait_until(
            lambda: _fleet(central_cfg)[stack.KIOSK]["state"] == "offline",
            60,
            "the Last Will marks the kiosk offline",
        )
        assert _fleet(central_cfg)[stack.KIOSK]["down"] is True
    finally:
        stack.kill9(agent)
        stack.stop(central)
    store = SQLiteStore(central_db)
    assert store.count() == 3
    store.close()


def test_a_cleanly_stopped_kiosk_says_offline_and_heartbeats_carry_the_promised_fields(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    seen: list[tuple[str, dict[str, object], bool]] = []
    lock = threading.Lock()
    watcher_settings = broker.collector("aps-fleet-watcher")

    def watch() -> mqtt.Client:
        c = make_paho_client("aps-fleet-watcher", watcher_settings)

        def on_message(cl: Any, u: Any, m: mqtt.MQTTMessage) -> None:
            with lock:
                seen.append((m.topic, json.loads(m.payload), bool(m.retain)))

        c.on_message = on_message
        c.connect("127.0.0.1", watcher_settings.port)
        c.subscribe([(status_topic(stack.KIOSK), 1), (heartbeat_topic(stack.KIOSK), 0)])
        c.loop_start()
        return c

    def last(topic: str) -> dict[str, object] | None:
        with lock:
            bodies = [body for t, body, _ in seen if t == topic]
        return bodies[-1] if bodies else None

    watcher = watch()
    stack.fill_outbox(tmp_path / "kiosk.db", 2)  # no collector runs: they stay queued
    client = SyncClient(
        database=tmp_path / "kiosk.db",
        kiosk=stack.KIOSK,
        mqtt_settings=broker.kiosk(stack.KIOSK),
        settings=SyncSettings(heartbeat_interval_s=0.2, tick_s=0.05),
        identity=keyring.kiosk_identity(),
    )
    client.start()
    try:
        wait_until(lambda: (last(heartbeat_topic(stack.KIOSK)) or {}).get("queued") == 2, 30, "hb")
        hb = last(heartbeat_topic(stack.KIOSK)) or {}
        assert isinstance(hb["disk_free_bytes"], int) and hb["disk_free_bytes"] > 0
        assert isinstance(hb["oldest_queued_s"], int) and 0 <= hb["oldest_queued_s"] < 3600
        assert hb["identity_conflicts"] == 0
        wait_until(
            lambda: (last(status_topic(stack.KIOSK)) or {}).get("state") == "online", 30, "online"
        )
    finally:
        client.stop()  # a clean DISCONNECT: the broker sends no Last Will
    wait_until(
        lambda: (last(status_topic(stack.KIOSK)) or {}).get("state") == "offline", 30, "offline"
    )
    watcher.loop_stop()
    watcher.disconnect()
    # and it is retained: whoever looks later sees the kiosk offline
    seen.clear()
    late = watch()
    try:
        wait_until(lambda: last(status_topic(stack.KIOSK)) is not None, 30, "retained status")
        assert (last(status_topic(stack.KIOSK)) or {})["state"] == "offline"
    finally:
        late.loop_stop()


def test_the_fleet_view_names_each_kiosks_office_and_slot_heard_from_or_not(
    tmp_path: Path,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from central.fleet.registry import Registry

    db = tmp_path / "central.sqlite"
    SQLiteStore(db).close()  # the store's schema, as `aps-central run` makes it
    registry = Registry(db)
    for kiosk, slot in (("h56-k1", 1), ("h56-k2", 2)):
        registry.add_kiosk(
            kiosk,
            office="000.00.14.H56",
            slot=slot,
            agency="000.00.14.H56",
            signing_key=Ed25519PrivateKey.generate().public_key(),
            location="Tầng 1",
        )
    registry.close()
    store = SQLiteStore(db)
    with store.conn:  # h56-k1 has sent a heartbeat; h56-k2 never spoke
        store.conn.execute(
            "INSERT INTO kiosks (kiosk, state, state_at, last_heartbeat_at) VALUES (?,?,?,?)",
            ("h56-k1", "online", 1.0, 1.0),
        )
    store.close()
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'[central]\ndatabase = "{db}"\n', encoding="utf-8")
    rows = _fleet(cfg)
    assert rows["h56-k1"]["office"] == "000.00.14.H56" and rows["h56-k1"]["slot"] == 1
    assert rows["h56-k2"]["state"] == "never-seen" and rows["h56-k2"]["slot"] == 2
    assert rows["h56-k2"]["location"] == "Tầng 1" and rows["h56-k2"]["down"] is True
    assert {r["registry"] for r in rows.values()} == {"pending"}
