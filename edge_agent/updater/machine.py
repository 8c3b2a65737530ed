"""The update's state machine: one table of (state, event) -> state, no I/O.

Theory of operation
-------------------
An update moves a box from the release it runs (``previous``) to a new one (``version``)::

    idle/committed/rolled-back/failed --begin--> downloading --downloaded--> building
      --built--> switching --switched--> restarting --restarted--> checking
      --healthy--> committed
    restarting/checking --unhealthy or expired--> rolling-back
      --rolled-back--> rolled-back      (``current`` points at ``previous`` again)
      --rollback-failed--> inconsistent (a technician is needed: docs/updates.md)
    downloading/building/switching --error--> failed   (``current`` was never changed)

Up to ``switched`` nothing the running agent uses has changed: the download and the new
virtualenv live beside it, and the switch is one rename(2) of the ``current`` link, so an
error there means ``current`` still names ``previous`` (``failed``). After the switch only a
restart of the agent can tell whether the new release works: it starts on trial
(``restarting``; each start is ``restarted``, and the state becomes ``checking``), checks
itself within a deadline and writes ``healthy`` (commit: nothing to undo, a reboot keeps
it) or ``unhealthy``. A release that crashes before it can check anything never writes
either: the guard that runs before every start (scripts/aps-update-guard) counts the starts
and watches the deadline, and ``expired`` rolls it back. The guard performs every rollback
after the switch (it runs with the privilege to change ``current``; the agent does not).

``begin`` while ``downloading`` or ``building`` resumes an update cut short by a restart
(the partial downloads are kept and re-verified). A pair not in :data:`TRANSITIONS` raises
:class:`IllegalTransition` and leaves the state as it was; the driver logs it and keeps
the box as it is (never guesses). The state is persisted after every transition
(:mod:`edge_agent.updater.state_file`), so every step survives a crash or power loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class State(StrEnum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    BUILDING = "building"
    SWITCHING = "switching"
    RESTARTING = "restarting"
    CHECKING = "checking"
    COMMITTED = "committed"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    INCONSISTENT = "inconsistent"


class Event(StrEnum):
    BEGIN = "begin"
    DOWNLOADED = "downloaded"
    BUILT = "built"
    SWITCHED = "switched"
    RESTARTED = "restarted"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    EXPIRED = "expired"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_FAILED = "rollback-failed"
    ERROR = "error"
    CLEARED = "cleared"


S, E = State, Event
#: States in which no update is under way: a new one may begin.
SETTLED = frozenset({S.IDLE, S.COMMITTED, S.ROLLED_BACK, S.FAILED})
#: States in which the new release is on trial (``current`` names it, not committed).
ON_TRIAL = frozenset({S.RESTARTING, S.CHECKING})

TRANSITIONS: dict[tuple[State, Event], State] = {
    **{(s, E.BEGIN): S.DOWNLOADING for s in SETTLED},
    (S.DOWNLOADING, E.BEGIN): S.DOWNLOADING,
    (S.BUILDING, E.BEGIN): S.DOWNLOADING,
    (S.DOWNLOADING, E.DOWNLOADED): S.BUILDING,
    (S.BUILDING, E.BUILT): S.SWITCHING,
    (S.SWITCHING, E.SWITCHED): S.RESTARTING,
    (S.DOWNLOADING, E.ERROR): S.FAILED,
    (S.BUILDING, E.ERROR): S.FAILED,
    (S.SWITCHING, E.ERROR): S.FAILED,
    (S.RESTARTING, E.RESTARTED): S.CHECKING,
    (S.CHECKING, E.RESTARTED): S.CHECKING,
    (S.CHECKING, E.HEALTHY): S.COMMITTED,
    (S.RESTARTING, E.UNHEALTHY): S.ROLLING_BACK,
    (S.CHECKING, E.UNHEALTHY): S.ROLLING_BACK,
    (S.RESTARTING, E.EXPIRED): S.ROLLING_BACK,
    (S.CHECKING, E.EXPIRED): S.ROLLING_BACK,
    (S.ROLLING_BACK, E.ROLLED_BACK): S.ROLLED_BACK,
    (S.ROLLING_BACK, E.ROLLBACK_FAILED): S.INCONSISTENT,
    (S.INCONSISTENT, E.CLEARED): S.IDLE,
}


class IllegalTransition(Exception):
    """The caller fed an event the current state does not take (a bug or a stale file)."""

    def __init__(self, state: State, event: Event) -> None:
        super().__init__(f"update: event {event.value!r} is not taken in state {state.value!r}")
        self.state = state
        self.event = event


@dataclass(frozen=True, kw_only=True)
class UpdateState:
    """Where the update stands; what state.json holds (:mod:`.state_file`)."""

    state: State = S.IDLE
    version: str | None = None  # the release being installed or just settled
    previous: str | None = None  # the release it replaces: the rollback target
    step: str | None = None  # what the last transition was (its event)
    reason: str | None = None  # why it failed or rolled back; None when all went well
    at: float | None = None  # when the last transition happened (Unix time)
    manifest_url: str | None = None
    trial_starts: int = 0  # starts of the new release while on trial (the guard counts)
    deadline: float | None = None  # the trial must be committed by then (Unix time)

    def to_object(self) -> dict[str, Any]:
        return {
            "v": 1,
            "state": self.state.value,
            "version": self.version,
            "previous": self.previous,
            "step": self.step,
            "reason": self.reason,
            "at": self.at,
            "manifest_url": self.manifest_url,
            "trial_starts": self.trial_starts,
            "deadline": self.deadline,
        }

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> UpdateState:
        """From state.json's object; :class:`ValueError` naming the field for a bad one."""
        if obj.get("v") != 1:
            raise ValueError("v: expected 1")
        try:
            state = State(str(obj.get("state")))
        except ValueError:
            raise ValueError(f"state: {obj.get('state')!r} is not an update state") from None
        texts: dict[str, str | None] = {}
        for name in ("version", "previous", "step", "reason", "manifest_url"):
            value = obj.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name}: expected text or null")
            texts[name] = value
        numbers: dict[str, float | None] = {}
        for name in ("at", "deadline"):
            value = obj.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"{name}: expected a number or null")
            numbers[name] = None if value is None else float(value)
        starts = obj.get("trial_starts", 0)
        if not isinstance(starts, int) or isinstance(starts, bool) or starts < 0:
            raise ValueError("trial_starts: expected a whole number >= 0")
        return cls(state=state, trial_starts=starts, **texts, **numbers)  # type: ignore[arg-type]

    def health(self) -> dict[str, Any]:
        """The heartbeat's ``update`` (sync/schemas.py UpdateHealth). ``rolling-back`` lasts
        one guard run and is reported as ``checking`` with that step."""
        shown = S.CHECKING if self.state is S.ROLLING_BACK else self.state
        out: dict[str, Any] = {"state": shown.value}
        if self.version is not None:
            out["version"] = self.version
        if self.previous is not None:
            out["previous"] = self.previous
        if self.state is S.ROLLING_BACK:
            out["step"] = "rolling-back"
        elif self.step is not None:
            out["step"] = self.step
        if self.reason is not None:
            out["reason"] = self.reason[:200]
        if self.at is not None:
            out["at"] = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return out


def advance(
    current: UpdateState,
    event: Event,
    *,
    now: float | None = None,
    version: str | None = None,
    previous: str | None = None,
    reason: str | None = None,
    manifest_url: str | None = None,
    deadline: float | None = None,
) -> UpdateState:
    """The state after ``event`` (pure). ``begin`` takes ``version``, ``previous`` and
    ``manifest_url``; ``switched`` takes the trial's ``deadline``; failures take a
    ``reason``. Raises :class:`IllegalTransition` for a pair not in the table."""
    target = TRANSITIONS.get((current.state, event))
    if target is None:
        raise IllegalTransition(current.state, event)
    at = time.time() if now is None else now
    if event is E.BEGIN:
        if not version or not previous:
            raise ValueError("begin needs the new version and the running (previous) one")
        resumed = current.state in (S.DOWNLOADING, S.BUILDING) and current.version == version
        if current.state in (S.DOWNLOADING, S.BUILDING) and not resumed:
            raise IllegalTransition(current.state, event)  # another update is half-way
        return UpdateState(
            state=target,
            version=version,
            previous=current.previous if resumed else previous,
            step=event.value,
            at=at,
            manifest_url=manifest_url,
        )
    if event is E.CLEARED:
        return UpdateState(state=target, step=event.value, at=at, previous=current.previous)
    changes: dict[str, Any] = {"state": target, "step": event.value, "at": at}
    if event is E.SWITCHED:
        changes["deadline"] = deadline
        changes["trial_starts"] = 0
    if event is E.RESTARTED:
        changes["trial_starts"] = current.trial_starts + 1
    if event in (E.ERROR, E.UNHEALTHY, E.EXPIRED, E.ROLLBACK_FAILED):
        changes["reason"] = reason or event.value
    if event is E.HEALTHY:
        changes["reason"] = None
        changes["deadline"] = None
    return replace(current, **changes)
