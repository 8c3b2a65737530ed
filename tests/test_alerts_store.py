"""The alerts tables and the functions the console calls (list, get, history, ack, counts)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from central import audit
from central.fleet import alert_engine as engine
from central.fleet import alerts
from central.fleet.alert_rules import RuleBook
from tests.pg import CentralDb


@pytest.fixture
def conn(central_db: CentralDb) -> sqlite3.Connection:
    c = central_db.connect()
    alerts.ensure_schema(c)
    return c


def _open(conn: sqlite3.Connection, kiosk: str, kind: str, office: str | None, at: float) -> int:
    conn.execute("BEGIN IMMEDIATE")
    ids = alerts.apply(
        conn,
        [
            engine.Open(
                kiosk=kiosk, kind=kind, office=office, severity="critical", detail="d", at=at
            )
        ],
        at,
    )
    conn.execute("COMMIT")
    return ids[0]


def test_list_filters_and_counts(conn: sqlite3.Connection) -> None:
    a = _open(conn, "k1", "paper-out", "HN01", 100.0)
    b = _open(conn, "k2", "offline", "HN02", 110.0)
    c = _open(conn, "k3", "offline", None, 120.0)
    assert [x.id for x in alerts.list_alerts(conn)] == [c, b, a]
    assert [x.id for x in alerts.list_alerts(conn, offices=["HN01"])] == [a]
    assert [x.id for x in alerts.list_alerts(conn, kinds=["offline"])] == [c, b]
    assert [x.id for x in alerts.list_alerts(conn, kiosk="k2")] == [b]
    assert alerts.list_alerts(conn, offices=[]) == []
    assert [x.id for x in alerts.list_alerts(conn, limit=1)] == [c]
    counts = alerts.alert_counts(conn)
    assert counts["state"] == {"open": 3, "acknowledged": 0, "cleared": 0}
    assert counts["severity"]["critical"] == 3
    assert counts["office"] == {"HN01": 1, "HN02": 1, "-": 1}
    assert counts["kind"] == {"paper-out": 1, "offline": 2}


def test_bad_filters_name_the_field(conn: sqlite3.Connection) -> None:
    with pytest.raises(alerts.AlertError) as err:
        alerts.list_alerts(conn, states=["closed"])
    assert err.value.field == "state" and "open, acknowledged, cleared" in str(err.value)
    with pytest.raises(alerts.AlertError, match="limit"):
        alerts.list_alerts(conn, limit=0)
    with pytest.raises(alerts.AlertNotFound, match="no alert 99"):
        alerts.get_alert(conn, 99)


def test_acknowledge_is_audited_and_once(conn: sqlite3.Connection) -> None:
    a = _open(conn, "k1", "paper-out", "HN01", 100.0)
    done = alerts.acknowledge(conn, a, actor="cli:lan", comment=" refilling ", now=150.0)
    assert (done.state, done.acked_by, done.acked_at, done.ack_comment) == (
        "acknowledged",
        "cli:lan",
        150.0,
        "refilling",
    )
    assert done.notify_due is None
    (entry,) = audit.entries(conn, target=f"alert:{a}")
    assert entry["action"] == "alert.acknowledge" and entry["actor"] == "cli:lan"
    assert [e.event for e in alerts.alert_events(conn, a)] == ["opened", "acknowledged"]
    with pytest.raises(alerts.AlertError, match="is acknowledged"):
        alerts.acknowledge(conn, a, actor="x", comment="again", now=160.0)
    with pytest.raises(alerts.AlertError) as err:
        alerts.acknowledge(conn, a, actor="x", comment="  ", now=160.0)
    assert err.value.field == "comment"
    assert len(audit.entries(conn, target=f"alert:{a}")) == 1


def test_acknowledge_rolls_back_with_its_audit_row(conn: sqlite3.Connection) -> None:
    a = _open(conn, "k1", "paper-out", "HN01", 100.0)
    conn.execute("DROP TABLE audit")
    conn.execute("CREATE TABLE audit (n INTEGER PRIMARY KEY, at REAL CHECK (at < 0))")
    with pytest.raises(sqlite3.Error):
        alerts.acknowledge(conn, a, actor="x", comment="c", now=150.0)
    assert alerts.get_alert(conn, a).state == "open"
    assert [e.event for e in alerts.alert_events(conn, a)] == ["opened"]


def test_one_open_alert_per_kiosk_and_kind(conn: sqlite3.Connection) -> None:
    _open(conn, "k1", "paper-out", "HN01", 100.0)
    with pytest.raises(sqlite3.IntegrityError):
        _open(conn, "k1", "paper-out", "HN01", 101.0)


def test_readers_create_nothing(tmp_path: Path) -> None:
    c = sqlite3.connect(tmp_path / "empty.db")
    assert alerts.list_alerts(c) == []
    assert alerts.open_alerts(c) == []
    assert alerts.alert_events(c, 1) == []
    assert alerts.alert_counts(c)["state"] == {"open": 0, "acknowledged": 0, "cleared": 0}
    assert c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_history_of_a_full_life(conn: sqlite3.Connection) -> None:
    book = RuleBook({"paper-out": {"hold_down_s": 10.0, "escalate_after_min": 1.0}})
    obs = [engine.Observation(kiosk="k1", kind="paper-out", office="HN01", detail="printer")]

    def step(seen: list[engine.Observation], now: float) -> None:
        view = [a.engine_view() for a in alerts.open_alerts(conn)]
        acts = engine.evaluate(seen, view, book.rule, now, candidates=alerts.candidates(conn))
        conn.execute("BEGIN IMMEDIATE")
        alerts.apply(conn, acts, now)
        conn.execute("COMMIT")

    step(obs, 0.0)
    (a,) = alerts.open_alerts(conn)
    step(obs, 61.0)  # escalated (open for a minute, nobody acknowledged)
    step([], 62.0)  # cause gone
    step(obs, 65.0)  # back within the hold-down: same alert
    step([], 70.0)
    step([], 80.0)  # gone for the hold-down: cleared
    final = alerts.get_alert(conn, a.id)
    assert final.state == "cleared" and final.severity == "critical"
    assert [e.event for e in alerts.alert_events(conn, a.id)] == [
        "opened",
        "escalated",
        "cause-gone",
        "cause-back",
        "cause-gone",
        "cleared",
    ]
    assert alerts.open_alerts(conn) == []
