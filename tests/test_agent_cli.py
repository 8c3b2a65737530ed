"""The agent's command line and process: config errors, outbox salvage, systemd notify."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.mosquitto import MosquittoProcess, mqtt_toml
from edge_agent.cli import main as agent_cli
from sync.envelope import heartbeat_topic
from sync.mqtt_link import make_paho_client
from sync.outbox import Outbox
from tests import identity as keyring
from tests import stack
from tests.waiting import wait_until


def test_config_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        '[kiosk]\nid = "k01"\nagency = "000.00.14.H56"\nslot = 12\n[sync]\ninflight_windw = 5\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(agent_cli, ["check-config", "--config", str(cfg)])
    assert result.exit_code != 0
    assert "kiosk.slot" in result.output and "less than or equal to 9" in result.output
    assert "sync.inflight_windw" in result.output and "unknown key" in result.output
    assert str(cfg) in result.output
    missing = CliRunner().invoke(agent_cli, ["check-config", "--config", str(tmp_path / "no")])
    assert missing.exit_code != 0 and "not found" in missing.output


def test_salvage_copies_unsynced_records_and_leaves_the_file_alone(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    ids = stack.fill_outbox(db, 5)
    ob = Outbox(db, stack.KIOSK)
    ob.mark_acked(ids[:2])
    ob.close()
    before = db.read_bytes()
    out = tmp_path / "salvaged.jsonl"
    result = CliRunner().invoke(agent_cli, ["outbox", "salvage", str(db), str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["saved"] == 3
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert [rec["id"] for rec in lines] == ids[2:]
    assert db.read_bytes() == before
    again = CliRunner().invoke(agent_cli, ["outbox", "salvage", str(db), str(out)])
    assert again.exit_code != 0 and "exists" in again.output


def test_salvage_of_garbage_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(os.urandom(8192))
    result = CliRunner().invoke(agent_cli, ["outbox", "salvage", str(bad), str(tmp_path / "o")])
    assert result.exit_code != 0 and "cannot read" in result.output


def test_agent_tells_systemd_it_is_ready_and_pings_the_watchdog(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    cfg = stack.write_agent_config(
        tmp_path / "agent.toml", tmp_path / "kiosk.db", broker.kiosk(stack.KIOSK)
    )
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    messages: list[str] = []

    def receive() -> None:
        with contextlib.suppress(TimeoutError):
            messages.append(sock.recv(4096).decode())

    def got(what: str, times: int = 1) -> bool:
        receive()
        return sum(what in m for m in messages) >= times

    try:
        wait_until(lambda: got("READY=1"), 30, "READY=1")
        wait_until(lambda: got("WATCHDOG=1", times=2), 30, "two watchdog pings")
        proc.terminate()
        assert proc.wait(10) == 0
        wait_until(lambda: got("STOPPING=1"), 10, "STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


@pytest.mark.parametrize("journal", [False, True], ids=["plain", "journald"])
def test_agent_with_a_printer_logs_with_timestamps_or_priorities_and_a_fault_once(
    broker: MosquittoProcess, tmp_path: Path, journal: bool
) -> None:
    """Item 13 end to end: a printer configured (python-escpos imported before our log
    set-up), the configured level honoured, a printer that fails at every poll logged once."""
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[kiosk]\nid = "{stack.KIOSK}"\nagency = "000.00.14.H56"\nslot = 1\n'
        f'[agent]\ndatabase = "{tmp_path / "kiosk.db"}"\n'
        f'receipts_dir = "{tmp_path / "receipts"}"\nlog_level = "INFO"\n'
        f"{mqtt_toml(broker.kiosk(stack.KIOSK))}\n[sync]\nheartbeat_interval_s = 1\n"
        '[devices]\nprinter = "usb://04b8:0e15"\nprinter_poll_s = 0.1\n'
        + keyring.write_keys(tmp_path / "keys").agent_toml(),
        encoding="utf-8",
    )
    # Without libusb (this machine) the printer has no USB backend; with it, no such
    # device: either way it fails at every poll.
    err = tmp_path / "agent.err"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    heartbeats: list[bytes] = []
    watcher_settings = broker.collector("aps-hb-watcher")
    watcher = make_paho_client("aps-hb-watcher", watcher_settings)
    watcher.on_message = lambda client, userdata, msg: heartbeats.append(msg.payload)
    watcher.connect("127.0.0.1", watcher_settings.port)
    watcher.subscribe(heartbeat_topic(stack.KIOSK), qos=0)
    watcher.loop_start()
    with err.open("wb") as fh:
        if journal:
            st = os.fstat(fh.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=fh,
        )
    try:
        # Three heartbeats a second apart: the printer was polled some 20 times.
        wait_until(lambda: len(heartbeats) >= 3 or proc.poll() is not None, 60, "heartbeats")
        assert proc.poll() is None, err.read_text(encoding="utf-8")
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        watcher.loop_stop()
        watcher.disconnect()
    lines = err.read_text(encoding="utf-8").splitlines()
    # INFO shows: python-escpos's handler (root at WARNING) no longer decides the level.
    started = [ln for ln in lines if "aps.agent: agent for kiosk" in ln]
    assert len(started) == 1, lines
    printer = [ln for ln in lines if "device printer:" in ln]
    assert len(printer) == 1, printer
    assert not any("Traceback" in ln for ln in lines)
    if journal:
        assert started[0].startswith("<6>INFO aps.agent: ")
        assert re.match(r"^<[34]>(ERROR|WARNING) aps\.devices: device printer: ", printer[0])
        assert all(re.match(r"^<[2-7]>", ln) for ln in lines), lines
    else:
        stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
        assert re.match(stamp + "INFO aps.agent: ", started[0]), started
        assert re.match(stamp + "(ERROR|WARNING) aps.devices: ", printer[0]), printer


def test_both_clis_say_their_version() -> None:
    from importlib.metadata import version

    from central.cli import main as central_main
    from edge_agent.cli import main as agent_main

    for name, cli in (("aps-agent", agent_main), ("aps-central", central_main)):
        out = CliRunner().invoke(cli, ["--version"])
        assert out.exit_code == 0 and out.output == f"{name} {version('aps-kiosk')}\n"
