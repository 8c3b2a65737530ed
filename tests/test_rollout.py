"""Rollout rings: canary, office, all; advance on commits or soak, stop on failures, audit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central import audit
from central.fleet import registry
from central.fleet import rollout as ro
from central.ingest import FleetUpdate
from central.store_pg import PostgresStore
from tests.pg import CentralDb, PgDatabase

NOW = 1_800_000_000.0
FLEET = {"c1": "H1", "a1": "H1", "a2": "H1", "b1": "H2", "b2": "H2"}


def _file_db(tmp: Path) -> sqlite3.Connection:
    """A bare SQLite file with only the status and registry rows the rollout reads."""
    conn = sqlite3.connect(tmp / "central.db")
    conn.execute(
        "CREATE TABLE kiosks (kiosk TEXT PRIMARY KEY, state TEXT, state_at REAL,"
        " last_heartbeat_at REAL, queued INTEGER, heartbeat TEXT, clock_skew_s REAL)"
    )
    conn.execute(
        "CREATE TABLE fleet_kiosks (kiosk TEXT PRIMARY KEY, office TEXT, slot INTEGER,"
        " location TEXT, state TEXT, enrolled_at REAL)"
    )
    for k, office in FLEET.items():
        conn.execute("INSERT INTO fleet_kiosks VALUES (?, ?, 1, '', 'active', 0)", (k, office))
        beat(conn, k, "0.1.0")
    conn.commit()
    return conn


def _db(central_db: CentralDb) -> sqlite3.Connection:
    """Central's database on the test's engine, its registry holding :data:`FLEET`."""
    conn = central_db.connect()
    conn.executescript(registry.SCHEMA)  # PostgreSQL: made by the migrations, only checked
    for slot, (k, office) in enumerate(FLEET.items()):
        conn.execute(
            "INSERT INTO fleet_kiosks (kiosk, office, slot, agency, state, enrolled_at)"
            " VALUES (?, ?, ?, 'a', 'active', '2027-01-15T08:00:00+00:00')",
            (k, office, slot),
        )
        beat(conn, k, "0.1.0")
    return conn


def beat(conn: sqlite3.Connection, kiosk: str, version: str, update: dict | None = None) -> None:
    hb = {"agent_version": version}
    if update is not None:
        hb["update"] = update
    conn.execute(
        "INSERT INTO kiosks (kiosk, state, state_at, last_heartbeat_at, queued,"
        " heartbeat, clock_skew_s) VALUES (?, 'online', ?, ?, 0, ?, 0) ON CONFLICT (kiosk)"
        " DO UPDATE SET state = excluded.state, state_at = excluded.state_at,"
        " last_heartbeat_at = excluded.last_heartbeat_at, queued = excluded.queued,"
        " heartbeat = excluded.heartbeat, clock_skew_s = excluded.clock_skew_s",
        (kiosk, NOW, NOW, json.dumps(hb)),
    )
    conn.commit()


def _start(conn: sqlite3.Connection, **kw: object) -> ro.Rollout:
    args: dict[str, object] = {
        "canary": ["c1"],
        "office": "H1",
        "soak_s": 600.0,
        "max_failure_rate": 0.25,
        "now": NOW,
    }
    args.update(kw)
    return ro.start(conn, "0.2.0", actor="cli:test", **args)  # type: ignore[arg-type]


def test_rings_advance_as_their_kiosks_commit(central_db: CentralDb) -> None:
    conn = _db(central_db)
    _start(conn)
    assert ro.desired_versions(conn) == {"c1": "0.2.0"}
    assert ro.kiosks_to_update(conn) == {"c1": "0.2.0"}
    assert ro.tick(conn, now=NOW + 1) is None  # canary not done, soak not over
    beat(conn, "c1", "0.2.0", {"state": "committed", "version": "0.2.0"})
    assert ro.tick(conn, now=NOW + 2) == "advanced to office"
    assert set(ro.desired_versions(conn)) == {"c1", "a1", "a2"}
    for k in ("a1", "a2"):
        beat(conn, k, "0.2.0", {"state": "committed", "version": "0.2.0"})
    assert ro.tick(conn, now=NOW + 3) == "advanced to all"
    assert ro.desired_versions(conn) == dict.fromkeys(FLEET, "0.2.0")
    assert ro.tick(conn, now=NOW + 4 + 600) == "done"  # b1, b2 silent: the soak ends it
    actions = [e["action"] for e in reversed(audit.entries(conn, target="release:0.2.0"))]
    assert actions == ["rollout.start", "rollout.advance", "rollout.advance", "rollout.done"]


def test_a_kiosk_on_trial_is_not_counted_done(central_db: CentralDb) -> None:
    conn = _db(central_db)
    _start(conn)
    beat(conn, "c1", "0.2.0", {"state": "checking", "version": "0.2.0"})
    assert ro.tick(conn, now=NOW + 1) is None


def test_failures_above_the_threshold_stop_the_rollout_by_itself(central_db: CentralDb) -> None:
    conn = _db(central_db)
    _start(conn, soak_s=0.0)
    beat(conn, "c1", "0.2.0", {"state": "committed", "version": "0.2.0"})
    assert ro.tick(conn, now=NOW + 1) == "advanced to office"
    beat(conn, "a1", "0.1.0", {"state": "rolled-back", "version": "0.2.0", "previous": "0.1.0"})
    assert ro.tick(conn, now=NOW + 2) == "stopped"  # 1 of 3 failed > 25%
    status = ro.rollout_status(conn)[0]
    assert status["state"] == "stopped" and "a1" in status["reason"]
    assert status["current"]["failed"] == ["a1"]
    assert ro.tick(conn, now=NOW + 3) is None  # stopped stays stopped
    assert ro.kiosks_to_update(conn) == {}
    ro.change(conn, "resume", actor="cli:test", now=NOW + 4)
    assert ro.active(conn).state == "running"  # type: ignore[union-attr]


def test_only_one_active_rollout_and_abort_withdraws_its_kiosks(central_db: CentralDb) -> None:
    conn = _db(central_db)
    _start(conn)
    with pytest.raises(ro.RolloutError, match="abort it"):
        _start(conn)
    ro.change(conn, "pause", actor="cli:test", now=NOW + 1)
    assert ro.tick(conn, now=NOW + 10_000) is None  # paused: no advance
    ro.change(conn, "abort", actor="cli:test", now=NOW + 2)
    assert ro.desired_versions(conn) == {}
    with pytest.raises(ro.RolloutError, match="no rollout is active"):
        ro.change(conn, "resume", actor="cli:test")
    with pytest.raises(ro.RolloutError, match="--canary"):
        ro.start(conn, "0.3.0", actor="x", canary=[], office=None, soak_s=1, max_failure_rate=0.1)


def test_without_an_office_the_canary_goes_straight_to_all(central_db: CentralDb) -> None:
    conn = _db(central_db)
    _start(conn, office=None)
    beat(conn, "c1", "0.2.0", {"state": "committed", "version": "0.2.0"})
    assert ro.tick(conn, now=NOW + 1) == "advanced to all"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(FLEET)),
            st.sampled_from(
                ["committed", "rolled-back", "failed", "checking", "inconsistent", None]
            ),
        ),
        max_size=12,
    ),
    st.floats(0, 0.9),
)
def test_rings_only_grow_and_a_stopped_rollout_had_failures_over_the_limit(
    beats: list[tuple[str, str | None]], limit: float
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        conn = _file_db(Path(d))
        _start(conn, max_failure_rate=limit, soak_s=5.0)
        seen: set[str] = set()
        t = NOW
        for kiosk, state in beats:
            version = "0.2.0" if state in ("committed", "checking") else "0.1.0"
            beat(
                conn,
                kiosk,
                version,
                None if state is None else {"state": state, "version": "0.2.0"},
            )
            t += 3
            before = ro.active(conn)
            result = ro.tick(conn, now=t)
            desired = set(ro.desired_versions(conn))
            assert seen <= desired or (result is None and not desired)
            seen = desired if ro.active(conn) is not None or result == "done" else seen
            if result == "stopped":
                assert before is not None
                counts = ro.ring_counts(
                    before,
                    before.ring,
                    __import__("central.fleet.health", fromlist=["health_rows"]).health_rows(conn),
                )
                assert counts["failure_rate"] > limit
        conn.close()


@pytest.mark.parametrize("autocommit", [False, True])
def test_a_change_and_its_audit_row_commit_together(
    central_db: CentralDb, monkeypatch: pytest.MonkeyPatch, autocommit: bool
) -> None:
    conn = _db(central_db)
    if not autocommit:  # a default sqlite3 connection (implicit transactions): SQLite's own
        if central_db.kind != "sqlite":
            pytest.skip("sqlite3's implicit transactions exist on SQLite only")
        conn.isolation_level = "DEFERRED"  # central's own connections are autocommit
    _start(conn)

    def broken(*a: object, **k: object) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(sqlite3.OperationalError):
        ro.change(conn, "pause", actor="cli:test", now=NOW + 1)
    other = central_db.connect()
    assert other.execute("SELECT state FROM rollouts").fetchall() == [("running",)]


def test_the_running_ring_gets_one_update_job_per_kiosk(central_db: CentralDb) -> None:
    from central.fleet import jobs

    conn = _db(central_db)
    _start(conn)
    assert ro.dispatch_jobs(conn, now=NOW + 1) == ["c1"]
    assert ro.dispatch_jobs(conn, now=NOW + 2) == []  # ordered once
    (job,) = jobs.list_jobs(conn, kiosk="c1", now=NOW + 3)
    assert job.kind == "update"
    assert job.args == {"version": "0.2.0", "manifest_url": "/v1/releases/0.2.0/manifest.json"}
    beat(conn, "c1", "0.2.0", {"state": "committed", "version": "0.2.0"})
    assert ro.tick(conn, now=NOW + 4) == "advanced to office"
    assert ro.dispatch_jobs(conn, now=NOW + 5) == ["a1", "a2"]
    ro.change(conn, "pause", actor="cli:test", now=NOW + 6)
    assert ro.dispatch_jobs(conn, now=NOW + 7) == []


def test_the_canary_commits_in_the_status_rows_where_the_collectors_wrote_them(
    tmp_path: Path, pg: PgDatabase
) -> None:
    """[central] store = "postgresql": the canary's heartbeat (committed 0.2.0) is in
    PostgreSQL, the rollout in the fleet's file; the ring advances only when asked there."""
    conn = _file_db(tmp_path)
    _start(conn)
    store = PostgresStore(pg.dsn)
    try:
        ts = "2027-01-15T08:00:00.000+00:00"  # NOW, as the kiosk's clock says it
        body = {
            "ts": ts,
            "agent_version": "0.2.0",
            "update": {"state": "committed", "version": "0.2.0"},
        }
        store.ingest([FleetUpdate(kiosk="c1", type="heartbeat", body=body)])
        assert ro.kiosks_to_update(conn, store) == {}  # c1 is done there
        assert ro.kiosks_to_update(conn) == {"c1": "0.2.0"}  # the file alone does not know
        assert ro.tick(conn, now=NOW + 1, status=store) == "advanced to office"
        [current] = [r["current"] for r in ro.rollout_status(conn, store) if "current" in r]
        assert current["ring"] == "office"
    finally:
        store.close()
