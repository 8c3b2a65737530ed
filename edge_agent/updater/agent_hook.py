"""The agent's two touch points with updates: the trial after a switch, the heartbeat field.

:func:`start_trial` is called by :class:`edge_agent.agent.Agent` right after ``READY=1``;
it runs :func:`edge_agent.updater.trial.run_trial` on a thread when this start is a trial,
and on ``unhealthy`` stops the agent (the guard rolls back before the next start).
:func:`update_health` is the heartbeat's ``update`` (absent when no update ever ran).
"""

from __future__ import annotations

import logging
import sys
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.updater import state_file
from edge_agent.updater.layout import Layout
from edge_agent.updater.machine import State
from edge_agent.updater.trial import Check, on_trial, run_trial
from sync.release_manifest import is_version

if TYPE_CHECKING:
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig

log = logging.getLogger("aps.updater")

BAD_DEVICE_STATES = frozenset({"error", "missing", "failed"})


def running_release() -> str | None:
    """The version of the release this process runs from (…/releases/<v>/venv), or None."""
    rel = Path(sys.prefix).parent
    if rel.parent.name == "releases" and is_version(rel.name):
        return rel.name
    return None


def checks_for(agent: Agent) -> dict[str, Check]:
    app = agent.app

    def outbox() -> str | None:
        app.outbox.conn.execute("SELECT count(*) FROM outbox").fetchone()
        return None

    def broker() -> str | None:
        return None if app.sync.network.connected.is_set() else "not connected yet"

    def devices() -> str | None:
        bad = {
            name: str(h.get("state"))
            for name, h in app.device_health().items()
            if str(h.get("state")) in BAD_DEVICE_STATES
        }
        return ", ".join(f"{k} {v}" for k, v in sorted(bad.items())) or None

    checks: dict[str, Check] = {"outbox": outbox, "broker": broker, "devices": devices}
    listen = agent.cfg.ui.listen
    if listen:

        def screen() -> str | None:
            with urllib.request.urlopen(f"http://{listen}/", timeout=3) as resp:
                return None if resp.status == 200 else f"HTTP {resp.status}"

        checks["local_api"] = screen
    return checks


def start_trial(agent: Agent) -> threading.Thread | None:
    cfg = agent.cfg.update
    running = running_release()
    if running is None:
        return None
    state_path = cfg.state_dir / "state.json"
    state = on_trial(state_path, Layout(cfg.prefix), running)
    if state is None:
        return None
    log.info("release %s on trial until its deadline: checking itself", running)

    def trial() -> None:
        result = run_trial(state_path, state, checks_for(agent), stop=agent.stop_event)
        if result.state.state is State.ROLLING_BACK:
            log.error(
                "release %s unhealthy (%s): exiting for the rollback", running, result.state.reason
            )
            agent.exit_code = 3
            agent.stop_event.set()

    thread = threading.Thread(target=trial, name="update-trial", daemon=True)
    thread.start()
    return thread


def update_health(cfg: AgentConfig) -> dict[str, Any] | None:
    try:
        state = state_file.load(cfg.update.state_dir / "state.json")
    except state_file.StateFileError as exc:
        return {"state": "inconsistent", "reason": str(exc)[:200]}
    except OSError:
        return None
    if state.state is State.IDLE and state.version is None:
        return None
    return state.health()
