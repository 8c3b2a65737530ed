"""Starting the agent: the kiosk database is integrity-checked once, not once per connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.config import load_agent_config
from sync import outbox
from sync.mqtt_link import MqttSettings
from tests import stack


def test_agent_start_checks_the_database_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # quick_check reads the whole file: 0.2-0.3 s on an 84 MB database, longer
    # on a cold SD card. One check per start is enough.
    db = tmp_path / "kiosk.db"
    stack.fill_outbox(db, 5)
    cfg = load_agent_config(
        stack.write_agent_config(tmp_path / "agent.toml", db, MqttSettings(port=1))
    )
    checks: list[str] = []
    real_connect = outbox.connect

    def counting_connect(path: Path | str, **kwargs: Any) -> sqlite3.Connection:
        if kwargs.get("quick_check"):
            checks.append(str(path))
        return real_connect(path, **kwargs)

    monkeypatch.setattr(outbox, "connect", counting_connect)
    agent = Agent(cfg)
    try:
        assert checks == [str(db)]
    finally:
        agent.sync.outbox.close()
