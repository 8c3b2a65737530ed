"""restart-agent on real processes: aps-central and aps-agent spawned as systemd would, the
agent exits 0 after reporting success (systemd's Restart=always starts it again), and the
job is not run again by the next agent. And print-test-slip through the emulated printer."""

from __future__ import annotations

import subprocess
from pathlib import Path

from central import backoffice_db
from central.fleet import jobs
from central.mosquitto import MosquittoProcess
from edge_agent.app import KioskApp
from edge_agent.devices import DeviceSupervisor
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from sync.jobs import JobState
from tests import stack
from tests.downlink_stack import start_central
from tests.kiosk import KIOSK, app_config
from tests.waiting import wait_until


def _state(db: Path, job_id: str) -> JobState | None:
    if not db.exists():
        return None
    conn = backoffice_db.connect(db)
    try:
        job = jobs.get_job(conn, job_id)
        return None if job is None else job.state
    finally:
        conn.close()


def _office_known(db: Path) -> bool:
    if not db.exists():
        return False
    conn = backoffice_db.connect(db)
    try:
        row = conn.execute("SELECT 1 FROM kiosk_offices WHERE kiosk = ?", (stack.KIOSK,))
        return row.fetchone() is not None
    finally:
        conn.close()


def test_restart_agent_exits_the_agent_after_its_report_and_runs_once(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    agent_cfg = stack.write_agent_config(
        tmp_path / "agent.toml", kiosk_db, broker.kiosk(stack.KIOSK)
    )
    central_cfg = stack.write_central_config(
        tmp_path / "central.toml", central_db, broker.collector()
    )
    central = stack.spawn("central.cli", central_cfg, tmp_path / "central.log")
    agent = stack.spawn("edge_agent.cli", agent_cfg, tmp_path / "agent.log")
    try:
        wait_until(lambda: _office_known(central_db), 60, "the agent asked for its state")
        conn = backoffice_db.connect(central_db)
        (job,) = jobs.create(conn, "restart-agent", kiosks=[stack.KIOSK], actor="cli:admin")
        conn.close()
        try:
            assert agent.wait(60) == 0  # it stopped by itself, cleanly
        except subprocess.TimeoutExpired as exc:
            raise AssertionError((tmp_path / "agent.log").read_text()[-3000:]) from exc
        # "systemd" starts it again; the success report was durable before the exit
        agent = stack.spawn("edge_agent.cli", agent_cfg, tmp_path / "agent.log")
        wait_until(lambda: _state(central_db, job.id) is JobState.SUCCEEDED, 60, "succeeded")
        assert agent.poll() is None  # the order it already ran does not restart it again
        log = (tmp_path / "agent.log").read_text()
        assert log.count("restarting the agent at central's request") == 1
    finally:
        stack.stop(agent)
        stack.stop(central)


def test_print_test_slip_prints_through_the_agents_printer(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "central.db"
    central = start_central(broker, db)
    usb = EmulatedUsbPrinter()
    cfg = app_config(
        tmp_path,
        broker.kiosk(KIOSK),
        devices={"printer": "usb://04b8:0e15", "printer_poll_s": 0.1, "reopen_s": 0.1},
    )
    devices = DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb)
    app = KioskApp(cfg, devices=devices)
    app.start()
    try:
        assert app.inbox is not None
        inbox = app.inbox
        wait_until(lambda: inbox.last_reply_at() is not None, 60, "first state reply")
        conn = backoffice_db.connect(db)
        (job,) = jobs.create(conn, "print-test-slip", kiosks=[KIOSK], actor="cli:admin")
        conn.close()
        wait_until(lambda: _state(db, job.id) is JobState.SUCCEEDED, 60, "printed")
        assert len(usb.take_received()) > 1000  # a slip's raster went to the printer
    finally:
        app.stop()
        central.stop()
