"""``aps-central kiosk set-office|offices``: an admin moves a kiosk to another office."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from central import audit, downlink_log
from central.cli import main
from tests.pg import CentralDb


def _config(tmp_path: Path, central_db: CentralDb) -> str:
    central_db.connect()  # central has run: the database and its tables exist
    cfg = tmp_path / "central.toml"
    cfg.write_text("[central]\n" + central_db.central_toml(tmp_path / "central.db"))
    return str(cfg)


def test_set_office_overrides_the_first_claim_and_is_audited(
    tmp_path: Path, central_db: CentralDb
) -> None:
    cfg = _config(tmp_path, central_db)
    conn = central_db.connect()
    downlink_log.claim_office(conn, "k-1", "000.00.14.H56")
    run = CliRunner().invoke(main, ["kiosk", "set-office", "--config", cfg, "k-1", "000.00.14.H57"])
    assert run.exit_code == 0, run.output
    assert "was 000.00.14.H56" in run.output
    assert downlink_log.office_of(conn, "k-1") == "000.00.14.H57"
    # The new office now holds the kiosk to it: its old claim is refused.
    try:
        downlink_log.claim_office(conn, "k-1", "000.00.14.H56")
    except downlink_log.OfficeConflict as exc:
        assert "set-office" in str(exc)
    else:
        raise AssertionError("a claim of the old office was accepted")
    (row,) = audit.entries(conn, target="kiosk:k-1")
    assert row["action"] == "kiosk.office" and row["detail"] == {
        "from": "000.00.14.H56",
        "to": "000.00.14.H57",
    }
    listed = CliRunner().invoke(main, ["kiosk", "offices", "--config", cfg, "--json"])
    assert json.loads(listed.output) == [
        {
            "kiosk": "k-1",
            "office": "000.00.14.H57",
            "since": json.loads(listed.output)[0]["since"],
            "source": "admin",
        }
    ]


def test_a_bad_agency_is_refused_with_the_fix_and_changes_nothing(
    tmp_path: Path, central_db: CentralDb
) -> None:
    cfg = _config(tmp_path, central_db)
    run = CliRunner().invoke(main, ["kiosk", "set-office", "--config", cfg, "k-1", "h56; drop"])
    assert run.exit_code != 0
    assert "e.g. 000.00.14.H56" in run.output
    conn = central_db.connect()
    assert downlink_log.office_of(conn, "k-1") is None
    assert audit.entries(conn) == []
