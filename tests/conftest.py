"""Shared fixtures: a private mosquitto with the shipped configuration, per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from central.mosquitto import MosquittoProcess, TestPki


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """One test CA for the session (certificates are made once per CN)."""
    return TestPki(tmp_path_factory.mktemp("pki")).create()


@pytest.fixture
def broker(tmp_path: Path, test_pki: TestPki) -> Iterator[MosquittoProcess]:
    """config/mosquitto.conf as installed on Debian, ports and paths substituted.

    Nothing is anonymous: connect with ``broker.kiosk(kiosk_id)`` (mutual TLS)
    or ``broker.collector(name)`` (password on the local listener).
    """
    with MosquittoProcess(tmp_path / "broker", pki=test_pki) as b:
        yield b
