"""Shared fixtures: a private mosquitto with the shipped configuration, per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from central.mosquitto import MosquittoProcess, TestPki

# A fresh PostgreSQL database per test that asks for ``pg`` (tests/pg.py).
pytest_plugins = ("tests.pg",)


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """One test CA for the session (certificates are made once per CN)."""
    return TestPki(tmp_path_factory.mktemp("pki")).create()


# Hypothesis profiles. "ci" (chosen when CI=true) is derandomized, so a CI run
# is reproducible and its length does not vary from run to run, and has no
# deadline (the shared 2-core machines swing too much for per-example timing).
# Tests that set max_examples themselves keep their own numbers; everything else
# runs hypothesis's default 100. Locally the "dev" profile only drops the
# deadline; HYPOTHESIS_PROFILE picks another one explicitly.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)

# Per-test timeout (pytest-timeout): 300 s by default (pyproject.toml); the
# fault-injection runs marked slow may take longer on a loaded machine.
SLOW_TIMEOUT_S = 900


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--ui-screenshots",
        action="store_true",
        default=False,
        help="browser tests: write screenshots to docs/img/ui-<name>.png (default: tmp)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


@pytest.fixture
def broker(tmp_path: Path, test_pki: TestPki) -> Iterator[MosquittoProcess]:
    """config/mosquitto.conf as installed on Debian, ports and paths substituted.

    Nothing is anonymous: connect with ``broker.kiosk(kiosk_id)`` (mutual TLS)
    or ``broker.collector(name)`` (password on the local listener).
    """
    with MosquittoProcess(tmp_path / "broker", pki=test_pki) as b:
        yield b
