"""``aps-central config`` and ``aps-central job`` over a real central database."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from central import backoffice_db, downlink_log
from central.cli import main
from central.fleet import jobs
from tests import identity, stack
from tests.central_config import on_engine
from tests.pg import CentralDb

K = stack.KIOSK
OFFICE = "000.00.14.H56"


def _setup(tmp_path: Path, central_db: CentralDb) -> tuple[CentralDb, Path]:
    db = tmp_path / "central.db"
    cfg = stack.write_central_config(tmp_path / "central.toml", db, 1, kiosks=())
    on_engine(cfg, db, central_db)
    identity.register(central_db.target, K)
    conn = central_db.connect()
    with backoffice_db.transaction(conn):
        downlink_log.assign_office(conn, K, OFFICE)
    return central_db, cfg


def _run(cfg: Path, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    return result.output


def test_config_set_show_history(tmp_path: Path, central_db: CentralDb) -> None:
    _, cfg = _setup(tmp_path, central_db)
    out = _run(cfg, "config", "set", "--office", OFFICE, "log_level=warning", "session_idle_s=120")
    assert out == f"{K}: version 1 sent\n"
    _run(cfg, "config", "set", "--kiosk", K, "session_idle_s=300")
    shown = json.loads(_run(cfg, "config", "show", "--kiosk", K, "--json"))
    assert shown["effective"] == {"log_level": "warning", "session_idle_s": 300}
    assert shown["sent_version"] == 2 and shown["running_version"] is None
    assert "sent version 2, running version -" in _run(cfg, "config", "show", "--kiosk", K)
    history = _run(cfg, "config", "history", "--kiosk", K)
    assert "config.version" in history and "config.set" in history
    out = _run(cfg, "config", "set", "--kiosk", K, "session_idle_s=300")
    assert out == "no kiosk's effective configuration changed\n"
    out = _run(cfg, "config", "set", "--kiosk", K, "--unset", "session_idle_s")
    assert out == f"{K}: version 3 sent\n"


def test_config_set_refuses_naming_the_field(tmp_path: Path, central_db: CentralDb) -> None:
    _, cfg = _setup(tmp_path, central_db)
    result = CliRunner().invoke(
        main, ["config", "set", "--kiosk", K, "mqtt_host=x", "--config", str(cfg)]
    )
    assert result.exit_code == 1 and "mqtt_host: cannot be set remotely" in result.output
    result = CliRunner().invoke(
        main, ["config", "set", "--kiosk", K, "session_idle_s=5", "--config", str(cfg)]
    )
    assert "session_idle_s: 5 is out of bounds: must be 30 to 1800 seconds" in result.output


def test_job_create_list_show_cancel(tmp_path: Path, central_db: CentralDb) -> None:
    db, cfg = _setup(tmp_path, central_db)
    out = _run(
        cfg, "job", "create", "purge-synced", "--kiosk", K, "--deadline", "10m", "older_than_days=7"
    )
    job_id = out.split()[0]
    listed = _run(cfg, "job", "list")
    assert listed.splitlines()[0].startswith("ID") and job_id in listed and "queued" in listed
    shown = json.loads(_run(cfg, "job", "show", job_id, "--json"))
    assert shown["args"] == {"older_than_days": "7"} and shown["events"][0]["event"] == "create"
    assert _run(cfg, "job", "cancel", job_id) == f"{job_id}: cancelled\n"
    assert json.loads(_run(cfg, "job", "list", "--state", "cancelled", "--json"))[0]["id"] == job_id
    result = CliRunner().invoke(main, ["job", "cancel", job_id, "--config", str(cfg)])
    assert result.exit_code == 1 and "only a queued job can be cancelled" in result.output
    result = CliRunner().invoke(
        main, ["job", "create", "selftest", "--kiosk", K, "--deadline", "1s", "--config", str(cfg)]
    )
    assert result.exit_code == 1 and "must be 30 s to 7 days" in result.output
    conn = db.connect()
    (old,) = jobs.create(conn, "selftest", kiosks=[K], actor="cli:t", deadline_s=30, now=1000.0)
    assert old.id in _run(cfg, "job", "list", "--state", "timed-out")
