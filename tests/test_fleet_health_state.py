"""The overall kiosk state: derived at read time from what central last heard."""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from central.fleet.health import KioskHealth, OverallState, Thresholds, health_rows, overall_state

NOW = 1_800_000_000.0


def _kiosk(**kw: object) -> KioskHealth:
    base: dict[str, object] = {
        "kiosk": "k1",
        "registry": "active",
        "presence": "online",
        "presence_at": NOW - 600,
        "heartbeat_at": NOW - 30,
        "devices": {"printer": {"state": "ok"}},
    }
    base.update(kw)
    return KioskHealth(**base)  # type: ignore[arg-type]


def test_a_kiosk_heard_lately_with_working_devices_is_operational() -> None:
    assert overall_state(_kiosk(), NOW) == (OverallState.OPERATIONAL, [])


def test_offline_is_derived_from_the_last_time_heard_not_a_timer() -> None:
    k = _kiosk(heartbeat_at=NOW - 100)
    assert overall_state(k, NOW)[0] is OverallState.OPERATIONAL
    assert overall_state(k, NOW + 81)[0] is OverallState.OFFLINE  # 181 s silent
    # Heard again: the same row read later says operational; nothing had to clear.
    assert overall_state(_kiosk(heartbeat_at=NOW + 80), NOW + 81)[0] is OverallState.OPERATIONAL


def test_a_clean_stop_is_offline_at_once_and_a_later_heartbeat_brings_it_back() -> None:
    stopped = _kiosk(presence="offline", presence_at=NOW - 5, heartbeat_at=NOW - 30)
    assert overall_state(stopped, NOW) == (OverallState.OFFLINE, ["said offline"])
    back = _kiosk(presence="offline", presence_at=NOW - 5, heartbeat_at=NOW - 1)
    assert overall_state(back, NOW)[0] is OverallState.OPERATIONAL


def test_every_device_broken_is_degraded_naming_each() -> None:
    k = _kiosk(devices={"printer": {"state": "paper_out"}, "card_reader": {"state": "unplugged"}})
    state, reasons = overall_state(k, NOW)
    assert state is OverallState.DEGRADED
    assert reasons == ["card_reader unplugged", "printer paper_out"]


def test_backlog_clock_and_disk_are_reasons() -> None:
    k = _kiosk(queued=201, oldest_queued_s=7200, clock_offset_s=-300, disk_free_bytes=1024)
    _, reasons = overall_state(k, NOW, Thresholds())
    assert reasons == [
        "backlog 201 records",
        "oldest unsynced record 7200 s old",
        "clock off by -300 s",
        "disk low (0 MiB free)",
    ]


def test_update_states() -> None:
    assert overall_state(_kiosk(update={"state": "checking"}), NOW)[0] is OverallState.UPDATING
    bad = _kiosk(update={"state": "inconsistent", "reason": "rollback: venv missing"})
    assert overall_state(bad, NOW) == (OverallState.INCONSISTENT, ["rollback: venv missing"])
    assert overall_state(_kiosk(update={"state": "committed"}), NOW)[0] is OverallState.OPERATIONAL


@given(
    heard=st.one_of(st.none(), st.floats(NOW - 10**6, NOW)),
    presence=st.sampled_from([None, "online", "offline"]),
    update=st.sampled_from([None, "checking", "inconsistent", "committed"]),
)
def test_revoked_wins_and_never_heard_is_never_seen(
    heard: float | None, presence: str | None, update: str | None
) -> None:
    k = _kiosk(
        registry="revoked",
        heartbeat_at=heard,
        presence=presence,
        update=None if update is None else {"state": update},
    )
    assert overall_state(k, NOW)[0] is OverallState.REVOKED
    silent = _kiosk(heartbeat_at=None, presence_at=None, presence=None)
    assert overall_state(silent, NOW)[0] is OverallState.NEVER_SEEN


def test_health_rows_on_a_database_that_is_not_a_store_is_empty(tmp_path) -> None:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(tmp_path / "empty.db")
    assert health_rows(conn) == []
