"""Helpers to run real agent and central processes against a test broker."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from central.mosquitto import mqtt_toml
from sync.mqtt_link import MqttSettings
from sync.outbox import Outbox
from tests import identity

KIOSK = "k-fault-01"


def dossier_body(i: int) -> dict[str, Any]:
    return {
        "code": f"000.00.14.H56-261126-{i:04d}",
        "procedure": "2.000884",
        "form": {"ten_van_ban": f"Giấy uỷ quyền số {i}"},
        "applicant": {"full_name": "Đặng Quốc Việt", "id_number": "087205000123"},
    }


def fill_outbox(db: Path, n: int, kiosk: str = KIOSK, start: int = 1) -> list[str]:
    ob = Outbox(db, kiosk)
    ids = []
    with ob.transaction() as tx:
        for i in range(start, start + n):
            ids.append(tx.add("dossier", dossier_body(i)).id)
    ob.close()
    return ids


def write_agent_config(
    path: Path,
    db: Path,
    mqtt: MqttSettings,
    kiosk: str = KIOSK,
    keepalive_s: int = 30,
    **sync: Any,
) -> Path:
    """An agent config connecting with ``mqtt`` (``broker.kiosk(kiosk)`` in tests)."""
    sync_opts = {
        "ack_timeout_s": 2,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 1,
        "heartbeat_interval_s": 5,
        **sync,
    }
    lines = [
        "[kiosk]",
        f'id = "{kiosk}"',
        'agency = "000.00.14.H56"',
        "slot = 1",
        "",
        "[agent]",
        f'database = "{db}"',
        "",
        mqtt_toml(mqtt).replace("[mqtt]\n", f"[mqtt]\nkeepalive_s = {keepalive_s}\n"),
        "[sync]",
        *(f"{k} = {v}" for k, v in sync_opts.items()),
        "",
        identity.write_keys(path.parent / "keys").agent_toml(),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_central_config(
    path: Path, db: Path, mqtt: MqttSettings | int, kiosks: tuple[str, ...] = (KIOSK,)
) -> Path:
    """A central config whose collector logs in as ``mqtt`` (``broker.collector()``),
    signing with the test central key, ``kiosks`` registered (tests/identity.py).

    A bare port number makes a config for commands that never connect.
    """
    if isinstance(mqtt, int):
        mqtt = MqttSettings(port=mqtt, username="aps-collector-1")
    keys = identity.write_keys(path.parent / "keys")
    if kiosks:  # the registry lives in central's database: registering creates it
        db.parent.mkdir(parents=True, exist_ok=True)
        identity.register(db, *kiosks)
    path.write_text(
        f'[central]\ndatabase = "{db}"\n\n{mqtt_toml(mqtt)}\n'
        f'[collector]\nclient_id = "{mqtt.username}"\n\n{keys.central_toml()}',
        encoding="utf-8",
    )
    return path


def spawn(module: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", module, "run", "--config", str(config)], stdout=fh, stderr=fh
    )


def kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            kill9(proc)


def central_ids(db: Path, kiosk: str = KIOSK) -> list[str]:
    if not db.exists():
        return []
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [r[0] for r in c.execute("SELECT id FROM records WHERE kiosk = ?", (kiosk,))]
    except sqlite3.OperationalError:
        return []
    finally:
        c.close()


def central_count(db: Path, kiosk: str = KIOSK) -> int:
    if not db.exists():
        return 0
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(
            c.execute("SELECT count(*) FROM records WHERE kiosk = ?", (kiosk,)).fetchone()[0]
        )
    except sqlite3.OperationalError:
        return 0
    finally:
        c.close()


def kiosk_states(db: Path) -> dict[str, str]:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(c.execute("SELECT id, state FROM outbox").fetchall())
    finally:
        c.close()


def kiosk_acked(db: Path) -> int:
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(c.execute("SELECT count(*) FROM outbox WHERE state = 'acked'").fetchone()[0])
    finally:
        c.close()
