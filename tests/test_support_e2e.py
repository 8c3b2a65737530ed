"""Help from the kiosk application to a staff member and back, through everything real:
the broker, central's collector and downlink service, the support router (as
``aps-central run`` runs it), a webhook receiver on loopback, and KioskApp read
as the screen reads it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from central import backoffice_db, roster, support
from central.mosquitto import MosquittoProcess
from central.notify import WebhookNotifier
from central.support_router import SupportRouter
from edge_agent.app import KioskApp
from tests.downlink_stack import start_central
from tests.kiosk import KIOSK, app_config
from tests.notify_receivers import webhook_receiver
from tests.waiting import wait_until

SECRET = b"relay-secret-0123456789"


def test_help_pressed_at_the_kiosk_brings_the_staff_name_back_to_its_screen(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    db = tmp_path / "central.db"
    cfg = app_config(tmp_path, broker.kiosk(KIOSK))
    office = cfg.kiosk.agency
    conn = backoffice_db.connect(db)
    roster.add_staff(
        conn,
        "admin",
        staff_id="lan",
        name="Nguyễn Thị Lan",
        phone="0912 345 678",
        channels=["desk"],
    )
    today = datetime.now(ZoneInfo(roster.DEFAULT_TIMEZONE))
    if today.strftime("%H:%M") >= "23:58":
        pytest.skip("the minute before midnight: the shift ends")
    roster.add_shift(
        conn,
        "admin",
        staff_id="lan",
        office=office,
        start="00:00",
        end="23:59",
        day=today.date().isoformat(),
    )
    settings = support.SupportSettings(hotline="1900 1234")
    central = start_central(broker, db)
    with webhook_receiver(SECRET) as relay:
        router = SupportRouter(db, WebhookNotifier(relay.url, SECRET), settings, every_s=0.1)
        router.start()
        app = KioskApp(cfg)
        app.start()
        try:
            ticket = app.support.request_help(source="button")
            assert app.support.status(ticket.lookup_code).status == "waiting"
            wait_until(
                lambda: app.support.status(ticket.lookup_code).status == "assigned",
                60,
                "the support reply on the kiosk",
            )
            shown = app.support.status(ticket.lookup_code)
            assert shown.staff_name == "Nguyễn Thị Lan" and "đang đến" in shown.message
            wait_until(lambda: len(relay.received) == 1, 30, "the staff member paged")
            assert relay.received[0]["lookup_code"] == ticket.lookup_code
            assert relay.received[0]["kiosk"] == KIOSK and relay.received[0]["office"] == office
            [req] = support.list_requests(conn)
            support.acknowledge(conn, "lan-console", req.n)
            support.resolve(conn, "lan-console", req.n, settings=settings)
            wait_until(
                lambda: app.support.status(ticket.lookup_code).status == "resolved",
                60,
                "the resolution on the kiosk",
            )
        finally:
            app.stop()
            router.stop()
            central.stop()
            conn.close()
    [done] = support.list_requests(backoffice_db.connect(db))
    assert done.status == "resolved" and done.notify_state == "sent"
    assert all(v is not None for v in done.as_dict()["response_s"].values())
