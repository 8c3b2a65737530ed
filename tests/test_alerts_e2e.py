"""End to end: a printer runs out of paper -> an alert opens at central -> a webhook
notification arrives -> paper back -> the alert clears after its hold-down.

Real parts: a private mosquitto, `aps-central run` as its own process (collector, alert
engine thread, notifier), the kiosk agent with its device supervisor driving the emulated
USB printer (firmware_mocks.usb_printer) through the real python-escpos and pyusb code, and
a loopback HTTP receiver that checks the webhook signature.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from central.fleet import alerts
from central.mosquitto import MosquittoProcess
from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from edge_agent.devices import DeviceSupervisor
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from tests import identity as keyring
from tests import stack
from tests.notify_receivers import webhook_receiver
from tests.waiting import wait_until

SECRET = b"alerts-e2e-secret-0123456789"
HOLD_DOWN_S = 2.0

pytestmark = pytest.mark.slow


def _paper_out(db: Path) -> alerts.Alert | None:
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        found = alerts.list_alerts(conn, kiosk=stack.KIOSK, kinds=["paper-out"])
        return found[0] if found else None
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


def _events(db: Path, alert_id: int) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [e.event for e in alerts.alert_events(conn, alert_id)]
    finally:
        conn.close()


def test_paper_out_alert_opens_notifies_and_clears(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    central_db = tmp_path / "central.db"
    usb = EmulatedUsbPrinter()
    with webhook_receiver(SECRET) as hook:
        central_cfg = stack.write_central_config(
            tmp_path / "central.toml", central_db, broker.collector()
        )
        with central_cfg.open("a", encoding="utf-8") as fh:
            fh.write(
                "\n[alerts]\nevaluate_every_s = 0.5\n\n"
                f"[alerts.rules.paper-out]\nhold_down_s = {HOLD_DOWN_S}\n\n"
                f'[notify]\nwebhook_url = "{hook.url}"\nwebhook_secret = "{SECRET.decode()}"\n'
                "backoff_s = 0.5\n"
            )
        cfg = AgentConfig.model_validate(
            {
                "kiosk": {"id": stack.KIOSK, "agency": "000.00.14.H56", "slot": 1},
                "agent": {
                    "database": str(tmp_path / "kiosk.db"),
                    "receipts_dir": str(tmp_path / "r"),
                },
                "mqtt": dataclasses.asdict(broker.kiosk(stack.KIOSK)),
                "sync": {"heartbeat_interval_s": 1, "reconnect_min_s": 0.1},
                "devices": {"printer": "usb://04b8:0e15", "printer_poll_s": 0.1},
                "identity": keyring.write_keys(tmp_path / "keys").agent_section(),
            }
        )
        central = stack.spawn("central.cli", central_cfg, tmp_path / "central.log")
        sup = DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb)
        agent = Agent(cfg, devices=sup)
        agent.sync.start()
        try:
            with sup:
                wait_until(lambda: sup.health()["printer"]["state"] == "ok", 20, "printer ok")
                usb.paper_end = True
                wait_until(
                    lambda: (a := _paper_out(central_db)) is not None and a.state == "open",
                    60,
                    "an open paper-out alert at central",
                )
                opened = _paper_out(central_db)
                assert opened is not None and opened.severity == "critical"
                assert opened.office == f"office-{stack.KIOSK}" and "printer" in opened.detail

                def notified(event: str) -> dict[str, Any] | None:
                    with hook.got:
                        return next((n for n in hook.received if n["event"] == event), None)

                wait_until(lambda: notified("alert-opened"), 30, "the webhook notification")
                note = notified("alert-opened")
                assert note is not None
                assert note["kiosk"] == stack.KIOSK and note["request"] == opened.id
                assert note["extra"]["alert"]["kind"] == "paper-out"
                assert hook.bad_signatures == 0

                usb.paper_end = False  # refilled
                wait_until(
                    lambda: (a := _paper_out(central_db)) is not None and a.state == "cleared",
                    60,
                    "the alert cleared after the hold-down",
                )
                cleared = _paper_out(central_db)
                assert cleared is not None and cleared.id == opened.id
                assert cleared.cause_gone_at is not None and cleared.cleared_at is not None
                assert cleared.cleared_at - cleared.cause_gone_at >= HOLD_DOWN_S
                events = _events(central_db, opened.id)
                assert events[0] == "opened" and events[-1] == "cleared"
                assert "cause-gone" in events
                wait_until(lambda: notified("alert-cleared"), 30, "the cleared notification")
        finally:
            agent.sync.stop()
            agent.sync.outbox.close()
            stack.stop(central)
