"""Support requests: projection, routing, replies on the downlink, notifications, queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central import audit, downlink_log, roster, support
from central.notify import Notification, NotifyError, WebhookNotifier
from tests.notify_receivers import webhook_receiver
from tests.pg import CentralDb
from tests.support_helpers import OFFICE, ingest, lookup_code, open_db, replies, support_body

VN = timezone(timedelta(hours=7))
TUESDAY_9 = datetime(2026, 12, 1, 9, 0, tzinfo=VN)
SETTINGS = support.SupportSettings(
    hotline="1900 1234", notify_max_attempts=3, notify_backoff_s=10, notify_backoff_max_s=25
)


@dataclass
class Recorder:
    """A notifier that records what it was given; fails while ``failing`` is set."""

    failing: bool = False
    sent: list[Notification] = field(default_factory=list)
    attempts: int = 0

    def send(self, note: Notification) -> None:
        self.attempts += 1
        if self.failing:
            raise NotifyError("relay down")
        self.sent.append(note)

    def describe(self) -> str:
        return "recorder"


def staff_on_duty(conn, *ids: str, channels=("desk",)) -> None:
    for sid in ids:
        roster.add_staff(
            conn,
            "admin",
            staff_id=sid,
            name=f"Cán bộ {sid}",
            phone="0912345678",
            channels=list(channels),
            email=f"{sid}@example.vn",
        )
        roster.add_shift(
            conn, "admin", staff_id=sid, office=OFFICE, start="07:00", end="17:00", weekday=1
        )


def test_projection_catches_up_and_is_idempotent(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    ingest(db, "kiosk-1", "rating", {"level": "hai_long"})
    ids = [ingest(db, "kiosk-1", "support", support_body()) for _ in range(3)]
    assert support.project(conn, limit=2) == 3
    assert support.project(conn) == 0
    ingest(
        db,
        "kiosk-1",
        "support",
        support_body(
            type="home-visit",
            full_name="Lê Văn Tư",
            phone="0987654321",
            address="12 Lê Lợi",
            reason="Người cao tuổi",
        ),
    )
    assert support.project(conn) == 1
    rows = support.list_requests(conn)
    assert [r.record_id for r in rows[1:]] == ids[::-1]
    assert [r.status for r in rows] == ["queued", "pending", "pending", "pending"]
    assert rows[0].address == "12 Lê Lợi" and rows[0].office == OFFICE
    # A second connection (another process) projecting again adds nothing.
    other = open_db(db)
    conn.execute("DELETE FROM support_progress")
    assert support.project(other) == 0
    assert len(support.list_requests(other)) == 4


def test_help_routed_to_the_least_busy_staff_on_duty(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1", "kiosk-2", "kiosk-3")
    staff_on_duty(conn, "an", "binh")
    codes = [lookup_code() for _ in range(3)]
    for i, code in enumerate(codes):  # three kiosks (one kiosk's requests go to one person)
        ingest(db, f"kiosk-{i + 1}", "support", support_body(lookup_code=code))
    notifier = Recorder()
    report = support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    assert (report.projected, report.assigned, report.notified) == (3, 3, 3)
    rows = {r.lookup_code: r for r in support.list_requests(conn)}
    assert [rows[c].staff_id for c in codes] == ["an", "binh", "an"]
    assert all(r.status == "assigned" and r.notify_state == "sent" for r in rows.values())
    assert all(r.as_dict()["response_s"]["notified"] is not None for r in rows.values())
    got = {b["lookup_code"]: b for k in (1, 2, 3) for b in replies(conn, f"kiosk-{k}")}
    assert got[codes[0]]["status"] == "assigned"
    assert got[codes[0]]["staff_name"] == "Cán bộ an"
    assert got[codes[0]]["channel"] == "desk"
    assert "đang đến" in got[codes[0]]["message"]
    assert got[codes[0]]["at"].endswith("+07:00")
    assert {n.staff_id for n in notifier.sent} == {"an", "binh"}
    # Another round does nothing more.
    again = support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    assert (again.assigned, again.notified) == (0, 0) and len(notifier.sent) == 3
    assert [
        e["action"] for e in audit.entries(conn, target=f"support:{rows[codes[0]].n}:{codes[0]}")
    ] == ["support.notify", "support.route"]


def test_no_one_on_duty_gets_the_hotline(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an")
    code = lookup_code()
    ingest(db, "kiosk-1", "support", support_body(lookup_code=code))
    notifier = Recorder()
    sunday = TUESDAY_9 + timedelta(days=5)
    report = support.route_pending(conn, notifier, sunday, settings=SETTINGS)
    assert report.no_one_on_duty == 1 and notifier.sent == []
    [reply] = replies(conn, "kiosk-1")
    assert reply["status"] == "no-one-on-duty"
    assert reply["hotline"] == "1900 1234"
    assert "1900 1234" in reply["message"] and "không có cán bộ trực" in reply["message"]
    # Unknown office (the kiosk never said): also the hotline, nothing lost.
    ingest(db, "kiosk-9", "support", support_body())
    support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    assert replies(conn, "kiosk-9")[0]["status"] == "no-one-on-duty"


def test_notifier_failures_retried_with_backoff_then_given_up(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an")
    ingest(db, "kiosk-1", "support", support_body())
    notifier = Recorder(failing=True)
    t = TUESDAY_9
    support.route_pending(conn, notifier, t, settings=SETTINGS)
    [req] = support.list_requests(conn)
    assert (req.status, req.notify_state, req.notify_attempts) == ("assigned", "pending", 1)
    assert req.notify_error == "relay down"
    assert req.notify_next_at == pytest.approx(t.timestamp() + 10)
    # Not due yet: no attempt.
    support.route_pending(conn, notifier, t + timedelta(seconds=9), settings=SETTINGS)
    assert notifier.attempts == 1
    support.route_pending(conn, notifier, t + timedelta(seconds=10), settings=SETTINGS)
    [req] = support.list_requests(conn)
    assert req.notify_attempts == 2
    assert req.notify_next_at == pytest.approx(t.timestamp() + 10 + 20)
    assert replies(conn, "kiosk-1")[0]["status"] == "assigned"
    report = support.route_pending(conn, notifier, t + timedelta(seconds=30), settings=SETTINGS)
    assert report.gave_up == 1
    [req] = support.list_requests(conn)
    assert (req.status, req.notify_state, req.notify_attempts) == ("assigned", "failed", 3)
    [reply] = replies(conn, "kiosk-1")
    assert reply["status"] == "no-one-on-duty" and "Chưa liên lạc được" in reply["message"]
    # Never again, however long we wait.
    support.route_pending(conn, notifier, t + timedelta(days=1), settings=SETTINGS)
    assert notifier.attempts == 3
    assert support.backoff_s(10, SETTINGS) == 25


def test_recovering_notifier_delivers_on_retry(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an")
    ingest(db, "kiosk-1", "support", support_body())
    notifier = Recorder(failing=True)
    support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    notifier.failing = False
    support.route_pending(conn, notifier, TUESDAY_9 + timedelta(seconds=10), settings=SETTINGS)
    [req] = support.list_requests(conn)
    assert (req.notify_state, req.notify_attempts, req.notify_error) == ("sent", 2, None)
    assert len(notifier.sent) == 1


def test_no_notifier_configured_is_visible(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an")
    ingest(db, "kiosk-1", "support", support_body())
    support.route_pending(conn, None, TUESDAY_9, settings=SETTINGS)
    [req] = support.list_requests(conn)
    assert (req.status, req.notify_state) == ("assigned", "not-configured")


def test_routing_through_a_real_webhook(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an", channels=("zalo", "desk"))
    code = lookup_code()
    ingest(db, "kiosk-1", "support", support_body(lookup_code=code))
    secret = b"0123456789abcdef0123"
    with webhook_receiver(secret) as recv:
        support.route_pending(conn, WebhookNotifier(recv.url, secret), TUESDAY_9, settings=SETTINGS)
        [got] = recv.received
    assert got["lookup_code"] == code and got["staff_id"] == "an" and got["kiosk"] == "kiosk-1"
    [reply] = replies(conn, "kiosk-1")
    assert reply["channel"] == "zalo" and reply["hotline"] == "0912345678"


def test_home_visit_queue_assign_acknowledge_resolve(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an")
    code = lookup_code("TN")
    ingest(
        db,
        "kiosk-1",
        "support",
        support_body(
            type="home-visit",
            lookup_code=code,
            full_name="Lê Văn Tư",
            phone="0987654321",
            address="12 Lê Lợi, phường 3",
            reason="Người khuyết tật",
        ),
    )
    notifier = Recorder()
    support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    [req] = support.list_requests(conn, type="home-visit")
    assert req.status == "queued" and replies(conn, "kiosk-1") == [] and notifier.sent == []
    with pytest.raises(support.IllegalTransition):
        support.acknowledge(conn, "lan", req.n)
    t0 = req.received_at
    support.assign(conn, "lead", req.n, "an", now=t0 + 60, settings=SETTINGS)
    support.route_pending(conn, notifier, datetime.fromtimestamp(t0 + 61, VN), settings=SETTINGS)
    [sent] = notifier.sent
    assert sent.event == "home-visit" and sent.address == "12 Lê Lợi, phường 3"
    assert replies(conn, "kiosk-1")[0]["status"] == "assigned"
    support.acknowledge(conn, "an-token", req.n, now=t0 + 120)
    done = support.resolve(
        conn, "an-token", req.n, note="Đã đến nhà", now=t0 + 3600, settings=SETTINGS
    )
    assert done.status == "resolved" and done.resolution == "Đã đến nhà"
    times = done.as_dict()["response_s"]
    assert times["acknowledged"] == 120 and times["resolved"] == 3600
    assert replies(conn, "kiosk-1")[0]["status"] == "resolved"
    with pytest.raises(support.IllegalTransition, match="resolved"):
        support.resolve(conn, "an-token", req.n)
    with pytest.raises(support.RequestNotFound):
        support.resolve(conn, "an-token", 999)
    actions = [e["action"] for e in audit.entries(conn) if e["target"].startswith("support:")]
    assert actions == ["support.resolve", "support.acknowledge", "support.notify", "support.assign"]
    assert downlink_log.latest_cursor(conn) == 2  # assigned, resolved


ACTIONS = ("route", "assign", "acknowledge", "resolve")


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["help", "home-visit"]),
    on_duty=st.booleans(),
    steps=st.lists(st.sampled_from(ACTIONS), max_size=8),
)
def test_no_illegal_transition_is_accepted(
    tmp_path: Path, kind: str, on_duty: bool, steps: list[str]
) -> None:
    """Any sequence of actions: each is applied iff the table allows it, else refused."""
    db = tmp_path / f"t-{kind}-{on_duty}-{'.'.join(steps)}.db"
    conn = open_db(db, "kiosk-1")
    roster.add_staff(conn, "admin", staff_id="an", name="An", phone="0912345678", channels=["desk"])
    if on_duty:
        roster.add_shift(
            conn, "admin", staff_id="an", office=OFFICE, start="07:00", end="17:00", weekday=1
        )
    ingest(db, "kiosk-1", "support", support_body(type=kind))
    [req] = support.list_requests(conn)
    model = req.status
    for action in steps:
        allowed = model in support.TRANSITIONS[action]
        if action == "route":
            support.route_pending(conn, None, TUESDAY_9, settings=SETTINGS)
            if allowed:
                model = "assigned" if on_duty else "no-one-on-duty"
        else:
            call = {
                "assign": lambda: support.assign(conn, "t", req.n, "an"),
                "acknowledge": lambda: support.acknowledge(conn, "t", req.n, staff_id="an"),
                "resolve": lambda: support.resolve(conn, "t", req.n),
            }[action]
            if allowed:
                call()
                model = {
                    "assign": "assigned",
                    "acknowledge": "acknowledged",
                    "resolve": "resolved",
                }[action]
            else:
                with pytest.raises(support.IllegalTransition):
                    call()
        assert support.get_request(conn, req.n).status == model
    conn.close()
    db.unlink()


def test_a_flood_from_one_kiosk_pages_staff_once(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1", "kiosk-2")
    staff_on_duty(conn, "an", "binh")
    for _ in range(60):
        ingest(db, "kiosk-1", "support", support_body())
    ingest(db, "kiosk-2", "support", support_body())
    notifier = Recorder()
    t = TUESDAY_9
    report = support.route_pending(conn, notifier, t, settings=SETTINGS)
    assert report.assigned == 61
    assert sorted((n.kiosk, n.staff_id) for n in notifier.sent) == [
        ("kiosk-1", "an"),
        ("kiosk-2", "binh"),
    ]
    rows = support.list_requests(conn, limit=100)
    assert sum(r.notify_state == "coalesced" for r in rows) == 59
    assert {r.staff_id for r in rows if r.kiosk == "kiosk-1"} == {"an"}
    assert len(replies(conn, "kiosk-1")) == 60  # every request got its own answer
    # Past the window, a new request is routed afresh (and notified).
    later = t + timedelta(seconds=SETTINGS.coalesce_s + 1)
    ingest(db, "kiosk-1", "support", support_body())
    support.route_pending(conn, notifier, later, settings=SETTINGS)
    assert len(notifier.sent) == 3


def test_given_up_notification_tells_the_coalesced_requests_too(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an")
    for _ in range(3):
        ingest(db, "kiosk-1", "support", support_body())
    notifier = Recorder(failing=True)
    t = TUESDAY_9
    for step in (0, 10, 30):
        support.route_pending(conn, notifier, t + timedelta(seconds=step), settings=SETTINGS)
    assert notifier.attempts == 3
    statuses = [b["status"] for b in replies(conn, "kiosk-1")]
    assert statuses == ["no-one-on-duty"] * 3
    assert {r.notify_state for r in support.list_requests(conn)} == {"failed"}


def test_office_known_from_the_kiosks_dossiers_only(central_db: CentralDb) -> None:
    from tests.backoffice_records import Kiosk, dossier_body

    db = central_db.target
    conn = open_db(db)  # no office claimed by any kiosk
    staff_on_duty(conn, "an")
    Kiosk(db, "k-office-01").send("dossier", dossier_body(f"{OFFICE}-261201-1001"))
    ingest(db, "k-office-01", "support", support_body())
    report = support.route_pending(conn, Recorder(), TUESDAY_9, settings=SETTINGS)
    assert report.assigned == 1
    assert support.list_requests(conn)[0].office == OFFICE


def test_a_dead_relay_costs_one_attempt_per_round(central_db: CentralDb) -> None:
    db = central_db.target
    kiosks = [f"kiosk-{i}" for i in range(5)]
    conn = open_db(db, *kiosks)
    staff_on_duty(conn, "an")
    for kiosk in kiosks:
        ingest(db, kiosk, "support", support_body())
    notifier = Recorder(failing=True)
    report = support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    assert report.assigned == 5 and notifier.attempts == 1
    notifier.failing = False
    support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    assert len(notifier.sent) == 4  # the failed one waits for its backoff
    support.route_pending(conn, notifier, TUESDAY_9 + timedelta(seconds=10), settings=SETTINGS)
    assert len(notifier.sent) == 5


def test_response_report_per_office_and_day(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1", "kiosk-2")
    staff_on_duty(conn, "an")
    for kiosk in ("kiosk-1", "kiosk-2"):
        ingest(db, kiosk, "support", support_body())
    ingest(db, "kiosk-1", "support", support_body(type="home-visit", address="1 Lê Lợi"))
    support.route_pending(conn, Recorder(), TUESDAY_9, settings=SETTINGS)
    rows = support.list_requests(conn)
    base = {r.n: r.received_at for r in rows}
    helps = sorted(r.n for r in rows if r.type == "help")
    support.acknowledge(conn, "t", helps[0], now=base[helps[0]] + 30)
    support.acknowledge(conn, "t", helps[1], now=base[helps[1]] + 90)
    support.resolve(conn, "t", helps[0], now=base[helps[0]] + 600)
    [row] = support.response_report(conn)
    assert row["office"] == OFFICE
    assert (row["requests"], row["help"], row["home_visits"], row["open"]) == (3, 2, 1, 2)
    assert row["acknowledged_s"] == {"count": 2, "p50": 90.0, "p90": 90.0}
    assert row["resolved_s"] == {"count": 1, "p50": 600.0, "p90": 600.0}
    assert row["notified_s"]["count"] == 2
    assert support.response_report(conn, since="2099-01-01") == []
    assert support.response_report(conn, office="000.00.99.X01") == []
    with pytest.raises(support.SupportError, match="since"):
        support.response_report(conn, since="yesterday")


def test_assignee_removed_before_being_told_is_replaced(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an", "binh")
    ingest(db, "kiosk-1", "support", support_body())
    notifier = Recorder(failing=True)
    support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    assert support.list_requests(conn)[0].staff_id == "an"
    roster.remove_staff(conn, "admin", "an")
    notifier.failing = False
    later = TUESDAY_9 + timedelta(seconds=10)
    support.route_pending(conn, notifier, later, settings=SETTINGS)  # unassigned
    support.route_pending(conn, notifier, later, settings=SETTINGS)  # routed to binh, told
    [req] = support.list_requests(conn)
    assert (req.status, req.staff_id, req.notify_state) == ("assigned", "binh", "sent")
    assert [n.staff_id for n in notifier.sent] == ["binh"]
    assert replies(conn, "kiosk-1")[0]["staff_name"] == "Cán bộ binh"


def test_acknowledged_before_notified_is_not_paged_then(central_db: CentralDb) -> None:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    staff_on_duty(conn, "an")
    ingest(db, "kiosk-1", "support", support_body())
    notifier = Recorder(failing=True)
    support.route_pending(conn, notifier, TUESDAY_9, settings=SETTINGS)
    [req] = support.list_requests(conn)
    support.acknowledge(conn, "an", req.n)  # saw it on the console first
    roster.remove_staff(conn, "admin", "an")
    notifier.failing = False
    report = support.route_pending(
        conn, notifier, TUESDAY_9 + timedelta(hours=1), settings=SETTINGS
    )
    assert report.notified == 0 and notifier.sent == []
    [req] = support.list_requests(conn)
    assert (req.status, req.notify_state) == ("acknowledged", "cancelled")
