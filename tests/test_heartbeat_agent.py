"""The kiosk's heartbeat: sent at once when a device changes state (rate-limited), with the
agent's last error (one line, ID numbers masked) and a millisecond ``ts``."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from central.ingest import FleetUpdate, classify_fleet
from central.mosquitto import MosquittoProcess
from edge_agent.app import KioskApp
from edge_agent.config import AgentConfig
from edge_agent.devices import DeviceSupervisor
from firmware_mocks.usb_printer import EmulatedUsbPrinter
from sync.envelope import encode_heartbeat, heartbeat_topic
from sync.logs import LAST_ERROR_CHARS, LastErrorHandler, mask_id_numbers
from sync.mqtt_link import make_paho_client
from tests import identity as keyring
from tests.waiting import wait_until

ID = "001234561234"


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    return logging.LogRecord(
        "edge_agent.x",
        logging.ERROR,
        __file__,
        1,
        msg,
        args,
        (type(exc), exc, None) if exc is not None else None,
    )


def test_the_last_error_is_one_masked_bounded_line() -> None:
    h = LastErrorHandler()
    assert h.line is None
    h.handle(_record("card %s refused\nsecond line", ID))
    assert h.line == "ERROR edge_agent.x: card ********1234 refused"
    h.handle(_record("printing failed", exc=OSError(f"spool for {ID} unreadable\nmore")))
    assert (
        h.line == "ERROR edge_agent.x: printing failed: OSError: spool for ********1234 unreadable"
    )
    h.handle(_record("x" * 5000))
    assert h.line is not None and len(h.line) == LAST_ERROR_CHARS and h.line.endswith("…")
    h.handle(_record("a %d b", "not a number"))  # a bad format string never raises
    assert h.line is not None and "a %d b" in h.line
    warn = _record("only a warning")
    warn.levelno, warn.levelname = logging.WARNING, "WARNING"
    h.handle(warn)
    assert "only a warning" not in (h.line or "")


def test_the_last_error_line_passes_the_heartbeat_schema() -> None:
    h = LastErrorHandler()
    h.handle(_record("é" * 5000))
    item = classify_fleet(
        heartbeat_topic("k1"),
        encode_heartbeat("k1", "2026-12-02T05:00:00.000+07:00", last_error=h.line),
    )
    assert isinstance(item, FleetUpdate)


no_digits = st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=20)


@given(before=no_digits, number=st.from_regex(r"\A[0-9]{9}([0-9]{3})?\Z"), after=no_digits)
def test_no_id_number_survives_masking(before: str, number: str, after: str) -> None:
    """A CMND (9) or CCCD (12) number is masked wherever it stands: its last four show."""
    out = mask_id_numbers(before + number + after)
    assert number[:-4] not in out
    assert out == before + "*" * (len(number) - 4) + number[-4:] + after


def _app(tmp_path: Path, broker: MosquittoProcess, usb: EmulatedUsbPrinter) -> KioskApp:
    cfg = AgentConfig.model_validate(
        {
            "kiosk": {"id": "k-soon", "agency": "000.00.14.H56", "slot": 1},
            "agent": {"database": str(tmp_path / "k.db"), "receipts_dir": str(tmp_path / "r")},
            "mqtt": dataclasses.asdict(broker.kiosk("k-soon")),
            "devices": {"printer": "usb://04b8:0e15", "printer_poll_s": 0.1},
            "identity": keyring.write_keys(tmp_path / "keys").agent_section(),
            # One heartbeat an hour: any other heartbeat seen was sent because a device
            # changed (at most one per heartbeat_min_gap_s, set in agent.toml's [sync]).
            "sync": {"heartbeat_interval_s": 3600, "heartbeat_min_gap_s": 0.5},
        }
    )
    sup = DeviceSupervisor(cfg.devices, spool_dir=cfg.agent.receipts_dir, usb_backend=usb)
    assert cfg.sync.settings().heartbeat_min_gap_s == 0.5
    return KioskApp(cfg, devices=sup)


def test_paper_out_reaches_the_broker_at_once_not_at_the_next_heartbeat(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        with lock:
            seen.append(json.loads(msg.payload))

    def printer_states() -> list[str]:
        with lock:
            return [m.get("devices", {}).get("printer", {}).get("state") for m in seen]

    watcher = broker.collector("aps-soon-watcher")
    sub = make_paho_client("aps-soon-watcher", watcher)
    sub.on_message = on_message
    sub.connect("127.0.0.1", watcher.port)
    sub.subscribe(heartbeat_topic("k-soon"), qos=0)
    sub.loop_start()
    usb = EmulatedUsbPrinter()
    app = _app(tmp_path, broker, usb)
    app.start()
    try:
        wait_until(lambda: "ok" in printer_states(), 30, "the first heartbeat, printer ok")
        logging.getLogger("edge_agent.test").error("reader sent garbage for %s", ID)
        usb.paper_end = True
        wait_until(lambda: "paper_out" in printer_states(), 30, "paper_out, long before an hour")
        with lock:
            beat = next(m for m in seen if m["devices"]["printer"]["state"] == "paper_out")
        assert beat["last_error"] == "ERROR edge_agent.test: reader sent garbage for ********1234"
        assert re.fullmatch(r".*T\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", beat["ts"]), beat["ts"]
        usb.paper_end = False
        wait_until(lambda: printer_states()[-1] == "ok", 30, "paper back, at once too")
    finally:
        app.stop()
        sub.loop_stop()
        sub.disconnect()
    # Nothing but changes: the first heartbeat, paper out, paper back (a state between,
    # e.g. paper_near_end, would add one; never a heartbeat per poll).
    assert len(printer_states()) <= 5, printer_states()
    assert ID not in json.dumps(seen)
