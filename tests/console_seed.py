"""A seeded central for the console's tests: two offices, kiosks in every overall state,
dossiers, questions and petitions, ratings, support requests, a roster, console accounts.

Records go in the way the collector stores them (signed, schema-checked, through
``process_batch``); the kiosks' status rows are written as the heartbeat handler would
leave them, at a fixed "now" the console's clock is set to.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg.conninfo import make_conninfo

from central import backoffice_db, downlink_log, roster
from central.backoffice_db import PgTarget, Target
from central.fleet.registry import Registry
from central.web.console import users
from central.web.console.settings import ConsoleSettings
from tests import identity as keyring
from tests.backoffice_records import Kiosk, dossier_body
from tests.pg import ADMIN_DSN, admin_connection
from tests.support_helpers import ingest, support_body

OFFICE_A = "000.00.14.H56"
OFFICE_B = "000.00.15.H56"
NOW = 1_796_000_000.0  # 2026-11-30, the console's clock in these tests
PASSWORD = "mật khẩu đủ dài 2026"

#: Cheap hashing for tests (the defaults cost 64 MiB a hash).
FAST = {"argon2_time_cost": 1, "argon2_memory_kib": 8192, "argon2_parallelism": 1}

ACCOUNTS = {
    "quan.tri": ("admin", None),
    "nguoi.xem": ("viewer", None),
    "can.bo.a": ("staff", OFFICE_A),
    "can.bo.b": ("staff", OFFICE_B),
}


def console_settings(**overrides: Any) -> ConsoleSettings:
    values: dict[str, Any] = {**FAST, "clock": lambda: NOW}
    values.update(overrides)
    return ConsoleSettings(**values)


def _beat(**extra: Any) -> dict[str, Any]:
    beat: dict[str, Any] = {
        "agent_version": "1.4.2",
        "catalogue": {"version": "2026.11.3"},
        "config_version": "c-17",
        "disk_free_bytes": 12 * 1024**3,
        "uptime_s": 86400,
        "oldest_queued_s": 0,
        "devices": {
            "printer": {"state": "ok"},
            "card_reader": {"state": "ok"},
            "scanner": {"state": "ok"},
        },
    }
    beat.update(extra)
    return beat


# kiosk -> (office, presence, heard seconds ago or None, heartbeat extras, queued)
KIOSKS: dict[str, tuple[str, str | None, float | None, dict[str, Any], int]] = {
    "k-a-ok": (OFFICE_A, "online", 20, {}, 0),
    "k-a-degraded": (
        OFFICE_A,
        "online",
        25,
        {
            "devices": {"printer": {"state": "paper_out"}, "card_reader": {"state": "ok"}},
            "last_error": "printer: paper out",
        },
        3,
    ),
    "k-a-offline": (OFFICE_A, "online", 3600, {}, 41),
    "k-a-updating": (
        OFFICE_A,
        "online",
        15,
        {"update": {"state": "downloading", "version": "1.5.0", "previous": "1.4.2"}},
        0,
    ),
    "k-a-inconsistent": (
        OFFICE_A,
        "online",
        30,
        {"update": {"state": "inconsistent", "reason": "rollback failed: disk full"}},
        0,
    ),
    "k-a-never": (OFFICE_A, None, None, {}, 0),
    "k-a-revoked": (OFFICE_A, "online", 40, {}, 0),
    "k-b-ok": (OFFICE_B, "online", 10, {}, 0),
    "k-b-offline": (OFFICE_B, "offline", 900, {}, 2),
}


@dataclass
class Seeded:
    db: Target
    support_a: int = 0
    support_b: int = 0
    dossier_a: str = f"{OFFICE_A}-261130-0001"
    dossier_b: str = f"{OFFICE_B}-261130-0001"
    inquiry_a: str = "HT-261130-1001"
    inquiry_b: str = "HT-261130-2001"
    kiosk_a: str = "k-a-ok"
    kiosk_b: str = "k-b-ok"
    alert_a: int = 0
    alert_offline_a: int = 0
    alert_b: int = 0
    job_a: str = ""  # queued on k-a-degraded
    job_b: str = ""  # queued on k-b-ok
    extra: dict[str, Any] = field(default_factory=dict)


def _status_rows(db: Target) -> None:
    conn = backoffice_db.connect(db)
    try:
        with backoffice_db.transaction(conn):
            for kiosk, (_, presence, ago, extra, queued) in KIOSKS.items():
                if ago is None:
                    continue
                heard = NOW - ago
                conn.execute(
                    "INSERT INTO kiosks (kiosk, state, state_at, last_heartbeat_at, queued,"
                    " heartbeat, clock_skew_s) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kiosk)"
                    " DO UPDATE SET state = excluded.state, state_at = excluded.state_at,"
                    " last_heartbeat_at = excluded.last_heartbeat_at, queued = excluded.queued,"
                    " heartbeat = excluded.heartbeat, clock_skew_s = excluded.clock_skew_s",
                    (
                        kiosk,
                        presence,
                        heard - (0 if presence == "offline" else 600),
                        heard - (1 if presence == "offline" else 0),
                        queued,
                        json.dumps(_beat(**extra)),
                        0.4,
                    ),
                )
    finally:
        conn.close()


def _registry(db: Target) -> None:
    registry = Registry(db)
    try:
        slots: dict[str, int] = {}
        for kiosk, (office, *_rest) in KIOSKS.items():
            slots[office] = slots.get(office, 0) + 1
            registry.add_kiosk(
                kiosk,
                office=office,
                slot=slots[office],
                agency=office,
                location=f"Quầy {slots[office]}",
                signing_key=keyring.KIOSK_KEY.public_key(),
            )
            if kiosk != "k-a-never":
                registry.mark_connected(kiosk)
        registry.revoke("k-a-revoked", reason="máy bị thay thế")
    finally:
        registry.close()


def seed(db: Target) -> Seeded:
    """Fill ``db`` (created) with the console's test fleet and data; returns the ids."""
    out = Seeded(db=db)
    _registry(db)
    conn = backoffice_db.connect(db)
    try:
        with backoffice_db.transaction(conn):
            for kiosk, (office, *_rest) in KIOSKS.items():
                downlink_log.assign_office(conn, kiosk, office)
        roster.add_staff(
            conn,
            "seed",
            staff_id="lan",
            name="Nguyễn Thị Lan",
            phone="0912345678",
            channels=["desk"],
        )
        users.ensure_schema(conn)
        settings = console_settings()
        for name, (role, office) in ACCOUNTS.items():
            users.add_user(
                conn, "seed", name, PASSWORD, role=role, office=office, settings=settings
            )
    finally:
        conn.close()
    a, b = Kiosk(db, "k-a-ok"), Kiosk(db, "k-b-ok")
    days = ["2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30"]
    for i, day in enumerate(days):
        short = day[2:].replace("-", "")
        for j in range(i + 1):
            code = f"{OFFICE_A}-{short}-{j + 1:04d}"
            a.send(
                "dossier",
                dossier_body(code, received_at=f"{day}T09:{10 + j}:00+07:00"),
                created=f"{day}T09:{10 + j}:00+07:00",
            )
        code = f"{OFFICE_B}-{short}-0001"
        b.send(
            "dossier",
            dossier_body(code, received_at=f"{day}T10:00:00+07:00"),
            created=f"{day}T10:00:00+07:00",
        )
    for k, code, category in (
        (a, out.inquiry_a, "question"),
        (a, "KN-261130-1002", "petition"),
        (b, out.inquiry_b, "question"),
    ):
        k.send(
            "feedback",
            {
                "category": category,
                "message": "Làm giấy khai sinh cần mang giấy tờ gì?",
                "lookup_code": code,
                "contact": "0912 345 678",
            },
            created="2026-11-30T08:30:00+07:00",
        )
    for k, level in (
        (a, "rat_hai_long"),
        (a, "rat_hai_long"),
        (a, "hai_long"),
        (a, "khong_hai_long"),
        (b, "hai_long"),
    ):
        k.send("rating", {"level": level}, created="2026-11-30T11:00:00+07:00")
    ingest(db, "k-a-ok", "support", support_body(message="Tôi cần hỗ trợ nộp hồ sơ"))
    ingest(db, "k-b-ok", "support", support_body(message="Máy in không ra phiếu"))
    conn = backoffice_db.connect(db)
    try:
        from central import support

        for r in support.list_requests(conn, limit=10):
            if r.kiosk == "k-a-ok":
                out.support_a = r.n
            if r.kiosk == "k-b-ok":
                out.support_b = r.n
    finally:
        conn.close()
    _status_rows(db)  # last: ingesting records measures the kiosks' clocks again
    _fleet_extras(db, out)
    return out


def _fleet_extras(db: Target, out: Seeded) -> None:
    """Health history, alerts (one per office, and a cleared one), a queued job per office."""
    from central.fleet import alert_engine, alerts, jobs

    conn = backoffice_db.connect(db)
    alerts.ensure_schema(conn)
    try:
        with backoffice_db.transaction(conn):
            for i in range(6):
                printer = "paper_out" if i >= 4 else "ok"
                conn.execute(
                    "INSERT INTO kiosk_health_history (kiosk, at, queued, oldest_queued_s,"
                    " disk_free_bytes, clock_skew_s, agent_version, devices, last_error)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        "k-a-degraded",
                        NOW - 3600 * (5 - i) - 25,
                        i,
                        0.0,
                        12 * 1024**3,
                        0.4,
                        "1.4.2",
                        json.dumps({"printer": printer, "card_reader": "ok"}),
                        "printer: paper out" if printer != "ok" else None,
                    ),
                )
            opened = alerts.apply(
                conn,
                [
                    alert_engine.Open(
                        kiosk="k-a-degraded",
                        kind="device-fault",
                        office=OFFICE_A,
                        severity="warning",
                        detail="printer paper_out",
                        at=NOW - 3000,
                    ),
                    alert_engine.Open(
                        kiosk="k-a-offline",
                        kind="offline",
                        office=OFFICE_A,
                        severity="critical",
                        detail="not heard for 3600 s",
                        at=NOW - 3000,
                    ),
                    alert_engine.Open(
                        kiosk="k-b-offline",
                        kind="offline",
                        office=OFFICE_B,
                        severity="critical",
                        detail="said offline",
                        at=NOW - 600,
                    ),
                ],
                NOW - 3000,
            )
        out.alert_a, out.alert_offline_a, out.alert_b = opened
        (job_a,) = jobs.create(
            conn, "print-test-slip", kiosks=["k-a-degraded"], actor="seed", now=NOW - 60
        )
        (job_b,) = jobs.create(conn, "selftest", kiosks=["k-b-ok"], actor="seed", now=NOW - 60)
        out.job_a, out.job_b = job_a.id, job_b.id
    finally:
        conn.close()


@contextmanager
def fresh_target(kind: str, tmp: Path) -> Iterator[Target]:
    """An empty central database of ``kind`` (``sqlite`` or ``postgresql``) for a module's
    fixtures (tests/pg.py's ``central_db`` is per test): ``tmp``'s file, or a PostgreSQL
    database made here and dropped after."""
    if kind == "sqlite":
        yield tmp / "central.db"
        return
    name = f"aps_test_{secrets.token_hex(6)}"
    with admin_connection() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield PgTarget(make_conninfo(ADMIN_DSN, dbname=name))
    finally:
        with admin_connection() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# -- an in-process console ----------------------------------------------------------------

ORIGIN = "http://testserver"


def app_for(db: Target, **settings: Any) -> Any:
    from central.web.app import create_app
    from central.web.common import ApiSettings

    return create_app(ApiSettings(database=db, console=console_settings(**settings)))


def csrf_of(html: str, name: str = "csrf") -> str:
    import re

    match = re.search(rf'name="{name}" value="([^"]+)"', html)
    if match is None:
        raise AssertionError(f"no {name} field in the page")
    return match.group(1)


def login(client: Any, name: str, password: str = PASSWORD, *, origin: str = ORIGIN) -> Any:
    """Log ``client`` (a TestClient, or an httpx client of a live server at ``origin``) in;
    returns the answer to the login POST."""
    form = client.get("/console/login")
    return client.post(
        "/console/login",
        data={
            "name": name,
            "password": password,
            "login_token": csrf_of(form.text, "login_token"),
            "next": "/console/",
        },
        headers={"Origin": origin},
        follow_redirects=False,
    )


def post(client: Any, path: str, data: dict[str, str] | None = None, *, page: str) -> Any:
    """POST a console form with the CSRF token read from ``page`` (a GET path)."""
    token = csrf_of(client.get(page).text)
    return client.post(
        path,
        data={"csrf": token, **(data or {})},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
    )
