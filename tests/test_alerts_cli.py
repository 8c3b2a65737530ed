"""``aps-central alerts``: the table, filters, JSON lines, show, ack, rules (both engines)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from central import audit
from central.cli import main
from central.fleet import alert_engine as engine
from central.fleet import alerts
from central.fleet.alert_watch import AlertSettings, evaluate_round
from tests.central_config import on_engine
from tests.pg import CentralDb


@pytest.fixture
def cfg(tmp_path: Path, central_db: CentralDb) -> Path:
    db = tmp_path / "central.db"
    path = tmp_path / "central.toml"
    path.write_text(
        f'[central]\ndatabase = "{db}"\n\n'
        '[alerts.rules.offline]\nminutes = 10\nseverity = "warning"\n'
    )
    on_engine(path, db, central_db)
    conn = central_db.connect()
    obs = [
        engine.Observation(kiosk="k1", kind="paper-out", office="HN01", detail="printer"),
        engine.Observation(
            kiosk="k2", kind="offline", office="HN02", detail="not heard for 12 min"
        ),
    ]
    evaluate_round(conn, AlertSettings(), 1000.0, observations=obs)
    return path


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fails(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code != 0
    return result.output


def test_table_and_filters(cfg: Path) -> None:
    out = run("alerts", "--config", str(cfg))
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "KIOSK", "OFFICE", "KIND", "SEVERITY", "STATE", "AGE", "DETAIL"]
    assert len(rows) == 2 and rows[0].split()[1] == "k2"  # newest first
    only = run("alerts", "--config", str(cfg), "--office", "HN01").splitlines()
    assert len(only) == 2 and "paper-out" in only[1]
    assert run("alerts", "--config", str(cfg), "--kind", "disk-low").strip() == "no alerts"
    lines = run("alerts", "--config", str(cfg), "--json", "--sort", "oldest").splitlines()
    assert [json.loads(x)["kiosk"] for x in lines] == ["k1", "k2"]
    assert "unknown kind" in fails("alerts", "--config", str(cfg), "--kind", "paper")


def test_show_ack_and_history(cfg: Path) -> None:
    out = run("alerts", "--config", str(cfg), "ack", "1", "--comment", "giấy mới", "--as", "Lan")
    assert "acknowledged by Lan (cli:" in out
    shown = run("alerts", "show", "1", "--config", str(cfg))
    assert "acknowledged" in shown and "giấy mới" in shown
    doc = json.loads(run("alerts", "--config", str(cfg), "show", "1", "--json"))
    assert [e["event"] for e in doc["events"]] == ["opened", "acknowledged"]
    assert "only an open alert" in fails(
        "alerts", "--config", str(cfg), "ack", "1", "--comment", "x"
    )
    assert "no alert 9" in fails("alerts", "--config", str(cfg), "show", "9")
    acked = run("alerts", "--config", str(cfg), "--state", "acknowledged", "--json")
    assert [json.loads(x)["id"] for x in acked.splitlines()] == [1]


def test_rules_and_rules_set(cfg: Path, central_db: CentralDb) -> None:
    out = run("alerts", "--config", str(cfg), "rules")
    offline = next(line for line in out.splitlines() if line.startswith("offline"))
    assert "minutes=10" in offline and "warning" in offline  # the config's override
    changed = json.loads(
        run(
            "alerts",
            "--config",
            str(cfg),
            "rules",
            "set",
            "--office",
            "HN01",
            "offline",
            "minutes=3",
        )
    )
    assert changed["minutes"] == 3.0 and changed["severity"] == "warning"
    per_office = run("alerts", "--config", str(cfg), "rules", "--office", "HN01")
    assert "offline *" in per_office and "minutes=3" in per_office
    assert "minutes=10" in run("alerts", "--config", str(cfg), "rules", "--office", "HN02")
    off = json.loads(
        run(
            "alerts",
            "--config",
            str(cfg),
            "rules",
            "set",
            "--office",
            "HN01",
            "paper-low",
            "--disable",
        )
    )
    assert off["enabled"] is False
    db = central_db.connect()
    actions = [e["action"] for e in audit.entries(db)]
    assert actions.count("alert-rule.set") == 2
    err = fails(
        "alerts", "--config", str(cfg), "rules", "set", "--office", "HN01", "offline", "minuts=3"
    )
    assert "offline.minuts: not a setting of offline" in err
    err = fails(
        "alerts", "--config", str(cfg), "rules", "set", "--office", "HN01", "offline", "minutes=-1"
    )
    assert "from 0 to" in err


def test_listing_creates_no_database(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    path.write_text(f'[central]\ndatabase = "{tmp_path / "none.db"}"\n')
    assert "no central database" in fails("alerts", "--config", str(path))
    assert not (tmp_path / "none.db").exists()


def test_bad_config_rule_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    path.write_text(
        f'[central]\ndatabase = "{tmp_path / "c.db"}"\n[alerts.rules.ofline]\nminutes = 1\n'
    )
    assert "alerts.rules.ofline" in fails("alerts", "--config", str(path), "rules")
    alerts.list_alerts(sqlite3.connect(":memory:"))
