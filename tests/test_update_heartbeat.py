"""The heartbeat's ``update``: absent before any update, the state after, and a damaged
state file reported (never a lost heartbeat)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pydantic import TypeAdapter

from edge_agent.updater import state_file
from edge_agent.updater.agent_hook import update_health
from edge_agent.updater.machine import State, UpdateState
from sync.schemas import HeartbeatMessage


def _cfg(tmp: Path) -> SimpleNamespace:
    return SimpleNamespace(update=SimpleNamespace(state_dir=tmp / "update"))


def test_update_health_follows_the_state_file(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert update_health(cfg) is None  # type: ignore[arg-type]
    state_file.save(
        tmp_path / "update" / "state.json",
        UpdateState(
            state=State.ROLLED_BACK,
            version="0.3.0",
            previous="0.2.0",
            step="rolled-back",
            reason="health check: broker: not connected yet",
            at=1_800_000_000.0,
        ),
    )
    h = update_health(cfg)  # type: ignore[arg-type]
    assert h == {
        "state": "rolled-back",
        "version": "0.3.0",
        "previous": "0.2.0",
        "step": "rolled-back",
        "reason": "health check: broker: not connected yet",
        "at": "2027-01-15T08:00:00Z",
    }
    TypeAdapter(HeartbeatMessage).validate_python({"update": h})
    (tmp_path / "update" / "state.json").write_bytes(b"\xff")
    damaged = update_health(cfg)  # type: ignore[arg-type]
    assert damaged is not None and damaged["state"] == "inconsistent"
    TypeAdapter(HeartbeatMessage).validate_python({"update": damaged})
