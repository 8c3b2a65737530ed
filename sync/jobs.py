"""Remote jobs: the wire contract both sides share, and the one transition table.

Theory of operation
-------------------
An admin asks central for a job on a kiosk (``aps-central job create``).
Central stores it ``queued`` with a server-side deadline and appends a **job
order** to that kiosk's downlink log (audience ``kiosk:<id>``, item kind
``job``, key = the job id): the kiosk learns it on its next state request
(on connect and after a nudge), exactly like every other downlink item, so a
kiosk offline for a day still gets it, and a retained message plays no part.

The kiosk answers with **job reports**: outbox records of kind ``job``
(durable, signed, acked after central's commit like every record), one per
transition it makes (``in-progress`` when it starts, with an optional
``step``; then ``succeeded`` with a result, ``failed`` with an error,
``rejected`` when it will not run it, ``timed-out`` when it saw the deadline
pass before it could start). Central projects them into its jobs table.

The states and every legal move are in :data:`TRANSITIONS`; both central's
projection and the kiosk runner go through :func:`next_state`, which raises
:class:`IllegalTransition` for any other (state, event) pair. Terminal states
never move again: a report arriving for a job already ``cancelled`` or
``timed-out`` at central is kept as an event and changes nothing.

Who may cause which event: ``cancel`` comes from central (an admin, only
before the job has started), ``expire`` from central's clock (the deadline is
evaluated at read time and by central's service loop), every other event from
the kiosk's reports. A kiosk can report only on its own jobs (central
compares the record's verified sender with the job's kiosk).

Nothing here does I/O: the tests try every (state, event) pair.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

from sync import SyncError

# -- limits (docs/protocol.md, "Jobs") ------------------------------------------------
#: Job kinds the fleet knows. ``update`` is registered by the updates helper.
JOB_KINDS = (
    "print-test-slip",
    "resync-catalogue",
    "selftest",
    "collect-diagnostics",
    "restart-agent",
    "purge-synced",
    "update",
)
KIND_RE = re.compile(r"\A[a-z][a-z0-9-]{0,31}\Z")
ARG_KEY_RE = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")
MAX_ARGS = 16
ARG_VALUE_CHARS = 200
STEP_CHARS = 64
DETAIL_CHARS = 500
ERROR_CHARS = 500
RESULT_KEYS = 32
RESULT_TEXT_CHARS = 2000
MIN_DEADLINE_S = 30
MAX_DEADLINE_S = 7 * 24 * 3600
DEFAULT_DEADLINE_S = 15 * 60


class JobError(SyncError, ValueError):
    """A job order, report or argument breaks the contract (the message names the field)."""


class IllegalTransition(JobError):
    """``event`` is not allowed in ``state`` (see :data:`TRANSITIONS`)."""

    def __init__(self, state: JobState, event: JobEvent) -> None:
        super().__init__(f"job event {event.value!r} is not allowed in state {state.value!r}")
        self.state = state
        self.event = event


class JobState(enum.StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    TIMED_OUT = "timed-out"
    CANCELLED = "cancelled"


class JobEvent(enum.StrEnum):
    START = "start"  # kiosk: in-progress (first report)
    STEP = "step"  # kiosk: in-progress again, a later step
    SUCCEED = "succeed"
    FAIL = "fail"
    REJECT = "reject"  # kiosk will not run it (unknown kind, bad args, deadline seen)
    KIOSK_TIMEOUT = "kiosk-timeout"  # kiosk saw the deadline pass before it could start
    EXPIRE = "expire"  # central: the deadline passed
    CANCEL = "cancel"  # central: an admin cancelled it before it started


TERMINAL = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.REJECTED,
        JobState.TIMED_OUT,
        JobState.CANCELLED,
    }
)
ACTIVE = frozenset({JobState.QUEUED, JobState.IN_PROGRESS})

_Q, _P = JobState.QUEUED, JobState.IN_PROGRESS
#: Rule 1: every legal (state, event) -> state. Anything else raises.
TRANSITIONS: dict[tuple[JobState, JobEvent], JobState] = {
    (_Q, JobEvent.START): _P,
    (_Q, JobEvent.SUCCEED): JobState.SUCCEEDED,  # a report of in-progress may be overtaken
    (_Q, JobEvent.FAIL): JobState.FAILED,
    (_Q, JobEvent.REJECT): JobState.REJECTED,
    (_Q, JobEvent.KIOSK_TIMEOUT): JobState.TIMED_OUT,
    (_Q, JobEvent.EXPIRE): JobState.TIMED_OUT,
    (_Q, JobEvent.CANCEL): JobState.CANCELLED,
    (_P, JobEvent.STEP): _P,
    (_P, JobEvent.START): _P,  # a start reported again (a retry) changes nothing
    (_P, JobEvent.SUCCEED): JobState.SUCCEEDED,
    (_P, JobEvent.FAIL): JobState.FAILED,
    (_P, JobEvent.REJECT): JobState.REJECTED,
    (_P, JobEvent.KIOSK_TIMEOUT): JobState.TIMED_OUT,
    (_P, JobEvent.EXPIRE): JobState.TIMED_OUT,
}

#: The state a kiosk's report names -> the event it is.
REPORT_EVENTS: dict[str, JobEvent] = {
    "in-progress": JobEvent.STEP,
    "succeeded": JobEvent.SUCCEED,
    "failed": JobEvent.FAIL,
    "rejected": JobEvent.REJECT,
    "timed-out": JobEvent.KIOSK_TIMEOUT,
}


def next_state(state: JobState, event: JobEvent) -> JobState:
    """The state after ``event``; :class:`IllegalTransition` if the table has no such move."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def report_event(state: JobState, reported: str) -> JobEvent:
    """The event a kiosk report of ``reported`` is, in ``state`` (the first step starts it)."""
    event = REPORT_EVENTS[reported]
    if event is JobEvent.STEP and state is JobState.QUEUED:
        return JobEvent.START
    return event


def can_cancel(state: JobState) -> bool:
    return (state, JobEvent.CANCEL) in TRANSITIONS


# -- deadlines -----------------------------------------------------------------------------
_DURATION_RE = re.compile(r"\A([1-9][0-9]{0,6})([smhd])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_deadline(text: str) -> int:
    """``"10m"`` -> 600 seconds, bounded to 30 s .. 7 d (the message names the limit)."""
    match = _DURATION_RE.match(text.strip())
    if match is None:
        raise JobError(
            f"deadline {text!r}: expected a number and a unit s, m, h or d, e.g. 10m or 2h"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not MIN_DEADLINE_S <= seconds <= MAX_DEADLINE_S:
        raise JobError(
            f"deadline {text!r} is {seconds} s: must be {MIN_DEADLINE_S} s to "
            f"{MAX_DEADLINE_S // 86400} days"
        )
    return seconds


def check_args(kind: str, args: dict[str, Any]) -> dict[str, str]:
    """A job's arguments: at most 16 short text values under lower-case names."""
    if not KIND_RE.match(kind):
        raise JobError(f"kind {kind!r}: expected a kind such as print-test-slip")
    if len(args) > MAX_ARGS:
        raise JobError(f"args: {len(args)} arguments, at most {MAX_ARGS}")
    out: dict[str, str] = {}
    for key, value in args.items():
        if not isinstance(key, str) or not ARG_KEY_RE.match(key):
            raise JobError(f"args.{key}: expected a name of a-z, 0-9 and _ (at most 32)")
        if not isinstance(value, str) or len(value) > ARG_VALUE_CHARS:
            raise JobError(f"args.{key}: expected text of at most {ARG_VALUE_CHARS} characters")
        out[key] = value
    return out


# -- the wire: job order (downlink item ``job``) and job report (record ``job``) ------------
_strict = with_config(ConfigDict(strict=True, extra="ignore"))
JobId = Annotated[
    str, Field(min_length=26, max_length=26, pattern=r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
]
KindText = Annotated[str, Field(max_length=32, pattern=r"^[a-z][a-z0-9-]{0,31}$")]
ArgKey = Annotated[str, Field(max_length=32, pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ArgValue = Annotated[str, Field(max_length=ARG_VALUE_CHARS)]
WhenText = Annotated[str, Field(max_length=40)]
ResultValue = (
    Annotated[str, Field(max_length=RESULT_TEXT_CHARS)]
    | Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
    | bool
    | None
)


@_strict
class JobOrderBody(TypedDict):
    """Downlink item ``job`` (key = ``id``). ``cancel: true`` withdraws it before it starts."""

    id: JobId
    kind: KindText
    args: Annotated[dict[ArgKey, ArgValue], Field(max_length=MAX_ARGS)]
    deadline: WhenText  # ISO 8601 with offset: after it, the kiosk no longer starts the job
    cancel: NotRequired[bool]


@_strict
class JobReportBody(TypedDict):
    """Record ``job``: one transition of one job, as the kiosk made it."""

    job: JobId
    kind: KindText
    state: Literal["in-progress", "succeeded", "failed", "rejected", "timed-out"]
    step: NotRequired[Annotated[str, Field(max_length=STEP_CHARS)] | None]
    detail: NotRequired[Annotated[str, Field(max_length=DETAIL_CHARS)] | None]
    error: NotRequired[Annotated[str, Field(max_length=ERROR_CHARS)] | None]
    result: NotRequired[
        Annotated[
            dict[Annotated[str, Field(max_length=64)], ResultValue], Field(max_length=RESULT_KEYS)
        ]
        | None
    ]


JOB_ORDER = TypeAdapter(JobOrderBody)
JOB_REPORT = TypeAdapter(JobReportBody)


def order_body(
    job_id: str, kind: str, args: dict[str, str], deadline: str, *, cancel: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": job_id, "kind": kind, "args": dict(args), "deadline": deadline}
    if cancel:
        body["cancel"] = True
    return body


def check_order(body: dict[str, Any]) -> None:
    """The kiosk's validator of downlink ``job`` items (pydantic errors name the field)."""
    JOB_ORDER.validate_python(body)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (an error message from a handler can be long)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
