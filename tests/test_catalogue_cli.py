"""The catalogue and due-date commands (subprocess), and publishing at central (real DB files)."""

from __future__ import annotations

import copy
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from central import audit, downlink_log
from central.catalogue_publish import CatalogueRefused, current_catalogue, publish_catalogue
from edge_agent.catalogue import CatalogueStore, bundled_document
from tests.pg import CentralDb

ROOT = Path(__file__).resolve().parent.parent
DOC = bundled_document()


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def agent_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        '[kiosk]\nid = "k-cli"\nagency = "000.00.14.H56"\nslot = 1\n'
        f'[agent]\ndatabase = "{tmp_path / "kiosk.db"}"\n'
        "[office]\nextra_holidays = [2026-02-23]\n",
        encoding="utf-8",
    )
    return cfg


def test_due_date_prints_one_json_object(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path)
    out = run(
        "edge_agent.cli", "due-date", "1.004873", "--at", "2026-02-13T10:30", "--config", str(cfg)
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    got = json.loads(lines[0])
    assert got["due_date"] == "2026-02-13T16:00+07:00" and got["on_the_spot"] is True
    assert "no-wait day" in got["reason"]
    # An explicit offset is converted to the office's clock: 03:30Z is 10:30 in Vietnam.
    utc = run(
        "edge_agent.cli", "due-date", "1.004873", "--at", "2026-02-13T03:30Z", "--config", str(cfg)
    )
    assert json.loads(utc.stdout)["due_date"] == "2026-02-13T16:00+07:00", utc.stderr
    # A 2-day procedure over Tết and the office's own day off (23/02).
    got = json.loads(
        run(
            "edge_agent.cli",
            "due-date",
            "2.001035",
            "--at",
            "2026-02-13T10:30",
            "--config",
            str(cfg),
        ).stdout
    )
    assert got["due_date"] == "2026-02-25T16:00+07:00" and got["on_the_spot"] is False
    assert "Lunar New Year" in got["reason"] and "office day off" in got["reason"]
    assert not (tmp_path / "kiosk.db").exists()  # read-only: nothing created


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["due-date", "9.999999", "--at", "2026-02-13T10:30"], "unknown procedure '9.999999'"),
        (["due-date", "1.004873", "--at", "13/02/2026"], "--at"),
    ],
)
def test_due_date_errors_say_what_to_do(tmp_path: Path, args: list[str], message: str) -> None:
    out = run("edge_agent.cli", *args, "--config", str(agent_config(tmp_path)))
    assert out.returncode != 0 and message in out.stderr


def test_catalogue_json_lists_the_active_catalogue(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path)
    out = run("edge_agent.cli", "catalogue", "--json", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    assert len(listing) == len(DOC["procedures"])
    copies = next(p for p in listing if p["code"] == "2.000815")
    assert copies["name"] == "Chứng thực bản sao từ bản chính" and copies["time_limit_days"] == 0
    assert copies["fee"]["kind"] == "per-page" and copies["fee"]["max_per_copy_vnd"] == 200_000
    # After central sends a newer one, the command shows it.
    newer = copy.deepcopy(DOC)
    newer["version"] = "2099.1.1"
    newer["procedures"] = newer["procedures"][:3]
    conn = sqlite3.connect(tmp_path / "kiosk.db", isolation_level=None)
    store = CatalogueStore(conn)
    conn.execute("BEGIN IMMEDIATE")
    assert store.apply(conn, newer).outcome == "applied"
    conn.execute("COMMIT")
    conn.close()
    listing = json.loads(run("edge_agent.cli", "catalogue", "--json", "--config", str(cfg)).stdout)
    assert [p["code"] for p in listing] == [p["code"] for p in DOC["procedures"][:3]]
    text = run("edge_agent.cli", "catalogue", "--config", str(cfg)).stdout
    assert "2099.1.1" in text


def versioned(v: str) -> dict[str, Any]:
    d = copy.deepcopy(DOC)
    d["version"] = v
    return d


def test_publish_appends_one_fleet_item_and_an_audit_row(
    tmp_path: Path, central_db: CentralDb
) -> None:
    conn = central_db.connect()
    assert current_catalogue(conn) is None
    assert publish_catalogue(conn, versioned("2026.12.1"), "tester") == "2026.12.1"
    assert publish_catalogue(conn, versioned("2026.12.2"), "tester") == "2026.12.2"
    items, _, _ = downlink_log.items_since(conn, ["*"], 0)
    assert [(i.kind, i.key, i.body["version"]) for i in items] == [
        ("catalogue", "catalogue", "2026.12.2")
    ]
    rows = audit.entries(conn)
    assert [(r["actor"], r["action"], r["detail"]["version"]) for r in rows] == [
        ("tester", "catalogue.publish", "2026.12.2"),
        ("tester", "catalogue.publish", "2026.12.1"),
    ]
    # What central sends is what a kiosk accepts.
    kiosk = sqlite3.connect(tmp_path / "kiosk.db", isolation_level=None)
    store = CatalogueStore(kiosk)
    kiosk.execute("BEGIN IMMEDIATE")
    assert store.apply(kiosk, items[0].body).outcome == "applied"
    kiosk.execute("COMMIT")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (versioned("2026.12.1"), "not newer than the current 2026.12.1"),
        (versioned("2026.11.9"), "not newer than the current 2026.12.1"),
        ({**versioned("2027.1.1"), "procedures": []}, "procedures"),
        ({"version": "2027.1.1"}, "procedures"),
    ],
)
def test_publish_refusals_change_nothing(central_db: CentralDb, doc: Any, message: str) -> None:
    conn = central_db.connect()
    publish_catalogue(conn, versioned("2026.12.1"), "tester")
    before = downlink_log.latest_cursor(conn)
    with pytest.raises(CatalogueRefused, match=message.replace(".", r"\.")):
        publish_catalogue(conn, doc, "tester")
    assert downlink_log.latest_cursor(conn) == before
    assert len(audit.entries(conn)) == 1


def test_central_cli_publish_and_show(tmp_path: Path, central_db: CentralDb) -> None:
    cfg = tmp_path / "central.toml"
    cfg.write_text(
        "[central]\n" + central_db.central_toml(tmp_path / "central.db"), encoding="utf-8"
    )
    if central_db.kind == "sqlite":  # a PostgreSQL database is there before central runs
        out = run("central.cli", "catalogue", "show", "--config", str(cfg))
        assert out.returncode != 0 and "does not exist" in out.stderr
    path = tmp_path / "cat.json"
    path.write_text(json.dumps(versioned("2026.12.5"), ensure_ascii=False), encoding="utf-8")
    out = run("central.cli", "catalogue", "publish", str(path), "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "published": "2026.12.5",
        "procedures": len(DOC["procedures"]),
    }
    again = run("central.cli", "catalogue", "publish", str(path), "--config", str(cfg))
    assert again.returncode != 0 and "not newer than the current 2026.12.5" in again.stderr
    bad = versioned("2026.12.6")
    bad["procedures"][14]["fee"]["next_page_vnd"] = "1000"
    path.write_text(json.dumps(bad), encoding="utf-8")
    out = run("central.cli", "catalogue", "publish", str(path), "--config", str(cfg))
    assert out.returncode != 0 and "procedures[14].fee.next_page_vnd" in out.stderr
    shown = json.loads(run("central.cli", "catalogue", "show", "--config", str(cfg)).stdout)
    assert shown["version"] == "2026.12.5"
