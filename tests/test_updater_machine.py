"""The update state machine: its table, every (state, event) pair, and a stateful model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from edge_agent.updater.machine import (
    ON_TRIAL,
    SETTLED,
    TRANSITIONS,
    Event,
    IllegalTransition,
    State,
    UpdateState,
    advance,
)
from sync.schemas import UpdateHealth

NOW = 1_800_000_000.0


def _at(state: State, **kw: object) -> UpdateState:
    base: dict[str, object] = {"state": state, "version": "0.2.0", "previous": "0.1.0"}
    base.update(kw)
    return UpdateState(**base)  # type: ignore[arg-type]


def _feed(s: UpdateState, event: Event) -> UpdateState:
    return advance(s, event, now=NOW, version="0.2.0", previous="0.1.0", reason="why")


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_every_pair_is_in_the_table_or_refused_leaving_the_state(
    state: State, event: Event
) -> None:
    before = _at(state)
    if (state, event) in TRANSITIONS:
        after = _feed(before, event)
        assert after.state is TRANSITIONS[(state, event)]
        assert after.step == event.value
    else:
        with pytest.raises(IllegalTransition) as err:
            _feed(before, event)
        assert err.value.state is state and err.value.event is event
        assert before.state is state  # frozen: nothing moved


def test_a_switch_happens_only_after_a_build_and_a_commit_only_after_a_trial() -> None:
    into_switching = {s for (s, e), t in TRANSITIONS.items() if t is State.SWITCHING}
    assert into_switching == {State.BUILDING}
    into_committed = {(s, e) for (s, e), t in TRANSITIONS.items() if t is State.COMMITTED}
    assert into_committed == {(State.CHECKING, Event.HEALTHY)}
    # before the switch a failure is "failed" (nothing to undo); after it, a rollback
    for (s, e), t in TRANSITIONS.items():
        if e in (Event.ERROR,):
            assert s not in ON_TRIAL and t is State.FAILED
        if s in ON_TRIAL and e in (Event.UNHEALTHY, Event.EXPIRED):
            assert t is State.ROLLING_BACK


def test_a_half_way_update_resumes_the_same_version_but_refuses_another() -> None:
    s = _at(State.DOWNLOADING)
    assert advance(s, Event.BEGIN, now=NOW, version="0.2.0", previous="0.1.0").previous == "0.1.0"
    with pytest.raises(IllegalTransition):
        advance(s, Event.BEGIN, now=NOW, version="0.3.0", previous="0.1.0")


def test_trial_starts_count_and_the_switch_resets_them() -> None:
    s = advance(_at(State.SWITCHING), Event.SWITCHED, now=NOW, deadline=NOW + 300)
    assert (s.state, s.trial_starts, s.deadline) == (State.RESTARTING, 0, NOW + 300)
    for n in (1, 2, 3):
        s = advance(s, Event.RESTARTED, now=NOW)
        assert s.trial_starts == n and s.state is State.CHECKING


@given(st.sampled_from(list(State)), st.text(max_size=300))
def test_health_is_always_a_valid_heartbeat_update(state: State, reason: str) -> None:
    from pydantic import TypeAdapter

    h = _at(state, reason=reason or None, at=NOW, step="x").health()
    TypeAdapter(UpdateHealth).validate_python(h)
    assert h["state"] != "rolling-back"


@given(
    st.dictionaries(
        st.sampled_from(["v", "state", "version", "at", "trial_starts", "deadline", "reason"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=10),
            st.booleans(),
            st.floats(allow_nan=False),
        ),
    )
)
def test_from_object_takes_its_own_output_and_refuses_the_rest_by_field(obj: dict) -> None:
    try:
        s = UpdateState.from_object(obj)
    except ValueError as exc:
        assert str(exc).split(":")[0] in obj or str(exc).startswith(("v:", "state:"))
        return
    assert UpdateState.from_object(s.to_object()) == s


class UpdateModel(RuleBasedStateMachine):
    """The machine driven at random next to a model of what must hold for the box:
    ``current`` changes only on switch and rollback; a committed version was checked."""

    def __init__(self) -> None:
        super().__init__()
        self.s = UpdateState(state=State.COMMITTED, version="0.1.0", previous=None)
        self.current = "0.1.0"  # what the link names, in the model
        self.checked_healthy = False
        self.next_version = 2

    def _try(self, event: Event, **kw: object) -> bool:
        try:
            self.s = advance(self.s, event, now=NOW, **kw)  # type: ignore[arg-type]
        except IllegalTransition:
            return False
        return True

    @rule()
    def begin(self) -> None:
        version = f"0.{self.next_version}.0"
        if self.s.state in (State.DOWNLOADING, State.BUILDING):
            version = self.s.version or version
        if self._try(Event.BEGIN, version=version, previous=self.current, manifest_url="u"):
            self.next_version += 1
            self.checked_healthy = False

    @rule(
        event=st.sampled_from(
            [
                Event.DOWNLOADED,
                Event.BUILT,
                Event.ERROR,
                Event.RESTARTED,
                Event.UNHEALTHY,
                Event.EXPIRED,
                Event.CLEARED,
            ]
        )
    )
    def step(self, event: Event) -> None:
        self._try(event, reason="r")

    @rule()
    def switch(self) -> None:
        if self._try(Event.SWITCHED, deadline=NOW + 300):
            self.current = self.s.version or ""

    @rule()
    def healthy(self) -> None:
        was = self.s.state
        if self._try(Event.HEALTHY):
            assert was is State.CHECKING
            self.checked_healthy = True

    @rule(ok=st.booleans())
    def guard_rollback(self, ok: bool) -> None:
        moved = self._try(Event.ROLLED_BACK if ok else Event.ROLLBACK_FAILED, reason="r")
        if moved and ok:
            self.current = self.s.previous or ""

    @invariant()
    def consistent(self) -> None:
        s = self.s
        if s.state is State.COMMITTED and s.version != "0.1.0":
            assert self.checked_healthy and self.current == s.version
        if s.state in ON_TRIAL:
            assert self.current == s.version  # on trial: the link names the new release
        if s.state in (State.DOWNLOADING, State.BUILDING, State.SWITCHING, State.FAILED):
            assert self.current == s.previous  # nothing switched yet (or ever)
        if s.state is State.ROLLED_BACK:
            assert self.current == s.previous
        if s.state in SETTLED - {State.IDLE} or s.state is State.INCONSISTENT:
            assert s.deadline is None or s.state is not State.COMMITTED


UpdateModel.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
TestUpdateModel = UpdateModel.TestCase
