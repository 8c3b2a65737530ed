"""Enrolment tokens and registered kiosks: their states and every allowed transition.

Theory of operation
-------------------
A technician enrols a box with a one-time token that central issued for one office and one
slot (``aps-central enroll create``); the box redeems it once (``aps-agent provision``) and
becomes a *pending* kiosk, *active* from its first authenticated connection; an admin may
*revoke* it at any time, after which nothing it sends is accepted and its slot is free again.
A certificate renewal keeps an active kiosk active.

Both life cycles are tables, ``(state, event) -> state``, in the h11 manner: a pair not in
the table raises :class:`IllegalTransition` naming the state, the event and what the state
allows, so a caller cannot invent a path (a used token redeemed again, a revoked kiosk
renewed). The terminal states allow nothing. :func:`holds_slot` says which kiosk states keep
their office slot (the registry refuses a second kiosk on a held slot: two kiosks with one
slot would issue the same dossier codes).

No clock and no storage here: :func:`redeem_event` turns "now" and the token's expiry into the
event, so the registry's one transaction applies it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

__all__ = [
    "KIOSK_TRANSITIONS",
    "TOKEN_TRANSITIONS",
    "IllegalTransition",
    "KioskEvent",
    "KioskState",
    "TokenEvent",
    "TokenState",
    "holds_slot",
    "next_kiosk_state",
    "next_token_state",
    "redeem_event",
]


class TokenState(StrEnum):
    ISSUED = "issued"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


TokenEvent = Literal["redeem", "expire", "revoke"]


class KioskState(StrEnum):
    PENDING = "pending"  # provisioned, never connected with its certificate
    ACTIVE = "active"
    REVOKED = "revoked"


KioskEvent = Literal["connect", "renew", "revoke"]

TOKEN_TRANSITIONS: dict[tuple[TokenState, TokenEvent], TokenState] = {
    (TokenState.ISSUED, "redeem"): TokenState.USED,
    (TokenState.ISSUED, "expire"): TokenState.EXPIRED,
    (TokenState.ISSUED, "revoke"): TokenState.REVOKED,
}

KIOSK_TRANSITIONS: dict[tuple[KioskState, KioskEvent], KioskState] = {
    (KioskState.PENDING, "connect"): KioskState.ACTIVE,
    (KioskState.PENDING, "revoke"): KioskState.REVOKED,
    (KioskState.ACTIVE, "connect"): KioskState.ACTIVE,
    (KioskState.ACTIVE, "renew"): KioskState.ACTIVE,
    (KioskState.ACTIVE, "revoke"): KioskState.REVOKED,
}


class IllegalTransition(ValueError):
    """An event the current state does not allow; the message says what it allows."""

    def __init__(self, what: str, state: StrEnum, event: str, allowed: list[str]) -> None:
        ways = ", ".join(sorted(allowed)) if allowed else "nothing (it is final)"
        super().__init__(f"{what} is {state.value}: {event!r} is not allowed; it allows {ways}")
        self.state = state
        self.event = event


def _allowed(table: dict[tuple[StrEnum, str], StrEnum], state: StrEnum) -> list[str]:
    return [event for (s, event) in table if s == state]


def next_token_state(state: TokenState, event: TokenEvent) -> TokenState:
    try:
        return TOKEN_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(
            "the enrolment token",
            state,
            event,
            _allowed(TOKEN_TRANSITIONS, state),  # type: ignore[arg-type]
        ) from None


def next_kiosk_state(state: KioskState, event: KioskEvent) -> KioskState:
    try:
        return KIOSK_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(
            "the kiosk",
            state,
            event,
            _allowed(KIOSK_TRANSITIONS, state),  # type: ignore[arg-type]
        ) from None


def holds_slot(state: KioskState) -> bool:
    """A pending or active kiosk keeps its office slot; a revoked one has given it back."""
    return state in (KioskState.PENDING, KioskState.ACTIVE)


def redeem_event(now: datetime, expires_at: datetime) -> TokenEvent:
    """What a redemption at ``now`` is: ``redeem``, or ``expire`` once the token's time is up."""
    if now.tzinfo is None or expires_at.tzinfo is None:
        raise ValueError("now and expires_at must carry their time zone")
    return "redeem" if now < expires_at else "expire"
