"""The support contract end to end without the transport: the kiosk application asks,
central routes, the reply read back on the kiosk's screen.

The records go from the kiosk's outbox into central's store as the collector
stores them (``process_batch``), and central's downlink items into the kiosk's
cache tables as the kiosk's inbox writes them (the shared ``downlink_items``
contract); the MQTT delivery in between is tested by the downlink's own tests.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from central import downlink_log, roster, support
from central.backoffice_db import Target
from edge_agent import downlink_cache
from edge_agent.app import KioskApp
from sync.envelope import records_topic
from tests import identity as keyring
from tests.backoffice_records import open_store
from tests.kiosk import KIOSK, app_config
from tests.pg import CentralDb

VN = timezone(timedelta(hours=7))


def deliver_up(app: KioskApp, db: Target) -> None:
    store = open_store(db)
    try:
        batch = [(records_topic(KIOSK), p.payload) for p in app.outbox.pending()]
        assert keyring.process_batch(store, batch).outcome.stored == len(batch)
    finally:
        store.close()


def deliver_down(app: KioskApp, conn: sqlite3.Connection) -> None:
    items, _, _ = downlink_log.items_since(conn, downlink_log.audiences_for(conn, KIOSK), 0)
    with app.outbox.reading() as kconn:
        kconn.executescript(downlink_cache.CONTRACT_DDL)
    with app.outbox.local_write() as kconn:
        for item in items:
            kconn.execute(
                "INSERT OR REPLACE INTO downlink_items VALUES (?, ?, ?, ?, ?)",
                (
                    item.kind,
                    item.key,
                    item.cursor,
                    json.dumps(item.body, ensure_ascii=False),
                    time.time(),
                ),
            )


def test_help_and_home_visit_from_the_kiosk_app_come_back_to_its_screen(
    tmp_path: Path, central_db: CentralDb
) -> None:
    cfg = app_config(tmp_path)
    app = KioskApp(cfg)
    db = central_db.target
    conn = central_db.connect()
    try:
        office = cfg.kiosk.agency
        downlink_log.claim_office(conn, KIOSK, office)
        roster.add_staff(
            conn,
            "admin",
            staff_id="lan",
            name="Nguyễn Thị Lan",
            phone="0912 345 678",
            channels=["desk"],
        )
        now = datetime.now(VN)
        roster.add_shift(
            conn,
            "admin",
            staff_id="lan",
            office=office,
            start="00:00",
            end="23:59",
            day=now.date().isoformat(),
        )
        help_ticket = app.support.request_help(source="button")
        visit = app.support.request_home_visit(
            full_name="Lê Văn Tư",
            phone="0987 654 321",
            address="12 Lê Lợi, phường 1",
            reason="Người cao tuổi",
        )
        assert app.support.status(help_ticket.lookup_code).status == "waiting"
        deliver_up(app, db)
        at = now.replace(hour=10, minute=0)
        report = support.route_pending(
            conn, None, at, settings=support.SupportSettings(hotline="1900 1234")
        )
        assert (report.projected, report.assigned) == (2, 1)
        deliver_down(app, conn)
        shown = app.support.status(help_ticket.lookup_code)
        assert shown.status == "assigned" and shown.staff_name == "Nguyễn Thị Lan"
        assert "đang đến" in shown.message
        assert app.support.status(visit.lookup_code).status == "waiting"  # queued at central
        [queued] = support.list_requests(conn, type="home-visit")
        assert queued.address == "12 Lê Lợi, phường 1" and queued.lookup_code == visit.lookup_code
        support.assign(conn, "lead", queued.n, "lan")
        support.resolve(conn, "lead", support.list_requests(conn, type="help")[0].n)
        deliver_down(app, conn)
        assert app.support.status(visit.lookup_code).status == "assigned"
        assert app.support.status(help_ticket.lookup_code).status == "resolved"
    finally:
        conn.close()
        app.stop()
