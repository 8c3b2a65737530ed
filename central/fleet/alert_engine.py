"""The alert engine's evaluation step: what is observed now -> what to change. No I/O.

Theory of operation
-------------------
Alerts are keyed by (kiosk, kind): at most one open alert per key, ever. Each key is in one
*phase*, read from what the database holds:

- ``idle``: no alert open, no candidate;
- ``candidate``: the cause was seen (since ``Candidate.since``) but not yet for the rule's
  ``open_after_s``;
- ``active``: an alert is open (or acknowledged) and its cause is present;
- ``fading``: an alert is open (or acknowledged) and its cause has been gone since
  ``cause_gone_at``, not yet for the rule's ``hold_down_s``.

Each round, every key gets one *cause*: ``present`` (an :class:`Observation` for it),
``absent``, or ``disabled`` (its rule is off for the kiosk's office). :data:`TRANSITIONS`
maps every (phase, cause) pair to the step that decides the actions; there is no other
path, and a pair missing from the table raises :class:`EngineError` (a bug, never data).

Guarantees (tests/test_alert_engine_stateful.py checks them against a model):

- no flapping: a cause that returns while ``fading`` keeps the same alert (``Seen``); an
  alert opens only after its cause has been present for ``open_after_s`` without a gap;
- clearing only after ``hold_down_s`` of absence (or at once when the rule is disabled);
- an acknowledged alert stays acknowledged until it clears (the ack never reopens it; a new
  occurrence after the clear is a new alert);
- re-notification every ``renotify_min`` and one escalation after ``escalate_after_min``,
  only while the cause is present and nobody acknowledged.

:func:`evaluate` returns a list of frozen actions; :mod:`central.fleet.alert_watch` applies
them in one transaction and notifies after the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from central.fleet.alert_rules import SEVERITIES, Rule

__all__ = [
    "TRANSITIONS",
    "Candidate",
    "CauseGone",
    "Clear",
    "DropCandidate",
    "EngineError",
    "Escalate",
    "Observation",
    "Open",
    "OpenAlert",
    "Renotify",
    "Seen",
    "StartCandidate",
    "escalated_severity",
    "evaluate",
]

Key = tuple[str, str]  # (kiosk, kind)
Rules = Callable[[str | None, str], Rule]


class EngineError(RuntimeError):
    """The engine met a (phase, cause) pair its table lacks: a bug in this module."""


@dataclass(frozen=True, kw_only=True)
class Observation:
    """A cause present now: kiosk ``kiosk`` has the problem ``kind``."""

    kiosk: str
    kind: str
    office: str | None = None
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Candidate:
    kiosk: str
    kind: str
    office: str | None
    since: float
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class OpenAlert:
    """The engine's view of an alert that is open or acknowledged."""

    id: int
    kiosk: str
    kind: str
    office: str | None
    severity: str
    state: str  # open | acknowledged
    opened_at: float
    cause_gone_at: float | None = None
    notified_at: float | None = None
    escalated_at: float | None = None
    detail: str = ""
    notify_due: str | None = None  # a notification waiting to be (re)sent

    def __post_init__(self) -> None:
        if self.state not in ("open", "acknowledged"):
            raise ValueError(f"OpenAlert.state: {self.state!r} is not open or acknowledged")


# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StartCandidate:
    kiosk: str
    kind: str
    office: str | None
    since: float
    detail: str


@dataclass(frozen=True, kw_only=True)
class DropCandidate:
    kiosk: str
    kind: str


@dataclass(frozen=True, kw_only=True)
class Open:
    kiosk: str
    kind: str
    office: str | None
    severity: str
    detail: str
    at: float


@dataclass(frozen=True, kw_only=True)
class Seen:
    """The cause is present (still, or again): refresh ``last_seen_at``, drop ``cause_gone_at``."""

    alert_id: int
    detail: str
    at: float
    came_back: bool = False


@dataclass(frozen=True, kw_only=True)
class CauseGone:
    alert_id: int
    at: float


@dataclass(frozen=True, kw_only=True)
class Clear:
    alert_id: int
    at: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class Renotify:
    alert_id: int
    at: float


@dataclass(frozen=True, kw_only=True)
class Escalate:
    alert_id: int
    at: float
    severity: str


Action = StartCandidate | DropCandidate | Open | Seen | CauseGone | Clear | Renotify | Escalate


class Phase(StrEnum):
    IDLE = "idle"
    CANDIDATE = "candidate"
    ACTIVE = "active"
    FADING = "fading"


class Cause(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    DISABLED = "disabled"


@dataclass(frozen=True)
class _Key:
    """Everything one step needs about one (kiosk, kind)."""

    kiosk: str
    kind: str
    office: str | None
    rule: Rule
    now: float
    seen: Observation | None
    candidate: Candidate | None
    alert: OpenAlert | None


def escalated_severity(severity: str) -> str:
    """One step up (info -> warning -> critical); critical stays critical."""
    i = SEVERITIES.index(severity) if severity in SEVERITIES else 0
    return SEVERITIES[min(i + 1, len(SEVERITIES) - 1)]


def _detail(k: _Key) -> str:
    return k.seen.detail if k.seen is not None else ""


def _open_or_wait(k: _Key, since: float) -> list[Action]:
    if k.now - since >= k.rule.open_after_s:
        out: list[Action] = []
        if k.candidate is not None:
            out.append(DropCandidate(kiosk=k.kiosk, kind=k.kind))
        out.append(
            Open(
                kiosk=k.kiosk,
                kind=k.kind,
                office=k.office,
                severity=k.rule.severity,
                detail=_detail(k),
                at=k.now,
            )
        )
        return out
    if k.candidate is None:
        return [
            StartCandidate(
                kiosk=k.kiosk, kind=k.kind, office=k.office, since=k.now, detail=_detail(k)
            )
        ]
    return []


def _idle_present(k: _Key) -> list[Action]:
    return _open_or_wait(k, k.now)


def _candidate_present(k: _Key) -> list[Action]:
    assert k.candidate is not None  # the phase says so
    return _open_or_wait(k, k.candidate.since)


def _drop(k: _Key) -> list[Action]:
    return [DropCandidate(kiosk=k.kiosk, kind=k.kind)]


def _nothing(k: _Key) -> list[Action]:
    return []


def _timers(k: _Key, a: OpenAlert) -> list[Action]:
    if a.state != "open":
        return []
    r = k.rule
    if (
        r.escalate_after_min > 0
        and a.escalated_at is None
        and k.now - a.opened_at >= r.escalate_after_min * 60
    ):
        return [Escalate(alert_id=a.id, at=k.now, severity=escalated_severity(a.severity))]
    if (
        r.renotify_min > 0
        and a.notified_at is not None
        and a.notify_due is None
        and k.now - a.notified_at >= r.renotify_min * 60
    ):
        return [Renotify(alert_id=a.id, at=k.now)]
    return []


def _active_present(k: _Key) -> list[Action]:
    assert k.alert is not None
    return [Seen(alert_id=k.alert.id, detail=_detail(k), at=k.now), *_timers(k, k.alert)]


def _fading_present(k: _Key) -> list[Action]:
    assert k.alert is not None
    return [Seen(alert_id=k.alert.id, detail=_detail(k), at=k.now, came_back=True)]


def _active_absent(k: _Key) -> list[Action]:
    assert k.alert is not None
    if k.rule.hold_down_s <= 0:
        return [Clear(alert_id=k.alert.id, at=k.now, reason="cause gone")]
    return [CauseGone(alert_id=k.alert.id, at=k.now)]


def _fading_absent(k: _Key) -> list[Action]:
    a = k.alert
    assert a is not None and a.cause_gone_at is not None
    if k.now - a.cause_gone_at >= k.rule.hold_down_s:
        return [Clear(alert_id=a.id, at=k.now, reason="cause gone")]
    return []


def _disabled(k: _Key) -> list[Action]:
    assert k.alert is not None
    return [Clear(alert_id=k.alert.id, at=k.now, reason="rule disabled")]


#: Rule 1 of the engine: every (phase, cause) pair and its step.
TRANSITIONS: Mapping[tuple[Phase, Cause], Callable[[_Key], list[Action]]] = {
    (Phase.IDLE, Cause.PRESENT): _idle_present,
    (Phase.IDLE, Cause.ABSENT): _nothing,
    (Phase.IDLE, Cause.DISABLED): _nothing,
    (Phase.CANDIDATE, Cause.PRESENT): _candidate_present,
    (Phase.CANDIDATE, Cause.ABSENT): _drop,
    (Phase.CANDIDATE, Cause.DISABLED): _drop,
    (Phase.ACTIVE, Cause.PRESENT): _active_present,
    (Phase.ACTIVE, Cause.ABSENT): _active_absent,
    (Phase.ACTIVE, Cause.DISABLED): _disabled,
    (Phase.FADING, Cause.PRESENT): _fading_present,
    (Phase.FADING, Cause.ABSENT): _fading_absent,
    (Phase.FADING, Cause.DISABLED): _disabled,
}


def _phase(candidate: Candidate | None, alert: OpenAlert | None) -> Phase:
    if alert is not None:
        return Phase.ACTIVE if alert.cause_gone_at is None else Phase.FADING
    return Phase.IDLE if candidate is None else Phase.CANDIDATE


def evaluate(
    observations: Iterable[Observation],
    open_alerts: Iterable[OpenAlert],
    rules: Rules,
    now: float,
    *,
    candidates: Iterable[Candidate] = (),
) -> list[Action]:
    """The actions that bring the alerts in line with ``observations`` at ``now``.

    ``rules(office, kind)`` gives the rule in force. Pure: the same inputs give the same
    actions, in a stable order (by kiosk, then kind).
    """
    seen: dict[Key, Observation] = {}
    for o in observations:
        seen.setdefault((o.kiosk, o.kind), o)
    alerts: dict[Key, OpenAlert] = {}
    for a in open_alerts:
        if (a.kiosk, a.kind) in alerts:
            raise EngineError(f"two open alerts for kiosk {a.kiosk} kind {a.kind}")
        alerts[(a.kiosk, a.kind)] = a
    waiting = {(c.kiosk, c.kind): c for c in candidates}
    actions: list[Action] = []
    for key in sorted(set(seen) | set(alerts) | set(waiting)):
        obs, alert, cand = seen.get(key), alerts.get(key), waiting.get(key)
        if alert is not None and cand is not None:  # stale row: an alert supersedes it
            actions.append(DropCandidate(kiosk=key[0], kind=key[1]))
            cand = None
        office = (
            obs.office
            if obs is not None and obs.office is not None
            else alert.office
            if alert is not None
            else cand.office
            if cand is not None
            else None
        )
        rule = rules(office, key[1])
        cause = Cause.DISABLED if not rule.enabled else Cause.PRESENT if obs else Cause.ABSENT
        phase = _phase(cand, alert)
        step = TRANSITIONS.get((phase, cause))
        if step is None:
            raise EngineError(f"no transition for ({phase}, {cause})")
        actions.extend(step(_Key(key[0], key[1], office, rule, now, obs, cand, alert)))
    return actions
