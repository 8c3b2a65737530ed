"""Fleet operations in one run, the way an admin meets them.

Real parts: a private mosquitto; ``aps-central run`` as its own process (collector, downlink,
alert engine, the HTTP API with the console); the ``aps-central`` commands an admin types; the
kiosk application with its device supervisor driving the emulated USB printer through the real
python-escpos and pyusb code. The admin's browser is an HTTP client that logs in through the
console's own login form, CSRF token included.

1. The printer runs out of paper: the paper-out alert opens and the admin sees it on the
   console's alerts page; paper back: it clears by itself after the hold-down.
2. A configuration push and a job (a test slip printed), each with its audit rows.

Software updates need the install layout and two built releases: tests/test_update_e2e.py.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from central import audit
from central.mosquitto import MosquittoProcess, free_ports
from edge_agent.app import KioskApp
from edge_agent.devices import DeviceSupervisor
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from tests import stack
from tests.console_seed import login
from tests.kiosk import KIOSK, app_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

PASSWORD = "mật khẩu đủ dài 2026"
HOLD_DOWN_S = 2.0


def _cli(config: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "central.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _fleet_state(config: Path) -> str | None:
    for line in _cli(config, "fleet", "--json").splitlines():
        row = json.loads(line)
        if row["kiosk"] == KIOSK:
            return str(row["state"])
    return None


def _console(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    answer = login(client, "quan.tri", PASSWORD, origin=base)
    assert answer.status_code in (200, 303), answer.text[:500]
    assert client.get("/console/").status_code == 200
    return client


def _paper_alert(config: Path) -> dict[str, Any] | None:
    for line in _cli(config, "alerts", "--all", "--json", "--kind", "paper-out").splitlines():
        row = json.loads(line)
        if row["kiosk"] == KIOSK:
            return dict(row)
    return None


def _audit_actions(db: Path, target: str) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [e["action"] for e in audit.entries(conn, target=target)]
    finally:
        conn.close()


def test_paper_out_on_the_console_then_a_config_push_and_a_job_with_their_audit(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "central.db"
    (api_port,) = free_ports(1)
    config = stack.write_central_config(
        tmp_path / "central.toml", db, broker.collector(), kiosks=(KIOSK,)
    )
    with config.open("a", encoding="utf-8") as fh:
        fh.write(
            f'\n[api]\nlisten = "127.0.0.1:{api_port}"\n'
            "\n[alerts]\nevaluate_every_s = 0.5\n"
            f"\n[alerts.rules.paper-out]\nhold_down_s = {HOLD_DOWN_S}\n"
            "\n[downlink]\nnudge_interval_s = 0.2\n"
        )
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    _cli(config, "console", "user", "add", "quan.tri", "--role", "admin",
         "--password-file", str(password_file))  # fmt: skip

    usb = EmulatedUsbPrinter()
    cfg = app_config(
        tmp_path,
        broker.kiosk(KIOSK),
        devices={"printer": "usb://04b8:0e15", "printer_poll_s": 0.1},
    )
    central = stack.spawn("central.cli", config, tmp_path / "central.log")
    sup = DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb)
    app = KioskApp(cfg, devices=sup)
    try:
        app.start()
        wait_until(lambda: _fleet_state(config) == "operational", 90, "the kiosk operational")
        base = f"http://127.0.0.1:{api_port}"
        console = _console(base)

        # 1. Paper out: the alert opens and the console shows it; paper back: it clears.
        usb.paper_end = True
        wait_until(
            lambda: (_paper_alert(config) or {}).get("state") == "open", 60, "paper-out open"
        )
        alert = _paper_alert(config)
        assert alert is not None
        page = console.get("/console/alerts")
        assert page.status_code == 200 and KIOSK in page.text and "paper-out" in page.text
        detail = console.get(f"/console/alerts/{alert['id']}")
        assert detail.status_code == 200 and KIOSK in detail.text
        assert _fleet_state(config) == "degraded"

        usb.paper_end = False
        wait_until(
            lambda: (_paper_alert(config) or {}).get("state") == "cleared",
            60,
            "paper-out cleared after the hold-down",
        )
        wait_until(lambda: _fleet_state(config) == "operational", 60, "operational again")

        # 2. A configuration push, then a job, each audited at central.
        _cli(config, "config", "set", "--kiosk", KIOSK, "session_idle_s=300")
        wait_until(lambda: app.session.idle_timeout_s == 300, 60, "the new idle timeout")
        wait_until(
            lambda: "config.applied" in _audit_actions(db, f"kiosk:{KIOSK}"),
            60,
            "the kiosk's applied report audited",
        )
        created = json.loads(_cli(config, "job", "create", "print-test-slip", "--kiosk", KIOSK,
                                  "--json"))  # fmt: skip
        job = created[0] if isinstance(created, list) else created
        job_id = str(job["id"])

        def job_state() -> str:
            return str(json.loads(_cli(config, "job", "show", job_id, "--json"))["state"])

        wait_until(lambda: job_state() == "succeeded", 90, "the test slip printed")
        actions = _audit_actions(db, f"job:{job_id}")
        assert actions[-1] == "job.create" and "job.succeeded" in actions
        kiosk_page = console.get(f"/console/kiosks/{KIOSK}")
        assert kiosk_page.status_code == 200 and "print-test-slip" in kiosk_page.text
        console.close()
    finally:
        app.stop()
        stack.stop(central)
