"""The fleet registry (central/fleet/registry.py): slots, keys, states, staleness."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from central.backoffice_db import PgTarget, Target
from central.fleet.keys import KeyDirectory
from central.fleet.lifecycle import IllegalTransition, KioskState
from central.fleet.registry import NotRegistered, Registry, RegistryError, SlotHeld
from sync.envelope_signing import key_id
from tests.pg import CentralDb, PgDatabase


def pub() -> Ed25519PublicKey:
    return Ed25519PrivateKey.generate().public_key()


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db(central_db: CentralDb) -> Target:
    """Central's database on each engine: its SQLite file, or a fresh PostgreSQL."""
    return central_db.target


@pytest.fixture
def reg(db: Target) -> Iterator[Registry]:
    r = Registry(db)
    yield r
    r.close()


def add(
    reg: Registry, kiosk: str = "h56-k1", slot: int = 1, office: str = "H56"
) -> Ed25519PublicKey:
    key = pub()
    reg.add_kiosk(kiosk, office=office, slot=slot, agency="000.00.14.H56", signing_key=key)
    return key


def test_is_a_key_directory_and_new_kiosk_is_pending(reg: Registry, db: Target) -> None:
    directory: KeyDirectory = reg
    key = add(reg)
    got = directory.sender("h56-k1")
    assert got is not None
    assert got.state is KioskState.PENDING and got.may_send
    assert got.keys == {key_id(key): got.keys[key_id(key)]}
    assert directory.sender("h56-k9") is None
    if isinstance(db, Path):
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    entry = reg.get("h56-k1")
    assert entry is not None and entry.office == "H56" and entry.slot == 1
    assert [e.kiosk for e in reg.list("H56")] == ["h56-k1"]
    assert reg.list("OTHER") == []


def test_a_held_slot_is_refused_and_freed_by_revocation(reg: Registry) -> None:
    add(reg)
    with pytest.raises(SlotHeld, match="slot 1 of office H56 is held by kiosk h56-k1"):
        add(reg, "h56-k1-b")
    add(reg, "h56-k2", slot=2)  # another slot is fine
    add(reg, "q1-k1", office="Q1")  # the same slot of another office is fine
    reg.revoke("h56-k1", reason="box stolen")
    add(reg, "h56-k1-r2")
    assert reg.live_kiosk_on("H56", 1) == "h56-k1-r2"


def test_the_database_itself_refuses_two_live_kiosks_on_one_slot(reg: Registry) -> None:
    add(reg)
    with pytest.raises(sqlite3.IntegrityError), reg.transaction() as conn:
        conn.execute(
            "INSERT INTO fleet_kiosks (kiosk, office, slot, agency, state, enrolled_at)"
            " VALUES ('h56-x', 'H56', 1, 'a', 'active', '2026-01-01T00:00:00+00:00')"
        )


def test_kiosk_ids_are_checked_and_never_reused(reg: Registry) -> None:
    with pytest.raises(RegistryError, match="kiosk id"):
        add(reg, "Bad Id")
    with pytest.raises(RegistryError, match=r"reserved|kiosk id"):
        add(reg, "fleet")
    add(reg)
    reg.revoke("h56-k1", reason="test")
    with pytest.raises(RegistryError, match="never reused"):
        add(reg)
    with pytest.raises(RegistryError, match="slot"):
        add(reg, "h56-k10", slot=10)


def test_connect_rotation_retirement(reg: Registry) -> None:
    old = add(reg)
    reg.mark_connected("h56-k1")
    new = pub()
    assert reg.add_signing_key("h56-k1", new) == key_id(new)
    got = reg.sender("h56-k1")
    assert got is not None and got.state is KioskState.ACTIVE
    assert set(got.keys) == {key_id(old), key_id(new)}
    reg.retire_signing_key("h56-k1", key_id(old))
    got = reg.sender("h56-k1")
    assert got is not None and set(got.keys) == {key_id(new)}
    with pytest.raises(RegistryError, match="only accepted signing key"):
        reg.retire_signing_key("h56-k1", key_id(new))
    with pytest.raises(RegistryError, match="no accepted signing key"):
        reg.retire_signing_key("h56-k1", key_id(old))


def test_revoked_is_final(reg: Registry) -> None:
    add(reg)
    reg.revoke("h56-k1", reason="lost")
    got = reg.sender("h56-k1")
    assert got is not None and not got.may_send
    for act in (
        lambda: reg.mark_connected("h56-k1"),
        lambda: reg.revoke("h56-k1", reason="again"),
        lambda: reg.add_signing_key("h56-k1", pub()),
    ):
        with pytest.raises(IllegalTransition, match="revoked"):
            act()
    entry = reg.get("h56-k1")
    assert entry is not None and entry.revoke_reason == "lost"
    with pytest.raises(NotRegistered):
        reg.revoke("nobody", reason="x")
    with pytest.raises(RegistryError, match="reason"):
        reg.revoke("h56-k1", reason=" ")


def test_another_process_revocation_seen_within_the_cache_age(db: Target) -> None:
    clock = FakeClock()
    collector = Registry(db, cache_s=1.0, clock=clock)
    admin = Registry(db)
    try:
        add(admin)
        first = collector.sender("h56-k1")
        assert first is not None and first.may_send
        admin.revoke("h56-k1", reason="stolen")
        clock.t += 0.5  # still within the cache age: the cached answer may stand
        clock.t += 0.5  # the age reached: must be read again
        got = collector.sender("h56-k1")
        assert got is not None and not got.may_send
    finally:
        collector.close()
        admin.close()


def test_cache_age_is_bounded_by_max_staleness(db: Target) -> None:
    with pytest.raises(RegistryError, match="MAX_STALENESS_S"):
        Registry(db, cache_s=10.0)


def test_own_writes_are_seen_at_once(db: Target) -> None:
    clock = FakeClock()
    reg = Registry(db, clock=clock)
    try:
        add(reg)
        assert reg.sender("h56-k1") is not None
        reg.revoke("h56-k1", reason="x")
        got = reg.sender("h56-k1")
        assert got is not None and not got.may_send
    finally:
        reg.close()


def test_threads_share_one_registry(reg: Registry) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                kiosk = f"t{n}-k{i + 1}"
                reg.add_kiosk(kiosk, office=f"T{n}", slot=i + 1, agency="a", signing_key=pub())
                assert reg.sender(kiosk) is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(reg.list()) == 20


def test_a_postgresql_connection_lost_is_opened_again_at_the_next_call(pg: PgDatabase) -> None:
    """PostgreSQL restarted under the collector: the call that meets the loss fails, the
    next one reconnects (SQLite's file connection has nothing to lose)."""
    reg = Registry(PgTarget(pg.dsn), cache_s=0)
    try:
        add(reg)
        with psycopg.connect(pg.dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(sqlite3.Error):
            reg.sender("h56-k1")
        got = reg.sender("h56-k1")
        assert got is not None and got.may_send
        reg.revoke("h56-k1", reason="stolen")  # writes too
        got = reg.sender("h56-k1")
        assert got is not None and not got.may_send
    finally:
        reg.close()
