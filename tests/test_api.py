"""Central's HTTP API, served by uvicorn on a loopback port, over a real database (the
API's tests on SQLite and PostgreSQL; the CLI's on SQLite: the CLI opens central.database)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from central import api_tokens, audit, backoffice_db, payments
from central.backoffice_db import Target
from central.cli import main as central_cli
from central.notify import SIGNATURE_HEADER, sign
from central.support import SupportSettings
from central.web.app import create_app
from central.web.common import ApiSettings
from central.web.server import ApiServer
from tests.pg import CentralDb
from tests.support_helpers import OFFICE, ingest, lookup_code, open_db, replies, support_body

PAY_SECRET = b"bank-secret-0123456789"


@dataclass
class Api:
    url: str
    db: Target
    token: str
    client: httpx.Client
    recorded: list[payments.PaymentNotice]

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.client.request(method, self.url + path, headers=headers, **kw)


@pytest.fixture
def api(central_db: CentralDb) -> Iterator[Api]:
    db = central_db.target
    conn = open_db(db, "kiosk-1")
    token = api_tokens.add(conn, "cli:admin", "desk-lan")
    conn.close()
    recorded: list[payments.PaymentNotice] = []

    def recorder(conn: Any, actor: str, notice: payments.PaymentNotice) -> dict[str, Any]:
        if not notice.dossier_code.startswith(OFFICE):
            raise LookupError(f"no dossier {notice.dossier_code}")
        recorded.append(notice)
        return {"code": notice.dossier_code, "paid": True}

    settings = ApiSettings(
        database=db,
        support=SupportSettings(hotline="1900 1234"),
        payment_secret=PAY_SECRET,
        payment_recorder=recorder,
        max_body_bytes=64 * 1024,
        page_max=50,
    )
    server = ApiServer(create_app(settings), "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(timeout=30) as client:
            yield Api(f"http://127.0.0.1:{server.bound_port}", db, token, client, recorded)
    finally:
        server.stop()


def err(reply: httpx.Response) -> dict[str, Any]:
    body = reply.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


def test_openapi_document_lists_the_endpoints(api: Api) -> None:
    doc = api.client.get(api.url + "/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/api/v1/roster/staff/{staff_id}",
        "/api/v1/support",
        "/api/v1/payments/callback",
        "/api/v1/support/{n}/resolve",
    } <= paths
    assert api.client.get(api.url + "/docs").status_code == 404


def test_every_endpoint_needs_a_live_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer aps_nope"}):
        reply = api.client.get(api.url + "/api/v1/roster/staff", headers=headers)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert err(reply)["field"] == "Authorization"
    assert api.call("GET", "/api/v1/roster/staff").status_code == 200
    conn = backoffice_db.connect(api.db)
    api_tokens.revoke(conn, "cli:admin", "desk-lan")
    conn.close()
    assert api.call("GET", "/api/v1/roster/staff").status_code == 401


def test_roster_crud_audited_with_the_token_name(api: Api) -> None:
    staff = {"name": "Nguyễn Thị Lan", "phone": "0912345678", "channels": ["desk", "zalo"]}
    reply = api.call("PUT", "/api/v1/roster/staff/lan.nguyen", json=staff)
    assert reply.status_code == 200, reply.text
    assert reply.json()["channels"] == ["desk", "zalo"]
    shift = {
        "staff": "lan.nguyen",
        "office": OFFICE,
        "start": "07:30",
        "end": "11:30",
        "weekday": 1,
    }
    reply = api.call("POST", "/api/v1/roster/shifts", json=shift)
    assert reply.status_code == 201, reply.text
    n = reply.json()["n"]
    assert (
        api.call("GET", "/api/v1/roster/shifts", params={"office": OFFICE}).json()["shifts"][0]["n"]
        == n
    )
    duty = api.call(
        "GET",
        "/api/v1/roster/on-duty",
        params={"office": OFFICE, "at": "2026-12-01T08:00:00+07:00"},
    ).json()
    assert [s["id"] for s in duty["staff"]] == ["lan.nguyen"]
    assert api.call("DELETE", f"/api/v1/roster/shifts/{n}").status_code == 200
    assert api.call("DELETE", "/api/v1/roster/staff/lan.nguyen").status_code == 200
    assert api.call("GET", "/api/v1/roster/staff").json() == {"staff": []}
    conn = backoffice_db.connect(api.db)
    rows = [e for e in audit.entries(conn) if e["action"].startswith("roster.")]
    conn.close()
    assert {e["actor"] for e in rows} == {"desk-lan"}
    assert len(rows) == 4


def test_bad_input_named_in_json_errors(api: Api) -> None:
    staff = {"name": "Lan", "phone": "0912345678", "channels": ["desk"]}
    cases = [
        ("PUT", "/api/v1/roster/staff/Bad Id", staff, 400, "id"),
        ("PUT", "/api/v1/roster/staff/lan", {**staff, "channels": ["sms"]}, 422, "body.channels.0"),
        ("PUT", "/api/v1/roster/staff/lan", {**staff, "extra": 1}, 422, "body.extra"),
        ("PUT", "/api/v1/roster/staff/lan", {**staff, "phone": "x"}, 400, "phone"),
        (
            "POST",
            "/api/v1/roster/shifts",
            {"staff": "nobody", "office": OFFICE, "start": "07:00", "end": "08:00", "weekday": 1},
            404,
            "staff",
        ),
        (
            "POST",
            "/api/v1/roster/shifts",
            {"staff": "nobody", "office": OFFICE, "start": "09:00", "end": "08:00", "weekday": 1},
            400,
            "end",
        ),
        ("GET", "/api/v1/support?limit=51", None, 400, "limit"),
        ("GET", "/api/v1/support?status=lost", None, 422, "query.status"),
        ("GET", "/api/v1/support/999", None, 404, "request"),
        ("POST", "/api/v1/support/999/resolve", {}, 404, "request"),
        ("GET", "/api/v1/roster/on-duty?office=x%20y", None, 400, "office"),
        ("GET", f"/api/v1/roster/on-duty?office={OFFICE}&at=2026-12-01T08:00", None, 400, "at"),
        (
            "GET",
            f"/api/v1/roster/on-duty?office={OFFICE}&at=9999-12-31T23:59-01:00",
            None,
            400,
            "at",
        ),
        ("GET", "/api/v1/support/99999999999999999999", None, 422, "path.n"),
        ("POST", "/api/v1/support/0/resolve", {}, 422, "path.n"),
        ("DELETE", "/api/v1/roster/shifts/-1", None, 422, "path.n"),
        ("GET", "/api/v1/support?before=99999999999999999999", None, 422, "query.before"),
    ]
    for method, path, body, status, field in cases:
        reply = api.call(method, path, json=body)
        assert reply.status_code == status, (path, reply.text)
        assert err(reply)["field"] == field, (path, reply.text)
    reply = api.call(
        "POST",
        "/api/v1/roster/shifts",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 422 and err(reply)["code"] == "invalid"


def test_oversized_bodies_refused_with_413(api: Api) -> None:
    big = b"x" * (10 * 1024 * 1024)
    reply = api.call(
        "PUT", "/api/v1/roster/staff/lan", content=big, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 413 and err(reply)["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(160):
            yield b"y" * (64 * 1024)

    reply = api.call(
        "PUT",
        "/api/v1/roster/staff/lan",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert reply.status_code == 413
    # Still serving.
    assert api.call("GET", "/api/v1/roster/staff").status_code == 200


def test_support_flow_through_the_api(api: Api) -> None:
    api.call(
        "PUT",
        "/api/v1/roster/staff/an",
        json={"name": "Trần An", "phone": "0912345678", "channels": ["hotline"]},
    )
    code = lookup_code("TN")
    ingest(
        api.db,
        "kiosk-1",
        "support",
        support_body(
            type="home-visit", lookup_code=code, address="5 Hai Bà Trưng", reason="Người cao tuổi"
        ),
    )
    ingest(api.db, "kiosk-1", "support", support_body())
    listed = api.call("GET", "/api/v1/support", params={"type": "home-visit"}).json()
    assert "requests" in listed, listed
    [req] = listed["requests"]
    assert req["status"] == "queued" and req["lookup_code"] == code
    n = req["n"]
    assert api.call("POST", f"/api/v1/support/{n}/acknowledge").status_code == 409
    reply = api.call("POST", f"/api/v1/support/{n}/assign", json={"staff": "an"})
    assert reply.status_code == 200 and reply.json()["status"] == "assigned"
    reply = api.call("POST", f"/api/v1/support/{n}/acknowledge", json={})
    assert reply.json()["status"] == "acknowledged"
    reply = api.call("POST", f"/api/v1/support/{n}/resolve", json={"note": "Đã hẹn lịch"})
    assert reply.json()["status"] == "resolved"
    assert reply.json()["response_s"]["resolved"] is not None
    assert api.call("POST", f"/api/v1/support/{n}/resolve").status_code == 409
    conn = backoffice_db.connect(api.db)
    statuses = [b["status"] for b in replies(conn, "kiosk-1")]
    actors = {e["actor"] for e in audit.entries(conn) if e["action"].startswith("support.")}
    conn.close()
    assert statuses == ["resolved"] and actors == {"desk-lan"}
    # Pagination: newest first, one per page.
    page = api.call("GET", "/api/v1/support", params={"limit": 1}).json()
    assert page["next_before"] == page["requests"][0]["n"]
    rest = api.call(
        "GET", "/api/v1/support", params={"limit": 1, "before": page["next_before"]}
    ).json()
    assert rest["requests"][0]["n"] < page["next_before"]
    assert (
        api.call("GET", "/api/v1/support", params={"open": True}).json()["requests"][0]["status"]
        == "pending"
    )


def notice(**kw: Any) -> bytes:
    body = {
        "reference": "VCB-20261201-0001",
        "dossier_code": f"{OFFICE}-261201-1001",
        "amount_vnd": 50000,
        "paid_at": "2026-12-01T10:00:00+07:00",
    }
    body.update(kw)
    return json.dumps(body).encode()


def post_callback(api: Api, raw: bytes, secret: bytes = PAY_SECRET) -> httpx.Response:
    return api.client.post(
        api.url + "/api/v1/payments/callback",
        content=raw,
        headers={SIGNATURE_HEADER: sign(secret, raw), "Content-Type": "application/json"},
    )


def test_payment_callback_signed_and_replay_safe(api: Api) -> None:
    raw = notice()
    reply = post_callback(api, raw)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "duplicate": False,
        "result": {"code": f"{OFFICE}-261201-1001", "paid": True},
    }
    again = post_callback(api, raw)
    assert again.json()["duplicate"] is True
    assert len(api.recorded) == 1
    other = post_callback(api, notice(amount_vnd=1))
    assert other.status_code == 409 and err(other)["field"] == "reference"
    assert len(api.recorded) == 1
    bad = post_callback(api, notice(reference="X-2"), secret=b"wrong-secret-000000")
    assert bad.status_code == 401 and err(bad)["field"] == "X-APS-Signature"
    unsigned = api.client.post(api.url + "/api/v1/payments/callback", content=notice())
    assert unsigned.status_code == 401
    for body, field in [
        (notice(reference="X-3", amount_vnd=0), "amount_vnd"),
        (notice(reference="X-4", amount_vnd="50000"), "amount_vnd"),
        (notice(reference="X-5", paid_at="yesterday"), "paid_at"),
        (notice(reference="bad ref"), "reference"),
        (notice(reference="X-6", dossier_code="nope"), "dossier_code"),
        (b"[1]", "body"),
    ]:
        reply = post_callback(api, body)
        assert reply.status_code == 400 and err(reply)["field"] == field, reply.text
    unknown = post_callback(api, notice(reference="X-7", dossier_code="000.00.99.X01-261201-1001"))
    assert unknown.status_code == 404 and err(unknown)["code"] == "unknown-dossier"
    assert len(api.recorded) == 1
    conn = backoffice_db.connect(api.db)
    rows = [e for e in audit.entries(conn) if e["action"] == "payment.callback"]
    conn.close()
    assert len(rows) == 1 and rows[0]["actor"] == "payment-callback"


def test_api_token_cli_prints_once_stores_the_hash(tmp_path: Path, central_db: CentralDb) -> None:
    db = tmp_path / "central.db"
    cfg = tmp_path / "central.toml"
    cfg.write_text("[central]\n" + central_db.central_toml(db))
    central_db.connect()  # central has run: the database exists
    runner = CliRunner()
    added = runner.invoke(central_cli, ["api-token", "add", "--config", str(cfg), "console"])
    assert added.exit_code == 0, added.output
    token = added.output.strip()
    assert token.startswith("aps_") and len(token) > 40
    if central_db.kind == "sqlite":
        assert token not in db.read_bytes().decode("latin-1")
    stored = central_db.connect().execute("SELECT * FROM api_tokens").fetchall()
    assert len(stored) == 1 and token not in repr(stored)
    listed = runner.invoke(central_cli, ["api-token", "list", "--config", str(cfg)])
    assert json.loads(listed.output)["name"] == "console" and token not in listed.output
    dup = runner.invoke(central_cli, ["api-token", "add", "--config", str(cfg), "console"])
    assert dup.exit_code != 0 and "name" in dup.output
    conn = central_db.connect()
    assert api_tokens.authenticate(conn, token) == "console"
    revoked = runner.invoke(central_cli, ["api-token", "revoke", "--config", str(cfg), "console"])
    assert revoked.exit_code == 0
    assert api_tokens.authenticate(conn, token) is None
    conn.close()


def test_roster_and_support_cli(tmp_path: Path, central_db: CentralDb) -> None:
    db = central_db.target
    cfg = tmp_path / "central.toml"
    cfg.write_text(
        "[central]\n"
        + central_db.central_toml(tmp_path / "central.db")
        + '[support]\nhotline = "1900 1234"\n'
    )
    central_db.connect()  # central has run: the database exists
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(central_cli, [*args[:2], "--config", str(cfg), *args[2:]])
        assert result.exit_code == 0, result.output
        return result.output

    run("roster", "add", "an", "--name", "Trần An", "--phone", "0912345678", "--channel", "desk")
    run(
        "roster",
        "shift",
        "an",
        "--office",
        OFFICE,
        "--start",
        "07:00",
        "--end",
        "17:00",
        "--day",
        "2026-12-01",
    )
    lines = [json.loads(x) for x in run("roster", "list").splitlines()]
    assert lines[0]["staff"]["id"] == "an" and lines[1]["shift"]["day"] == "2026-12-01"
    duty = run("roster", "on-duty", "--office", OFFICE, "--at", "2026-12-01T08:00:00+07:00")
    assert json.loads(duty)["id"] == "an"
    bad = runner.invoke(
        central_cli,
        [
            "roster",
            "shift",
            "--config",
            str(cfg),
            "an",
            "--office",
            OFFICE,
            "--start",
            "9",
            "--end",
            "10",
            "--weekday",
            "1",
        ],
    )
    assert bad.exit_code != 0 and "start" in bad.output
    conn = open_db(db, "kiosk-1")
    ingest(db, "kiosk-1", "support", support_body())
    conn.close()
    [req] = [json.loads(x) for x in run("support", "list").splitlines()]
    assert req["status"] == "pending"
    run("support", "assign", str(req["n"]), "an")
    assert json.loads(run("support", "ack", str(req["n"])))["status"] == "acknowledged"
    assert json.loads(run("support", "resolve", str(req["n"]), "--note", "ok"))["status"] == (
        "resolved"
    )
    again = runner.invoke(central_cli, ["support", "resolve", "--config", str(cfg), str(req["n"])])
    assert again.exit_code != 0 and "resolved" in again.output
    run("roster", "remove", "an")


def test_concurrent_changes_never_share_a_transaction(api: Api) -> None:
    """Parallel writers and readers: every change lands once, audited, no server error."""
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> list[int]:
        codes = []
        with httpx.Client(timeout=60) as client:
            for j in range(10):
                staff = {"name": f"Cán bộ {i}-{j}", "phone": "0912345678", "channels": ["desk"]}
                reply = client.put(
                    f"{api.url}/api/v1/roster/staff/s{i}-{j}",
                    json=staff,
                    headers={"Authorization": f"Bearer {api.token}"},
                )
                codes.append(reply.status_code)
                reply = client.get(
                    f"{api.url}/api/v1/roster/staff",
                    headers={"Authorization": f"Bearer {api.token}"},
                )
                codes.append(reply.status_code)
        return codes

    with ThreadPoolExecutor(8) as pool:
        results = [c for codes in pool.map(work, range(8)) for c in codes]
    assert set(results) == {200}
    listed = api.call("GET", "/api/v1/roster/staff").json()["staff"]
    assert len(listed) == 80
    conn = backoffice_db.connect(api.db)
    puts = [e for e in audit.entries(conn, limit=1000) if e["action"] == "roster.staff.put"]
    conn.close()
    assert len(puts) == 80


def test_listings_never_create_a_database(tmp_path: Path) -> None:
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'[central]\ndatabase = "{tmp_path / "typo.db"}"\n')
    runner = CliRunner()
    for args in (["support", "list"], ["roster", "list"], ["api-token", "list"]):
        result = runner.invoke(central_cli, [*args, "--config", str(cfg)])
        assert result.exit_code != 0 and "no central database" in result.output
    assert not (tmp_path / "typo.db").exists()


def test_api_command_serves_until_terminated(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    db = tmp_path / "central.db"
    cfg = tmp_path / "central.toml"
    cfg.write_text(f'[central]\ndatabase = "{db}"\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "central.cli",
            "api",
            "--config",
            str(cfg),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                doc = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "the API did not come up within 60 s"
                time.sleep(0.1)
        assert doc["info"]["title"] == "APS central API"
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/support", timeout=5).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
