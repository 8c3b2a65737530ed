"""The trial after the switch: commit when every check passes, unhealthy at the deadline
naming the failing checks, no verdict when the agent is stopped meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path

from edge_agent.updater import state_file
from edge_agent.updater.machine import State, UpdateState
from edge_agent.updater.trial import run_trial

NOW = 1_800_000_000.0


def _trial(tmp: Path) -> tuple[Path, UpdateState]:
    path = tmp / "state.json"
    s = UpdateState(
        state=State.CHECKING, version="0.2.0", previous="0.1.0", trial_starts=1, deadline=NOW + 60
    )
    state_file.save(path, s)
    return path, s


def test_all_checks_passing_commits(tmp_path: Path) -> None:
    path, s = _trial(tmp_path)
    calls: list[int] = []

    def broker() -> str | None:  # passes on its third look
        calls.append(1)
        return None if len(calls) >= 3 else "not connected yet"

    clock = iter(range(10))
    r = run_trial(
        path,
        s,
        {"broker": broker, "outbox": lambda: None},
        stop=threading.Event(),
        now=lambda: NOW + next(clock),
        poll_s=0,
    )
    assert r.state.state is State.COMMITTED and state_file.load(path).state is State.COMMITTED


def test_a_check_still_failing_at_the_deadline_is_unhealthy_and_named(tmp_path: Path) -> None:
    path, s = _trial(tmp_path)
    clock = iter([NOW, NOW + 30, NOW + 61, NOW + 61, NOW + 61])

    def boom() -> str | None:
        raise OSError("database disk image is malformed")

    run_trial(
        path,
        s,
        {"broker": lambda: "not connected yet", "outbox": boom, "devices": lambda: None},
        stop=threading.Event(),
        now=lambda: next(clock),
        poll_s=0,
    )
    saved = state_file.load(path)
    assert saved.state is State.ROLLING_BACK
    assert saved.reason == (
        "health check: broker: not connected yet; outbox: OSError: database disk image is malformed"
    )


def test_stopped_during_the_trial_leaves_no_verdict(tmp_path: Path) -> None:
    path, s = _trial(tmp_path)
    stop = threading.Event()
    stop.set()
    r = run_trial(path, s, {"broker": lambda: "not yet"}, stop=stop, now=lambda: NOW, poll_s=0)
    assert r.state == s and state_file.load(path) == s
