"""Citizen data stays private to the service's user (item 16): 0600 files in 0700 directories.

The tests run under the common 022 umask, as a root shell or a distribution's
default would: the modes must come from the code, not from the umask (the
systemd units set ``UMask=0077`` as a second line of defence).
"""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central.config import CentralConfig
from central.service import CentralService
from central.store import SQLiteStore
from drivers.printer import ReceiptPrinter
from edge_agent.agent import Agent, open_desk
from edge_agent.config import AgentConfig
from edge_agent.dossiers import Applicant
from edge_agent.receipts import file_and_print
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from sync.files import create_private_file
from sync.outbox import Outbox
from tests import identity as keyring
from tests import stack

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
APPLICANT = Applicant(full_name="Đặng Quốc Việt", id_number="087205012345", phone="0912345678")
PROCEDURE, FORM = "1.004873", {"muc_dich": "Đăng ký kết hôn", "tinh_trang": "Chưa kết hôn"}


@pytest.fixture(autouse=True)
def common_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private_files(*paths: Path) -> None:
    modes = {str(p): oct(mode(p)) for p in paths}
    assert all(m == oct(0o600) for m in modes.values()), modes


def agent_config(root: Path) -> AgentConfig:
    keys = keyring.write_keys(root / "keys")
    return AgentConfig.model_validate(
        {
            "kiosk": {"id": "k-modes", "agency": "000.00.14.H56", "slot": 1},
            "agent": {
                "database": str(root / "var/lib/aps/kiosk.db"),
                "receipts_dir": str(root / "var/lib/aps/receipts"),
            },
            "devices": {"printer": "usb://04b8:0e15"},
            "identity": {
                "signing_key": str(keys.kiosk_key),
                "central_keys": str(keys.central_keys),
            },
        }
    )


def test_kiosk_database_and_its_wal_are_private_after_a_filing(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path)
    agent = Agent(cfg)  # makes the database's directory and the kiosk's tables
    agent.sync.outbox.close()
    desk = open_desk(cfg)
    try:
        filed = desk.file(PROCEDURE, APPLICANT, FORM, now=NOW)
        db = cfg.agent.database
        wal, shm = db.with_name("kiosk.db-wal"), db.with_name("kiosk.db-shm")
        assert wal.stat().st_size > 0  # the filing is in the WAL right now
        assert APPLICANT.id_number.encode() in wal.read_bytes() + db.read_bytes()
        assert_private_files(db, wal, shm)
        assert oct(mode(db.parent)) == oct(0o700)
        assert filed.code
    finally:
        desk.outbox.close()


def test_existing_world_readable_kiosk_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    stack.fill_outbox(db, 2)
    for path in (db, *tmp_path.glob("kiosk.db-*")):
        path.chmod(0o644)
    ob = Outbox(db, stack.KIOSK)
    ob.add("dossier", stack.dossier_body(3))
    try:
        assert_private_files(db, db.with_name("kiosk.db-wal"), db.with_name("kiosk.db-shm"))
    finally:
        ob.close()


def test_receipt_spool_is_private_after_a_receipt(tmp_path: Path) -> None:
    cfg = agent_config(tmp_path)
    cfg.agent.database.parent.mkdir(parents=True)
    usb = EmulatedUsbPrinter()
    printer = ReceiptPrinter(cfg.devices.printer, spool_dir=cfg.agent.receipts_dir, usb_backend=usb)
    desk = open_desk(cfg)
    try:
        filed, outcome = file_and_print(desk, printer, cfg, PROCEDURE, APPLICANT, FORM, now=NOW)
        assert outcome.printed
        usb.paper_end = True  # the next one stays in the spool, unprinted
        second, unprinted = file_and_print(desk, printer, cfg, PROCEDURE, APPLICANT, FORM, now=NOW)
        assert not unprinted.printed and unprinted.reprintable
    finally:
        desk.outbox.close()
        printer.close()
    spool = cfg.agent.receipts_dir
    assert oct(mode(spool)) == oct(0o700)
    files = sorted(spool.iterdir())
    assert {p.name for p in files} >= {
        f"{filed.code}.bin",
        f"{second.code}.bin",
        f"{second.code}.pending",
    }
    assert_private_files(*files)


def test_central_database_is_private_after_ingest(tmp_path: Path) -> None:
    db = tmp_path / "srv/aps/central.db"
    keys = keyring.write_keys(tmp_path / "keys")
    cfg = CentralConfig.model_validate(
        {"central": {"database": str(db)}, "security": {"signing_key": str(keys.central_key)}}
    )
    CentralService(cfg)  # makes the directory and the schema, as `aps-central run` does
    kiosk_db = tmp_path / "kiosk.db"
    stack.fill_outbox(kiosk_db, 3)
    ob = Outbox(kiosk_db, stack.KIOSK)
    store = SQLiteStore(db)
    try:
        items = [
            keyring.classify(f"aps/v1/{stack.KIOSK}/up/records", p.payload) for p in ob.pending()
        ]
        assert store.ingest(items).stored == 3
        assert_private_files(db, db.with_name("central.db-wal"), db.with_name("central.db-shm"))
        assert oct(mode(db.parent)) == oct(0o700)
    finally:
        store.close()
        ob.close()


def test_private_file_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    os.umask(0)
    path = tmp_path / "x.db"
    create_private_file(path)
    assert oct(mode(path)) == oct(0o600)


@pytest.mark.parametrize("unit", ["aps-agent.service", "aps-central.service"])
def test_units_set_a_private_umask_and_state_directory(unit: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "systemd" / unit, encoding="utf-8")
    assert parser["Service"]["UMask"] == "0077"
    assert parser["Service"]["StateDirectoryMode"] == "0700"


def test_salvaged_records_are_written_private(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edge_agent.cli import main as agent_cli

    db = tmp_path / "kiosk.db"
    stack.fill_outbox(db, 2)
    out = tmp_path / "salvaged.jsonl"
    result = CliRunner().invoke(agent_cli, ["outbox", "salvage", str(db), str(out)])
    assert result.exit_code == 0, result.output
    assert b"087205000123" in out.read_bytes()  # whole ID numbers: citizen data
    assert_private_files(out)
