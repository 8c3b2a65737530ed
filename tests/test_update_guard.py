"""scripts/aps-update-guard: counts trial starts, rolls back, never touches a committed box.

Run as its own process (as systemd's ExecStartPre= runs it) on a layout of stub releases;
a hypothesis test feeds it arbitrary state files in-process and checks that every move it
makes is one the updater's state machine allows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.updater import state_file
from edge_agent.updater.layout import Layout
from edge_agent.updater.machine import TRANSITIONS, Event, State, UpdateState
from tests.update_layout import fake_release, guard_module, point_current, run_guard

NOW = 1_800_000_000.0


def _layout(tmp: Path) -> tuple[Path, Path]:
    prefix = tmp / "opt"
    fake_release(prefix, "0.1.0")
    fake_release(prefix, "0.2.0")
    point_current(prefix, "0.2.0")
    return prefix, tmp / "state" / "state.json"


def _on_trial(state: Path, *, deadline: float, starts: int = 0, name: str = "restarting") -> None:
    state_file.save(
        state,
        UpdateState(
            state=State(name),
            version="0.2.0",
            previous="0.1.0",
            step="switched",
            at=NOW,
            trial_starts=starts,
            deadline=deadline,
        ),
    )


def test_a_release_that_never_commits_is_rolled_back_after_max_starts(tmp_path: Path) -> None:
    prefix, state = _layout(tmp_path)
    _on_trial(state, deadline=4e9)
    for n in (1, 2, 3):
        out = run_guard(state, prefix, max_starts=3)
        assert out.returncode == 0, out.stderr
        assert f"start {n} of 3" in out.stderr
        assert Layout(prefix).running_version() == "0.2.0"
    out = run_guard(state, prefix, max_starts=3)
    assert "rolled back from 0.2.0 to 0.1.0" in out.stderr
    assert Layout(prefix).running_version() == "0.1.0"
    s = state_file.load(state)
    assert s.state is State.ROLLED_BACK and "3 time(s) without committing" in (s.reason or "")
    assert (prefix / "releases" / "0.2.0").is_dir()  # kept for the technician to look at


def test_past_the_deadline_rolls_back_at_the_next_start(tmp_path: Path) -> None:
    prefix, state = _layout(tmp_path)
    _on_trial(state, deadline=1.0, name="checking", starts=1)
    run_guard(state, prefix)
    assert Layout(prefix).running_version() == "0.1.0"
    assert "deadline" in (state_file.load(state).reason or "")


def test_an_unhealthy_verdict_is_rolled_back_and_a_missing_previous_is_inconsistent(
    tmp_path: Path,
) -> None:
    prefix, state = _layout(tmp_path)
    s = UpdateState(
        state=State.ROLLING_BACK,
        version="0.2.0",
        previous="0.1.0",
        reason="health check: broker: not connected yet",
        at=NOW,
    )
    state_file.save(state, s)
    run_guard(state, prefix)
    assert Layout(prefix).running_version() == "0.1.0"
    assert state_file.load(state).state is State.ROLLED_BACK

    point_current(prefix, "0.2.0")
    (prefix / "releases" / "0.1.0" / ".aps-release").unlink()  # previous release damaged
    state_file.save(state, s)
    out = run_guard(state, prefix)
    assert out.returncode == 0  # never blocks the start
    assert Layout(prefix).running_version() == "0.2.0"
    after = state_file.load(state)
    assert after.state is State.INCONSISTENT and "not on disk" in (after.reason or "")


def test_a_committed_box_is_never_touched_on_reboot(tmp_path: Path) -> None:
    prefix, state = _layout(tmp_path)
    state_file.save(state, UpdateState(state=State.COMMITTED, version="0.2.0", previous="0.1.0"))
    before = state.read_bytes()
    for _ in range(5):  # five reboots
        assert run_guard(state, prefix).returncode == 0
    assert state.read_bytes() == before and Layout(prefix).running_version() == "0.2.0"


def test_no_state_or_garbage_state_changes_nothing(tmp_path: Path) -> None:
    prefix, state = _layout(tmp_path)
    assert run_guard(state, prefix).returncode == 0
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"\x00\xff{garbage")
    out = run_guard(state, prefix)
    assert out.returncode == 0 and "unreadable" in out.stderr
    assert Layout(prefix).running_version() == "0.2.0"


def test_a_switch_whose_state_was_never_written_counts_as_switched(tmp_path: Path) -> None:
    prefix, state = _layout(tmp_path)  # current already names 0.2.0
    state_file.save(state, UpdateState(state=State.SWITCHING, version="0.2.0", previous="0.1.0"))
    run_guard(state, prefix)
    s = state_file.load(state)
    assert s.state is State.CHECKING and s.trial_starts == 1 and s.deadline is not None


_states = st.sampled_from([s.value for s in State])
_versions = st.sampled_from(["0.1.0", "0.2.0", "0.3.0", None])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=_states,
    version=_versions,
    previous=_versions,
    starts=st.integers(0, 6),
    deadline=st.one_of(st.none(), st.floats(0, 4e9)),
    link=st.sampled_from(["0.1.0", "0.2.0"]),
)
def test_every_move_of_the_guard_is_in_the_machines_table(
    tmp_path: Path,
    name: str,
    version: str | None,
    previous: str | None,
    starts: int,
    deadline: float | None,
    link: str,
) -> None:
    guard = guard_module()
    case = tmp_path / f"c{os.urandom(4).hex()}"
    prefix, state = _layout(case)
    point_current(prefix, link)
    obj = {
        "v": 1,
        "state": name,
        "version": version,
        "previous": previous,
        "step": None,
        "reason": None,
        "at": NOW,
        "manifest_url": None,
        "trial_starts": starts,
        "deadline": deadline,
    }
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps(obj))
    guard.guard(str(state), str(prefix), 3, NOW)
    after = json.loads(state.read_text())
    UpdateState.from_object(after)  # still a state the agent reads
    if after == obj:
        return
    # one or two moves, each in the table: replay them through the table
    path = {
        ("switching", "restarted"): ["switched", "restarted"],
        ("switching", "expired"): ["switched", "expired"],
        ("restarting", "rolled-back"): ["expired", "rolled-back"],
        ("checking", "rolled-back"): ["expired", "rolled-back"],
        ("restarting", "rollback-failed"): ["expired", "rollback-failed"],
        ("checking", "rollback-failed"): ["expired", "rollback-failed"],
        ("switching", "rolled-back"): ["switched", "expired", "rolled-back"],
        ("switching", "rollback-failed"): ["switched", "expired", "rollback-failed"],
    }.get((name, after["step"]), [after["step"]])
    current = State(name)
    for event in path:
        current = TRANSITIONS[(current, Event(event))]
    assert current.value == after["state"]
    moved_link = Layout(prefix).running_version()
    if after["state"] == "rolled-back":
        assert moved_link == previous
    else:
        assert moved_link == link


def test_state_written_as_root_stays_readable_by_the_agent(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root: chown")
    state_dir = tmp_path / "update"
    state_dir.mkdir()
    os.chown(state_dir, 65534, 65534)  # the agent's account owns its state directory
    state_file.save(state_dir / "state.json", UpdateState(state=State.COMMITTED, version="0.2.0"))
    st = (state_dir / "state.json").stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    prefix, _ = _layout(tmp_path)
    _on_trial(state_dir / "state.json", deadline=4e9)
    run_guard(state_dir / "state.json", prefix)
    assert (state_dir / "state.json").stat().st_uid == 65534
