"""``aps-central downlink pending`` on a real central database."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from central import backoffice_db, downlink_log
from central.cli import main
from tests import stack

AT = "2026-12-01T09:00:00+07:00"


def test_pending_shows_what_a_kiosk_would_get_and_follows_its_office(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    conn = backoffice_db.connect(db)
    code = "000.00.14.H57-261201-1001"
    with backoffice_db.transaction(conn):
        downlink_log.claim_office(conn, "k-cli-01", "000.00.14.H56")
        body = {"code": code, "state": "received", "paid": False, "changed_at": AT}
        downlink_log.append(conn, "office:000.00.14.H57", "dossier-status", code, body)
    cfg = str(stack.write_central_config(tmp_path / "central.toml", db, 1))
    run = CliRunner()
    before = json.loads(
        run.invoke(main, ["downlink", "pending", "k-cli-01", "--config", cfg]).output
    )
    assert before["items"] == [] and before["office"] == "000.00.14.H56"
    assert before["latest_cursor"] == 1 and before["next_cursor"] == 1 and not before["more"]
    res = run.invoke(main, ["kiosk", "set-office", "--config", cfg, "k-cli-01", "000.00.14.H57"])
    assert res.exit_code == 0, res.output
    after = json.loads(
        run.invoke(main, ["downlink", "pending", "k-cli-01", "--config", cfg]).output
    )
    assert [i["key"] for i in after["items"]] == [code]
    assert "office:000.00.14.H57" in after["audiences"]
    later = json.loads(
        run.invoke(
            main, ["downlink", "pending", "k-cli-01", "--after", "1", "--config", cfg]
        ).output
    )
    assert later["items"] == []


def test_pending_refuses_a_bad_kiosk_id_or_limit(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    backoffice_db.connect(db).close()
    cfg = str(stack.write_central_config(tmp_path / "central.toml", db, 1))
    run = CliRunner()
    res = run.invoke(main, ["downlink", "pending", "K_BAD", "--config", cfg])
    assert res.exit_code == 2 and "kiosk" in res.output.lower()
    res = run.invoke(main, ["downlink", "pending", "k-cli-01", "--limit", "101", "--config", cfg])
    assert res.exit_code == 2 and "--limit" in res.output
