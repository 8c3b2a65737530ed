"""A dossier's lifecycle as data: states, allowed transitions, labels, portal codes.

Shared by central (which validates every status change the back office
pushes) and the kiosk (which shows the label of the state it was told).

Theory of operation
-------------------
The states follow the national public-service portal's lifecycle of a
dossier (hồ sơ): the citizen *submits* it (at the kiosk), the one-stop desk
*receives* it (tiếp nhận), the specialist *processes* it, possibly asking for
*additional papers* (yêu cầu bổ sung), then the *result is ready* and is
finally *returned* (trả kết quả) to the citizen. It may be *rejected* (từ chối
giải quyết) or *withdrawn* (the citizen takes it back, rút hồ sơ) while it is
still open. Being *paid* is a separate flag, not a state: a fee can be paid
before reception or after the result is ready.

:data:`TRANSITIONS` is the whole rule, one row per state, and
:func:`check_transition` the only judge: nothing else decides what may follow
what. A request to move to the state the dossier is already in is not a
transition (a retried push of the same status is harmless) and is accepted
by :func:`check_transition`; callers decide whether it changes anything.

The portal's numeric status codes are configuration, not code: only three are
published (1 submitted, 2 received, 10 result returned), so the rest are read
from a data file (:data:`DEFAULT_PORTAL_CODES_FILE`, or one an operator names)
that :func:`load_portal_codes` validates.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

State = Literal[
    "submitted",
    "received",
    "processing",
    "additional-papers",
    "result-ready",
    "result-returned",
    "rejected",
    "withdrawn",
]
STATES: Final[tuple[State, ...]] = get_args(State)
INITIAL: Final[State] = "submitted"

# What may follow each state (docs/backoffice.md, "Dossier states", says why).
TRANSITIONS: Final[Mapping[State, frozenset[State]]] = {
    # Submitted at a kiosk: the desk receives it, asks for papers before
    # receiving it, refuses it, or the citizen withdraws it.
    "submitted": frozenset({"received", "additional-papers", "rejected", "withdrawn"}),
    # Received: processing starts; a same-day procedure may have its result at once.
    "received": frozenset(
        {"processing", "additional-papers", "result-ready", "rejected", "withdrawn"}
    ),
    "processing": frozenset({"additional-papers", "result-ready", "rejected", "withdrawn"}),
    # Papers brought: back to reception (if asked before it) or to processing.
    "additional-papers": frozenset({"received", "processing", "rejected", "withdrawn"}),
    # A ready result can only be handed over: no way back, no withdrawal.
    "result-ready": frozenset({"result-returned"}),
    # Terminal states.
    "result-returned": frozenset(),
    "rejected": frozenset(),
    "withdrawn": frozenset(),
}

# What the kiosk's screen shows (Vietnamese, as the portal words them).
LABELS_VI: Final[Mapping[State, str]] = {
    "submitted": "Đã nộp, chờ tiếp nhận",
    "received": "Đã tiếp nhận",
    "processing": "Đang giải quyết",
    "additional-papers": "Cần bổ sung giấy tờ",
    "result-ready": "Đã có kết quả, mời đến nhận",
    "result-returned": "Đã trả kết quả",
    "rejected": "Từ chối giải quyết",
    "withdrawn": "Đã rút hồ sơ",
}
PAID_LABEL_VI: Final = "Đã thanh toán"
UNPAID_LABEL_VI: Final = "Chưa thanh toán"

DEFAULT_PORTAL_CODES_FILE: Final = Path(__file__).with_name("portal_status_codes.toml")
MAX_PORTAL_CODE: Final = 9999


class IllegalTransition(ValueError):
    """A requested state may not follow the current one (the table says which may)."""

    def __init__(self, code: str, current: State, wanted: str) -> None:
        self.code = code
        self.current = current
        self.wanted = wanted
        self.allowed = sorted(TRANSITIONS[current])
        nxt = ", ".join(self.allowed) if self.allowed else "none: it is final"
        super().__init__(
            f"dossier {code}: cannot go from {current!r} to {wanted!r}; allowed next states: {nxt}"
        )


class UnknownState(ValueError):
    def __init__(self, wanted: str) -> None:
        self.wanted = wanted
        super().__init__(f"unknown dossier state {wanted!r}; expected one of: {', '.join(STATES)}")


def parse_state(value: str) -> State:
    """``value`` as a :data:`State`, or :class:`UnknownState` naming the choices."""
    for state in STATES:
        if value == state:
            return state
    raise UnknownState(value)


def allowed_next(state: State) -> frozenset[State]:
    return TRANSITIONS[state]


def is_final(state: State) -> bool:
    return not TRANSITIONS[state]


def check_transition(code: str, current: State, wanted: str) -> State:
    """The new state if ``current -> wanted`` is allowed (or the same state), else raise.

    Raises :class:`UnknownState` for a name outside :data:`STATES` and
    :class:`IllegalTransition` (with the allowed next states) otherwise.
    """
    new = parse_state(wanted)
    if new != current and new not in TRANSITIONS[current]:
        raise IllegalTransition(code, current, new)
    return new


def label(state: State) -> str:
    return LABELS_VI[state]


# -- the portal's status codes (configuration) --------------------------------------------


class PortalCodesError(ValueError):
    """The portal status code file is unreadable or breaks a rule (the message says which)."""


@dataclass(frozen=True)
class PortalCodes:
    """Our state <-> the portal's status code, for the states whose code is known."""

    by_state: Mapping[State, int] = field(default_factory=dict)
    source: str = "built-in"

    def code_of(self, state: State) -> int | None:
        return self.by_state.get(state)

    def state_of(self, code: int) -> State:
        for state, known in self.by_state.items():
            if known == code:
                return state
        listed = ", ".join(f"{c} {s}" for s, c in sorted(self.by_state.items(), key=lambda i: i[1]))
        raise PortalCodesError(
            f"portal status code {code} is not in {self.source} (known: {listed}); "
            f"add it under [codes] there, or send the state by name"
        )


def parse_portal_codes(data: Mapping[str, object], source: str) -> PortalCodes:
    """Validate a decoded portal code table: ``{"codes": {state: int}}``."""
    unknown_keys = sorted(set(data) - {"codes"})
    if unknown_keys:
        raise PortalCodesError(f"{source}: unknown key(s) {unknown_keys}; only [codes] is read")
    codes = data.get("codes")
    if not isinstance(codes, Mapping):
        raise PortalCodesError(f"{source}: missing table [codes] (state = portal code)")
    by_state: dict[State, int] = {}
    seen: dict[int, str] = {}
    for key, value in codes.items():
        try:
            state = parse_state(str(key))
        except UnknownState as exc:
            raise PortalCodesError(f"{source}: [codes] {exc}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise PortalCodesError(
                f"{source}: [codes] {key}: expected a whole number, not {value!r}"
            )
        if not 0 <= value <= MAX_PORTAL_CODE:
            raise PortalCodesError(
                f"{source}: [codes] {key}: {value} is outside 0..{MAX_PORTAL_CODE}"
            )
        if value in seen:
            raise PortalCodesError(
                f"{source}: [codes] {key} and {seen[value]} both have code {value}; "
                f"one code names one state"
            )
        seen[value] = state
        by_state[state] = value
    return PortalCodes(by_state=by_state, source=source)


def load_portal_codes(path: Path | str | None = None) -> PortalCodes:
    """Read and validate a portal code file (TOML); the bundled one by default."""
    where = Path(path) if path is not None else DEFAULT_PORTAL_CODES_FILE
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PortalCodesError(f"cannot read portal status codes {where}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PortalCodesError(f"{where}: not valid TOML: {exc}") from None
    return parse_portal_codes(data, str(where))
