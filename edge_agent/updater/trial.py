"""The new release checks itself after the restart, then commits (the agent's side).

Theory of operation
-------------------
The guard (scripts/aps-update-guard) has run before this start: if the state is
``checking`` and ``current`` names the release this process runs, this start is a trial.
:func:`run_trial` waits, at most until the trial's deadline, for every check to pass:

- the agent is ready (it is called after ``READY=1``);
- the outbox is readable (a read of its counts on the agent's own connection);
- the broker was reached (the sync's link connected at least once);
- the devices are open (no device reports ``error`` or ``missing``);
- the screen's local API answers (``GET /`` on ``[ui] listen``, when it is served).

Stopped before a verdict (``systemctl stop``, a reboot): nothing is written; the next start
is one more trial start for the guard. All pass: ``healthy`` (committed: nothing to undo, a
reboot keeps this release). One still failing at the deadline: ``unhealthy`` with the
failing checks as the reason, and the agent is asked to exit; the guard, before the next
start, switches ``current`` back to the previous release (the agent has no write access
to /opt/aps and never changes it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_agent.updater import state_file
from edge_agent.updater.layout import Layout
from edge_agent.updater.machine import Event, IllegalTransition, State, UpdateState, advance

log = logging.getLogger("aps.updater")

Check = Callable[[], str | None]  # None: passes; text: what is wrong


@dataclass(frozen=True)
class TrialResult:
    state: UpdateState
    failing: Mapping[str, str]


def on_trial(state_path: Path, layout: Layout, running: str) -> UpdateState | None:
    """The state when this start is the trial of ``running``, else None."""
    try:
        state = state_file.load(state_path)
    except state_file.StateFileError as exc:
        log.error("update state unreadable, no trial: %s", exc)
        return None
    if state.state is not State.CHECKING or state.version != running:
        return None
    if layout.running_version() != running:
        return None
    return state


def run_trial(
    state_path: Path,
    state: UpdateState,
    checks: Mapping[str, Check],
    *,
    stop: threading.Event,
    now: Callable[[], float] = time.time,
    poll_s: float = 0.5,
) -> TrialResult:
    """Run the checks until all pass or the deadline; persist healthy or unhealthy."""
    deadline = state.deadline if state.deadline is not None else now() + 120.0
    failing: dict[str, str] = {}
    while True:
        failing = {}
        for name, check in checks.items():
            try:
                problem = check()
            except Exception as exc:  # a check that raises has failed, with its reason
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                failing[name] = problem
        if not failing or now() >= deadline:
            break
        if stop.is_set():
            # stopped while on trial (systemctl stop, a reboot): no verdict; the next
            # start is one more trial start for the guard to count
            log.info("update %s: stopped during its trial, no verdict", state.version)
            return TrialResult(state, failing)
        stop.wait(poll_s)
    try:
        if failing:
            reason = "; ".join(f"{k}: {v}" for k, v in sorted(failing.items()))
            new = advance(state, Event.UNHEALTHY, now=now(), reason=f"health check: {reason}")
        else:
            new = advance(state, Event.HEALTHY, now=now())
    except IllegalTransition as exc:  # the file moved on under us: leave it as it is
        log.error("%s", exc)
        return TrialResult(state, failing)
    state_file.save(state_path, new)
    log.info("update %s: %s", new.version, new.state.value)
    return TrialResult(new, failing)
