"""``aps-central kiosk set-office|offices`` and ``downlink pending`` on a real central database."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from central import audit, backoffice_db, downlink_log
from central.cli import main
from tests import stack

AT = "2026-12-01T09:00:00+07:00"


def test_set_office_is_audited_and_changes_what_a_kiosk_reads(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    conn = backoffice_db.connect(db)
    with backoffice_db.transaction(conn):
        downlink_log.claim_office(conn, "k-cli-01", "000.00.14.H56")
        body = {
            "code": "000.00.14.H57-261201-1001",
            "state": "received",
            "paid": False,
            "changed_at": AT,
        }
        downlink_log.append(conn, "office:000.00.14.H57", "dossier-status", body["code"], body)
    cfg = stack.write_central_config(tmp_path / "central.toml", db, 1)
    run = CliRunner()
    before = json.loads(
        run.invoke(main, ["downlink", "pending", "k-cli-01", "--config", str(cfg)]).output
    )
    assert before["items"] == [] and before["office"] == "000.00.14.H56"
    res = run.invoke(
        main, ["kiosk", "set-office", "k-cli-01", "000.00.14.H57", "--config", str(cfg)]
    )
    assert res.exit_code == 0, res.output
    assert "was 000.00.14.H56" in res.output
    after = json.loads(
        run.invoke(main, ["downlink", "pending", "k-cli-01", "--config", str(cfg)]).output
    )
    assert [i["key"] for i in after["items"]] == ["000.00.14.H57-261201-1001"]
    listed = run.invoke(main, ["kiosk", "offices", "--config", str(cfg)])
    assert "k-cli-01  000.00.14.H57  admin" in listed.output
    [entry] = [e for e in audit.entries(conn) if e["action"] == "kiosk.set-office"]
    assert entry["target"] == "k-cli-01"


def test_a_bad_office_or_kiosk_id_is_refused_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    backoffice_db.connect(db).close()
    cfg = stack.write_central_config(tmp_path / "central.toml", db, 1)
    run = CliRunner()
    res = run.invoke(main, ["kiosk", "set-office", "k-cli-01", "ủy ban", "--config", str(cfg)])
    assert res.exit_code == 2 and "agency identifier" in res.output
    res = run.invoke(main, ["kiosk", "set-office", "K_BAD", "000.00.14.H56", "--config", str(cfg)])
    assert res.exit_code == 2 and "kiosk" in res.output.lower()
