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

    draws: list[list[int]] = []

    def first_taken_then_free(count: int) -> list[int]:
        draws.append(next(picks, None) or real(count))
        return draws[-1]

    monkeypatch.setattr(mosquitto, "free_ports", first_taken_then_free)
    broker = MosquittoProcess(tmp_path / "broker", pki=test_pki)
    try:
        broker.start()
        assert taken not in (broker.local_port, broker.kiosk_port)
        # mosquitto refused the taken port and start drew again (its "Address already in
        # use" goes to stderr or to the log, depending on how far it got: not asserted on)
        assert len(draws) == 2 and draws[0][0] == taken
        broker.restart()  # a restart keeps its ports
        assert broker.proc is not None and broker.proc.poll() is None
    finally:
        broker.stop()
        squatter.close()
