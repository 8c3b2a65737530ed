"""The private broker survives a port someone else took between picking and binding it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import central.mosquitto as mosquitto
from central.mosquitto import MosquittoProcess, TestPki


def test_a_taken_port_is_replaced_at_start(
    tmp_path: Path, test_pki: TestPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real = mosquitto.free_ports
    picks: Iterator[list[int]] = iter([[taken, *real(1)]])

    def first_taken_then_free(count: int) -> list[int]:
        return next(picks, None) or real(count)

    monkeypatch.setattr(mosquitto, "free_ports", first_taken_then_free)
    broker = MosquittoProcess(tmp_path / "broker", pki=test_pki)
    try:
        broker.start()
        assert taken not in (broker.local_port, broker.kiosk_port)
        assert "Address already in use" in broker.log.read_text()
        broker.restart()  # a restart keeps its ports
        assert broker.proc is not None and broker.proc.poll() is None
    finally:
        broker.stop()
        squatter.close()
