"""`aps-central run`'s staff side: the API thread and the support router, end to end.

No broker: the records are stored as the collector would store them; the
router and the API run as the service runs them (threads, real loopback
sockets, a real webhook receiver for the notification).
"""

from __future__ import annotations

import socket
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from central import api_tokens
from central.config import load_central_config
from central.mosquitto import MosquittoProcess
from central.service import CentralService
from central.web.server import ApiListenError
from tests import identity as keyring
from tests import stack
from tests.notify_receivers import webhook_receiver
from tests.support_helpers import OFFICE, ingest, open_db, replies, support_body

SECRET = "relay-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout_s} s")


def test_service_serves_the_api_and_routes_help_requests(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    port = free_port()
    with webhook_receiver(SECRET.encode()) as recv:
        cfg_file = tmp_path / "central.toml"
        cfg_file.write_text(
            f'[central]\ndatabase = "{db}"\n'
            f'[api]\nlisten = "127.0.0.1:{port}"\n'
            f'[notify]\nwebhook_url = "{recv.url}"\nwebhook_secret = "{SECRET}"\n'
            '[support]\nhotline = "1900 1234"\nroute_every_s = 0.1\n'
            + keyring.write_keys(tmp_path / "keys").central_toml()
        )
        service = CentralService(load_central_config(cfg_file))
        service.start_staff_side()
        try:
            conn = open_db(db, "kiosk-1")
            token = api_tokens.add(conn, "cli:admin", "console")
            conn.close()
            url = f"http://127.0.0.1:{port}/api/v1"
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(timeout=30, headers=auth) as client:
                now = datetime.now().astimezone()
                assert (
                    client.put(
                        f"{url}/roster/staff/an",
                        json={"name": "Trần An", "phone": "0912345678", "channels": ["desk"]},
                    ).status_code
                    == 200
                )
                # On duty today, all day, in the office's time zone.
                local = now.astimezone(service.cfg.support_settings().timezone_info())
                reply = client.post(
                    f"{url}/roster/shifts",
                    json={
                        "staff": "an",
                        "office": OFFICE,
                        "start": "00:00",
                        "end": "23:59",
                        "day": local.date().isoformat(),
                    },
                )
                assert reply.status_code == 201, reply.text
                if local.strftime("%H:%M") >= "23:58":
                    pytest.skip("the minute before midnight: the shift ends")
                ingest(db, "kiosk-1", "support", support_body())
                assigned = wait_for(
                    lambda: [
                        r
                        for r in client.get(f"{url}/support").json()["requests"]
                        if r["notify_state"] == "sent"
                    ]
                )
                assert assigned[0]["staff_id"] == "an"
                assert [n["staff_id"] for n in recv.received] == ["an"]
        finally:
            service.stop_staff_side()
    assert service.support_router is not None and service.support_router.rounds > 0
    # The port is free again once stopped.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_api_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg_file = tmp_path / "central.toml"
        cfg_file.write_text(
            f'[central]\ndatabase = "{tmp_path / "c.db"}"\n[api]\nlisten = "127.0.0.1:{port}"\n'
            + keyring.write_keys(tmp_path / "keys").central_toml()
        )
        service = CentralService(load_central_config(cfg_file))
        with pytest.raises(ApiListenError, match=f"127.0.0.1:{port}"):
            service.start_staff_side()
        service.stop_staff_side()


def test_aps_central_run_with_a_broker_serves_the_api_and_routes(
    tmp_path: Path, broker: MosquittoProcess
) -> None:
    """The real process: collector on the test broker, the API thread, the router."""
    db = tmp_path / "central.db"
    port = free_port()
    cfg = stack.write_central_config(tmp_path / "central.toml", db, broker.collector())
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write(
            f'\n[api]\nlisten = "127.0.0.1:{port}"\n[support]\nroute_every_s = 0.2\n'
            'hotline = "1900 1234"\n'
        )
    conn = open_db(db, "kiosk-1")
    token = api_tokens.add(conn, "cli:admin", "console")
    conn.close()
    central = stack.spawn("central.cli", cfg, tmp_path / "central.log")
    try:
        url = f"http://127.0.0.1:{port}/api/v1"

        def up() -> bool:
            try:
                return httpx.get(f"{url}/support", timeout=2).status_code == 401
            except httpx.HTTPError:
                assert central.poll() is None, (tmp_path / "central.log").read_text()
                return False

        wait_for(up, 60)
        ingest(db, "kiosk-1", "support", support_body())  # nobody on duty: the hotline
        auth = {"Authorization": f"Bearer {token}"}

        def routed() -> list[dict[str, object]]:
            rows = httpx.get(f"{url}/support", headers=auth, timeout=5).json()["requests"]
            return [r for r in rows if r["status"] == "no-one-on-duty"]

        assert wait_for(routed, 60)
        conn = open_db(db)
        [reply] = replies(conn, "kiosk-1")
        conn.close()
        assert reply["hotline"] == "1900 1234"
    finally:
        stack.stop(central)
    assert central.returncode == 0, (tmp_path / "central.log").read_text()
