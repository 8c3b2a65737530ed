"""Shared fixtures: a private mosquitto on a free loopback port, per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from central.mosquitto import MosquittoProcess


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    with MosquittoProcess(tmp_path / "broker") as b:
        yield b
