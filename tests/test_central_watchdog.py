"""aps-central under systemd: READY=1, and WATCHDOG=1 only while the writer makes progress.

Issue 6, item 2: a collector whose writer is stuck in a commit must stop
feeding systemd's watchdog so that systemd restarts it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.config import load_central_config
from central.mosquitto import MosquittoProcess
from central.service import CentralService
from sync.envelope import Record, records_topic
from sync.ids import new_stream_id, new_ulid
from sync.mqtt_link import make_paho_client
from sync.systemd_notify import Notifier
from tests import identity as keyring
from tests import stack
from tests.waiting import wait_until


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


def _drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_a_writer_stuck_in_a_commit_stops_the_watchdog_pings(
    broker: MosquittoProcess,
    tmp_path: Path,
    notify_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    db = tmp_path / "central.db"
    cfg = load_central_config(
        stack.write_central_config(
            tmp_path / "c.toml", db, broker.collector(), kiosks=("k-dog-01",)
        )
    )
    service = CentralService(cfg, notifier=Notifier())
    assert service.writer_stall_s == 10.0
    collector = service.collector
    collector.start()
    blocker = sqlite3.connect(db, isolation_level=None)
    kiosk_settings = broker.kiosk("k-dog-01")
    kiosk = make_paho_client("k-dog-01", kiosk_settings)
    try:
        wait_until(collector.network.connected.is_set, 30, "collector connected")
        wait_until(service.feed_watchdog, 30, "a first ping from an idle writer")
        assert "WATCHDOG=1" in _drain(notify_socket)

        blocker.execute("BEGIN EXCLUSIVE")  # the writer's next commit cannot go through
        kiosk.connect("127.0.0.1", kiosk_settings.port)
        kiosk.loop_start()
        rec = Record(
            kind="rating",
            kiosk="k-dog-01",
            stream=new_stream_id(),
            seq=1,
            id=new_ulid(),
            created="2026-11-26T09:15:02.123+07:00",
            body={"level": "hai_long"},
        )
        kiosk.publish(
            records_topic("k-dog-01"), keyring.signed(rec.encode()), qos=1
        ).wait_for_publish(30)
        wait_until(lambda: collector.counters.received == 1, 30, "the writer took the batch")
        # However long it has been stuck: with the lock held it cannot come round.
        later = time.monotonic() + service.writer_stall_s + 1
        assert service.feed_watchdog(now=later) is False
        assert not any("WATCHDOG=1" in m for m in _drain(notify_socket))
        assert collector.counters.stored == 0

        blocker.execute("ROLLBACK")  # the disk comes back: the commit completes
        wait_until(lambda: collector.counters.stored == 1, 60, "the stuck batch committed")
        wait_until(service.feed_watchdog, 30, "pings again once the writer moves")
        assert "WATCHDOG=1" in _drain(notify_socket)
    finally:
        kiosk.loop_stop()
        blocker.close()
        collector.stop()


def test_aps_central_run_is_ready_pings_and_says_stopping(
    broker: MosquittoProcess, tmp_path: Path, notify_socket: socket.socket
) -> None:
    cfg = stack.write_central_config(
        tmp_path / "c.toml", tmp_path / "central.db", broker.collector()
    )
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "4000000",
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    messages: list[str] = []

    def got(what: str, times: int = 1) -> bool:
        messages.extend(_drain(notify_socket))
        return sum(what in m for m in messages) >= times

    try:
        wait_until(lambda: got("READY=1"), 30, "READY=1")
        wait_until(lambda: got("WATCHDOG=1", times=2), 30, "two watchdog pings")
        proc.terminate()
        assert proc.wait(15) == 0
        wait_until(lambda: got("STOPPING=1"), 10, "STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(5)
