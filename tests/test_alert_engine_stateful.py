"""The alert engine against a model, through the real adapter on a real SQLite file
(and on PostgreSQL).

Causes come and go, time moves, staff acknowledge, notifications fail and succeed, central
restarts (a new connection on the same file). After every evaluation round the database
must agree with the model: one open alert per (kiosk, kind), the same alert across a cause
that returns within the hold-down (no flapping), opening only after ``open_after_s`` of
continuous presence, clearing only after ``hold_down_s`` of continuous absence, an
acknowledgement that never reopens, and a complete history.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from central import backoffice_db
from central.fleet import alert_engine as engine
from central.fleet import alerts
from central.fleet.alert_watch import AlertSettings, evaluate_round, send_due
from central.notify import Notification, NotifyError
from tests.pg import CentralDb, PgDatabase

KEYS = [("k1", "paper-out"), ("k2", "offline")]


class FlakyNotifier:
    def __init__(self) -> None:
        self.failing = False
        self.sent: list[Notification] = []

    def describe(self) -> str:
        return "flaky"

    def send(self, note: Notification) -> None:
        if self.failing:
            raise NotifyError("flaky: down")
        self.sent.append(note)


@dataclass
class KeyModel:
    present: bool = False
    present_since: float | None = None  # first round it was seen present, continuously
    alert: int | None = None
    gone_since: float | None = None
    acked: bool = False
    past: list[int] = field(default_factory=list)


class AlertMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="alerts-sm-"))
        self.db = self.target()
        self.conn = backoffice_db.connect(self.db)
        self.now = 1_000_000.0
        self.model = {k: KeyModel() for k in KEYS}
        self.notifier = FlakyNotifier()
        self.settings = AlertSettings()

    def target(self) -> backoffice_db.Target:
        return self.dir / "central.db"

    def teardown(self) -> None:
        self.conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(
        open_after=st.sampled_from([0.0, 30.0]),
        hold_down=st.sampled_from([0.0, 50.0]),
        renotify=st.sampled_from([0.0, 0.5]),
        escalate=st.sampled_from([0.0, 0.5]),
    )
    def rules(self, open_after: float, hold_down: float, renotify: float, escalate: float) -> None:
        timing = {
            "open_after_s": open_after,
            "hold_down_s": hold_down,
            "renotify_min": renotify,
            "escalate_after_min": escalate,
        }
        self.open_after, self.hold_down = open_after, hold_down
        self.settings = AlertSettings(
            rules={"paper-out": timing, "offline": timing}, backoff_s=10.0, backoff_max_s=40.0
        )

    @rule(key=st.sampled_from(KEYS), present=st.booleans())
    def cause(self, key: tuple[str, str], present: bool) -> None:
        self.model[key].present = present

    @rule(dt=st.sampled_from([1.0, 10.0, 29.0, 30.0, 49.0, 50.0, 61.0, 130.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def evaluate(self) -> None:
        observations = [
            engine.Observation(kiosk=k, kind=kind, office="HN01", detail="x")
            for (k, kind), m in self.model.items()
            if m.present
        ]
        evaluate_round(self.conn, self.settings, self.now, observations=observations)
        for key, m in self.model.items():
            self._step_model(key, m)
        self._compare()

    def _step_model(self, key: tuple[str, str], m: KeyModel) -> None:
        now = self.now
        if m.alert is None:
            if not m.present:
                m.present_since = None
                return
            if m.present_since is None:
                m.present_since = now
            if now - m.present_since >= self.open_after:
                (row,) = alerts.list_alerts(
                    self.conn, kiosk=key[0], kinds=[key[1]], states=["open"]
                )
                assert row.opened_at == now
                assert row.id not in m.past
                m.alert, m.present_since, m.acked = row.id, None, False
            return
        if m.present:
            m.gone_since = None
            return
        if m.gone_since is None:
            m.gone_since = now
        if now - m.gone_since >= self.hold_down:
            cleared = alerts.get_alert(self.conn, m.alert)
            assert cleared.state == "cleared" and cleared.cleared_at == now
            m.past.append(m.alert)
            m.alert, m.gone_since = None, None

    def _compare(self) -> None:
        active = alerts.open_alerts(self.conn)
        by_key = {(a.kiosk, a.kind): a for a in active}
        assert len(by_key) == len(active), "two open alerts for one kiosk and kind"
        for key, m in self.model.items():
            a = by_key.get(key)
            if m.alert is None:
                assert a is None, f"{key}: alert {a} open but the model has none"
                continue
            assert a is not None and a.id == m.alert, f"{key}: {a} is not alert {m.alert}"
            assert a.state == ("acknowledged" if m.acked else "open")
            assert (a.cause_gone_at is None) == (m.gone_since is None)

    @precondition(
        lambda self: any(m.alert is not None and not m.acked for m in self.model.values())
    )
    @rule(data=st.data())
    def acknowledge(self, data: st.DataObject) -> None:
        keys = [k for k, m in self.model.items() if m.alert is not None and not m.acked]
        key = data.draw(st.sampled_from(keys))
        m = self.model[key]
        assert m.alert is not None
        alerts.acknowledge(self.conn, m.alert, actor="cli:test", comment="on it", now=self.now)
        m.acked = True

    @rule(failing=st.booleans())
    def deliver(self, failing: bool) -> None:
        self.notifier.failing = failing
        before = {a.id: a for a in alerts.list_alerts(self.conn, limit=10_000)}
        send_due(self.conn, self.notifier, self.settings, self.now)
        after = {a.id: a for a in alerts.list_alerts(self.conn, limit=10_000)}
        for i, a in after.items():  # sending never changes an alert's state or severity
            assert (a.state, a.severity) == (before[i].state, before[i].severity)

    @rule()
    def restart(self) -> None:
        self.conn.close()
        self.conn = backoffice_db.connect(self.db)

    @invariant()
    def history_is_complete(self) -> None:
        for a in alerts.list_alerts(self.conn, limit=10_000):
            events = [e.event for e in alerts.alert_events(self.conn, a.id)]
            assert events[0] == "opened" and events.count("opened") == 1
            assert events.count("escalated") <= 1
            assert ("cleared" in events) == (a.state == "cleared")
            if a.state == "cleared":
                assert events[-1] == "cleared"
            assert events.count("acknowledged") == (1 if a.acked_at is not None else 0)
            if "acknowledged" in events:  # nothing re-notifies or escalates after an ack
                tail = events[events.index("acknowledged") :]
                assert "renotified" not in tail and "escalated" not in tail
            # cause-gone and cause-back alternate, starting with gone
            fades = [e for e in events if e in ("cause-gone", "cause-back")]
            assert all(
                e == ("cause-gone" if i % 2 == 0 else "cause-back") for i, e in enumerate(fades)
            )


TestAlertMachine = AlertMachine.TestCase
TestAlertMachine.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)


def test_the_model_holds_on_postgresql(pg: PgDatabase) -> None:
    """The same machine over central's PostgreSQL (a restart is a new connection)."""

    class PgAlertMachine(AlertMachine):
        def target(self) -> backoffice_db.Target:
            return backoffice_db.PgTarget(pg.schema_dsn(self.dir.name))

    run_state_machine_as_test(
        PgAlertMachine, settings=settings(max_examples=25, stateful_step_count=40, deadline=None)
    )


def test_engine_table_covers_every_pair() -> None:
    for phase in engine.Phase:
        for cause in engine.Cause:
            assert (phase, cause) in engine.TRANSITIONS


def test_two_open_alerts_for_one_key_is_a_bug() -> None:
    a = engine.OpenAlert(
        id=1,
        kiosk="k",
        kind="offline",
        office=None,
        severity="critical",
        state="open",
        opened_at=0.0,
    )
    b = engine.OpenAlert(
        id=2,
        kiosk="k",
        kind="offline",
        office=None,
        severity="critical",
        state="open",
        opened_at=0.0,
    )
    from central.fleet.alert_rules import RuleBook

    try:
        engine.evaluate([], [a, b], RuleBook().rule, 1.0)
    except engine.EngineError as exc:
        assert "two open alerts" in str(exc)
    else:
        raise AssertionError("evaluate accepted two open alerts for one key")


def test_restart_keeps_state(central_db: CentralDb) -> None:
    conn = central_db.connect()
    obs = [engine.Observation(kiosk="k", kind="paper-out", office=None, detail="p")]
    evaluate_round(conn, AlertSettings(), 10.0, observations=obs)
    conn.close()
    if isinstance(central_db.target, Path):  # a bare sqlite3 connection, as a CLI opens it
        conn = sqlite3.connect(central_db.target, isolation_level=None)
    else:
        conn = central_db.connect()
    evaluate_round(conn, AlertSettings(), 20.0, observations=obs)
    (a,) = alerts.open_alerts(conn)
    assert a.opened_at == 10.0 and a.last_seen_at == 20.0
