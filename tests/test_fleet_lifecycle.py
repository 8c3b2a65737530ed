"""Enrolment token and kiosk life cycles (central.fleet.lifecycle): no illegal transition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.fleet.lifecycle import (
    KIOSK_TRANSITIONS,
    TOKEN_TRANSITIONS,
    IllegalTransition,
    KioskEvent,
    KioskState,
    TokenEvent,
    TokenState,
    holds_slot,
    next_kiosk_state,
    next_token_state,
    redeem_event,
)

TOKEN_EVENTS: tuple[TokenEvent, ...] = get_args(TokenEvent)
KIOSK_EVENTS: tuple[KioskEvent, ...] = get_args(KioskEvent)


@pytest.mark.parametrize("state", list(TokenState))
@pytest.mark.parametrize("event", TOKEN_EVENTS)
def test_every_token_pair_is_in_the_table_or_refused_naming_what_is_allowed(
    state: TokenState, event: TokenEvent
) -> None:
    if (state, event) in TOKEN_TRANSITIONS:
        assert next_token_state(state, event) == TOKEN_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match=f"token is {state.value}: '{event}'"):
            next_token_state(state, event)


@pytest.mark.parametrize("state", list(KioskState))
@pytest.mark.parametrize("event", KIOSK_EVENTS)
def test_every_kiosk_pair_is_in_the_table_or_refused(state: KioskState, event: KioskEvent) -> None:
    if (state, event) in KIOSK_TRANSITIONS:
        assert next_kiosk_state(state, event) == KIOSK_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match="allows"):
            next_kiosk_state(state, event)


@given(st.lists(st.sampled_from(TOKEN_EVENTS), max_size=12))
def test_a_token_is_redeemed_at_most_once_and_its_end_is_final(events: list[TokenEvent]) -> None:
    state, redeemed = TokenState.ISSUED, 0
    for event in events:
        try:
            new = next_token_state(state, event)
        except IllegalTransition:
            assert state != TokenState.ISSUED  # only a finished token refuses
            continue
        assert state == TokenState.ISSUED  # every transition leaves the issued state
        redeemed += event == "redeem"
        state = new
    assert redeemed <= 1


@given(st.lists(st.sampled_from(KIOSK_EVENTS), max_size=20))
def test_a_revoked_kiosk_never_comes_back_and_gives_its_slot_back(
    events: list[KioskEvent],
) -> None:
    state = KioskState.PENDING
    revoked = False
    for event in events:
        try:
            state = next_kiosk_state(state, event)
        except IllegalTransition:
            assert revoked or (state == KioskState.PENDING and event == "renew")
            continue
        revoked = revoked or state == KioskState.REVOKED
        assert (state == KioskState.REVOKED) == revoked
        assert holds_slot(state) is not revoked


def test_the_final_states_say_so() -> None:
    with pytest.raises(IllegalTransition, match=r"nothing \(it is final\)"):
        next_kiosk_state(KioskState.REVOKED, "renew")
    with pytest.raises(IllegalTransition, match=r"token is used: 'redeem' .* nothing"):
        next_token_state(TokenState.USED, "redeem")


def test_a_redemption_after_the_expiry_is_an_expiry() -> None:
    t = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert redeem_event(t, t + timedelta(hours=24)) == "redeem"
    assert redeem_event(t + timedelta(hours=24), t + timedelta(hours=24)) == "expire"
    with pytest.raises(ValueError, match="time zone"):
        redeem_event(t.replace(tzinfo=None), t)
