"""The adapter's notifications: retried with backoff, never changing the alert; escalation
to a second list; renotification; no notifier at all. Real webhook and SMTP receivers."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from central.config import load_central_config
from central.fleet import alert_engine as engine
from central.fleet import alerts
from central.fleet.alert_watch import AlertSettings, evaluate_round, send_due, watch_from_config
from central.fleet.registry import Registry
from central.notify import SmtpNotifier, WebhookNotifier
from tests.central_config import on_engine
from tests.notify_receivers import smtp_sink, webhook_receiver
from tests.pg import CentralDb
from tests.stack import write_central_config
from tests.waiting import wait_until

SECRET = b"watch-secret-0123456789"
OBS = [engine.Observation(kiosk="k1", kind="paper-out", office="HN01", detail="printer")]
SETTINGS = AlertSettings(
    rules={"paper-out": {"renotify_min": 1.0, "escalate_after_min": 5.0, "severity": "warning"}},
    backoff_s=10.0,
    backoff_max_s=40.0,
)


@pytest.fixture
def conn(central_db: CentralDb) -> sqlite3.Connection:
    return central_db.connect()


def test_failed_webhook_is_retried_and_keeps_the_alert(conn: sqlite3.Connection) -> None:
    with webhook_receiver(SECRET) as hook:
        notifier = WebhookNotifier(hook.url, SECRET, timeout_s=5)
        evaluate_round(conn, SETTINGS, 100.0, observations=OBS)
        hook.status = 500
        assert send_due(conn, notifier, SETTINGS, 100.0) == (0, 1)
        (a,) = alerts.open_alerts(conn)
        assert (a.state, a.notify_due, a.notify_attempts, a.notify_next_at) == (
            "open",
            "opened",
            1,
            110.0,
        )
        assert "HTTP 500" in (a.notify_error or "")
        assert send_due(conn, notifier, SETTINGS, 105.0) == (0, 0)  # not due yet
        assert send_due(conn, notifier, SETTINGS, 110.0) == (0, 1)
        assert alerts.get_alert(conn, a.id).notify_next_at == 130.0  # doubled
        hook.status = 204
        assert send_due(conn, notifier, SETTINGS, 130.0) == (1, 0)
        done = alerts.get_alert(conn, a.id)
        assert (done.notify_due, done.notify_count, done.notified_at) == (None, 1, 130.0)
        # Renotified a minute after the delivery, while open and unacknowledged.
        evaluate_round(conn, SETTINGS, 189.0, observations=OBS)
        assert alerts.get_alert(conn, a.id).notify_due is None
        evaluate_round(conn, SETTINGS, 190.0, observations=OBS)
        assert send_due(conn, notifier, SETTINGS, 190.0) == (1, 0)
        # The receiver keeps what it answered 500 to as well: two failed, one delivered.
        events = [n["event"] for n in hook.received]
        assert events == ["alert-opened"] * 3 + ["alert-renotified"]
        assert hook.received[-2]["id"] != hook.received[-1]["id"]


def test_escalation_goes_to_the_second_list_too(conn: sqlite3.Connection) -> None:
    with webhook_receiver(SECRET) as hook, smtp_sink() as sink:
        notifier = WebhookNotifier(hook.url, SECRET, timeout_s=5)
        boss = SmtpNotifier(sink.host, sink.port, "aps@example.vn", to=["truong@example.vn"])
        evaluate_round(conn, SETTINGS, 0.0, observations=OBS)
        send_due(conn, notifier, SETTINGS, 0.0, escalation=boss)
        assert sink.messages == []
        evaluate_round(conn, SETTINGS, 300.0, observations=OBS)
        (a,) = alerts.open_alerts(conn)
        assert a.severity == "critical" and a.escalated_at == 300.0
        send_due(conn, notifier, SETTINGS, 300.0, escalation=boss)
        assert [n["event"] for n in hook.received] == ["alert-opened", "alert-escalated"]
        for t in (400.0, 900.0):  # escalated once, however long it lasts
            evaluate_round(conn, SETTINGS, t, observations=OBS)
        events = [e.event for e in alerts.alert_events(conn, a.id)]
        assert events.count("escalated") == 1
        ((rcpt, msg),) = sink.messages
        assert rcpt == ["truong@example.vn"]
        assert "Cảnh báo đã nâng mức" in str(msg["Subject"]) and "k1" in str(msg["Subject"])


def test_acknowledged_alert_is_not_renotified(conn: sqlite3.Connection) -> None:
    with webhook_receiver(SECRET) as hook:
        notifier = WebhookNotifier(hook.url, SECRET, timeout_s=5)
        evaluate_round(conn, SETTINGS, 0.0, observations=OBS)
        send_due(conn, notifier, SETTINGS, 0.0)
        (a,) = alerts.open_alerts(conn)
        alerts.acknowledge(conn, a.id, actor="cli:lan", comment="on my way", now=10.0)
        for t in (100.0, 400.0, 1000.0):
            evaluate_round(conn, SETTINGS, t, observations=OBS)
            send_due(conn, notifier, SETTINGS, t)
        assert [n["event"] for n in hook.received] == ["alert-opened"]
        evaluate_round(conn, SETTINGS, 1001.0, observations=[])
        evaluate_round(conn, SETTINGS, 1200.0, observations=[])
        assert alerts.get_alert(conn, a.id).state == "cleared"
        send_due(conn, notifier, SETTINGS, 1200.0)
        assert [n["event"] for n in hook.received] == ["alert-opened", "alert-cleared"]


def test_without_a_notifier_nothing_waits_forever(conn: sqlite3.Connection) -> None:
    evaluate_round(conn, SETTINGS, 0.0, observations=OBS)
    send_due(conn, None, SETTINGS, 0.0)
    (a,) = alerts.open_alerts(conn)
    assert a.notify_due is None and a.notify_count == 0 and "no notifier" in (a.notify_error or "")


def test_crash_between_commit_and_send_loses_no_notification(central_db: CentralDb) -> None:
    first = central_db.connect()
    evaluate_round(first, SETTINGS, 0.0, observations=OBS)
    first.close()  # central dies before sending
    with webhook_receiver(SECRET) as hook:
        again = central_db.connect()
        assert send_due(again, WebhookNotifier(hook.url, SECRET), SETTINGS, 1.0) == (1, 0)
        assert [n["event"] for n in hook.received] == ["alert-opened"]


def test_a_failing_apply_rolls_the_whole_round_back(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluate_round(conn, SETTINGS, 0.0, observations=OBS)
    real = alerts.apply

    def half_then_crash(c: sqlite3.Connection, actions: list[engine.Action], now: float) -> None:
        real(c, actions, now)
        raise OSError("disk gone")

    monkeypatch.setattr(alerts, "apply", half_then_crash)
    with pytest.raises(OSError):
        evaluate_round(conn, SETTINGS, 10.0, observations=[])  # would mark the cause gone
    (a,) = alerts.open_alerts(conn)
    assert a.cause_gone_at is None
    assert [e.event for e in alerts.alert_events(conn, a.id)] == ["opened"]
    assert not conn.in_transaction


def test_the_configured_engine_writes_where_the_console_reads(
    tmp_path: Path, central_db: CentralDb
) -> None:
    """``aps-central run``'s alert thread (watch_from_config) opens ``[central]``'s own
    database, the SQLite file or PostgreSQL, not the file path alone."""
    db = tmp_path / "central.db"
    cfg_path = write_central_config(tmp_path / "central.toml", db, 18830, kiosks=())
    on_engine(cfg_path, db, central_db)
    cfg_path.write_text(
        cfg_path.read_text(encoding="utf-8") + "\n[alerts]\nevaluate_every_s = 0.1\n", "utf-8"
    )
    conn = central_db.connect()
    Registry(central_db.target).close()
    conn.execute(
        "INSERT INTO fleet_kiosks (kiosk, office, slot, agency, state, enrolled_at)"
        " VALUES ('k1', 'HN01', 1, 'a', 'active', '2026-01-01T00:00:00Z')"
    )
    beat = {"queued": 0, "devices": {"printer": {"state": "paper_out"}}}
    conn.execute(
        "INSERT INTO kiosks (kiosk, state, state_at, last_heartbeat_at, queued, heartbeat)"
        " VALUES ('k1', 'online', ?, ?, 0, ?)",
        (time.time(), time.time(), json.dumps(beat)),
    )
    watch = watch_from_config(load_central_config(cfg_path))
    watch.start()
    try:
        wait_until(lambda: alerts.open_alerts(conn), 30, "the paper-out alert")
    finally:
        watch.stop()
    assert [(a.kiosk, a.kind) for a in alerts.open_alerts(conn)] == [("k1", "paper-out")]
