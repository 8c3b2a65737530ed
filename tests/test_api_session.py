"""The citizen's session over the API: idle clock, activity, and the wipe when it ends.

The session's clock is a fake one the test moves (no sleeping for the timeout);
the app's own housekeeping tick, not a request, must notice the expiry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from edge_agent.devices import DeviceEvent
from tests.kiosk import app_config, card
from tests.test_api_local import COPY_FORM, next_event, sse

V1 = "/api/v1"
NAME = "Nguyễn Thị Ngọc Hường"
ID = "087205001234"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kiosk(tmp_path: Path, clock: Clock) -> Iterator[KioskApp]:
    app = KioskApp(app_config(tmp_path), session_clock=clock)
    app.start()  # the housekeeping tick runs
    yield app
    app.stop()


@pytest.fixture
def server(kiosk: KioskApp) -> Iterator[ApiServer]:
    srv = ApiServer(kiosk, "127.0.0.1:0")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def http(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        yield client


def scan(kiosk: KioskApp, name: str = NAME, number: str = ID) -> None:
    kiosk.handle_device_event(
        DeviceEvent(device="scanner", kind="identity", identity=card(name, number))
    )


def still_prepared(http: httpx.Client, sha: str) -> bool:
    """404: the API forgot the prepared filing; 422: it has it (the empty stroke is refused)."""
    bad = {"type": "handwritten", "width": 400, "height": 200, "strokes": [[]]}
    r = http.post(f"{V1}/filings", json={"document_sha256": sha, "signature": bad})
    assert r.status_code in (404, 422), r.text
    return r.status_code == 422


def everything_gettable(http: httpx.Client) -> dict[str, str]:
    """Every GET of the API (but the event stream), with parameters filled in."""
    doc = http.get(f"{V1}/openapi.json").json()
    filled = {
        "{code}": "2.000815",
        "{lookup_code}": "HO-261201-0001",
        "{transaction}": "t-1",
        "{preview_id}": "01ABC",
    }
    out: dict[str, str] = {}
    for path, ops in doc["paths"].items():
        if "get" not in ops or path.endswith("/events"):
            continue
        url = path
        for k, v in filled.items():
            url = url.replace(k, v)
        params = {"code": "000.00.14.H56-261201-0001"} if path.endswith("/tracking") else None
        out[path] = http.get(url, params=params).text
    return out


def test_idle_expiry_by_the_housekeeping_tick_wipes_everything(
    kiosk: KioskApp, server: ApiServer, http: httpx.Client, clock: Clock
) -> None:
    assert http.get(f"{V1}/session").json()["idle_timeout_s"] == 120.0
    scan(kiosk)
    prepared = http.post(
        f"{V1}/filings/prepare",
        json={"procedure": "2.000815", "form": COPY_FORM, "phone": "0912345678"},
    ).json()
    before = everything_gettable(http)
    assert NAME in before[f"{V1}/session"] and NAME in before[f"{V1}/catalogue/{{code}}"]
    with http.stream("GET", f"{V1}/events") as stream:
        events = sse(stream.iter_lines())
        assert next_event(events, "sync")["online"] is False
        clock.t += 121  # no request from here on: only the tick can see it
        assert next_event(events, "session") == {"active": False, "reason": "idle"}
    after = everything_gettable(http)
    assert len(after) >= 10, after.keys()
    for path, text in after.items():
        for secret in (NAME, ID, ID[-4:], "0912345678"):
            assert secret not in text, (path, secret)
    assert not still_prepared(http, prepared["document_sha256"])
    session = http.get(f"{V1}/session").json()
    assert session["active"] is False and session["idle_left_s"] is None


def test_activity_restarts_the_idle_clock(
    kiosk: KioskApp, http: httpx.Client, clock: Clock
) -> None:
    scan(kiosk)
    clock.t += 100
    assert http.get(f"{V1}/session").json()["idle_left_s"] == pytest.approx(20)
    touched = http.post(f"{V1}/session/activity").json()
    assert touched["active"] is True and touched["idle_left_s"] == pytest.approx(120)
    assert touched["full_name"] == NAME and ID not in json.dumps(touched)
    clock.t += 100
    assert http.get(f"{V1}/session").json()["active"] is True
    clock.t += 21
    assert http.post(f"{V1}/session/activity").json()["active"] is False


def test_a_typed_in_citizen_is_wiped_by_the_idle_clock_too(
    kiosk: KioskApp, http: httpx.Client, clock: Clock
) -> None:
    r = http.post(
        f"{V1}/filings/prepare",
        json={
            "procedure": "2.000815",
            "form": COPY_FORM,
            "applicant": {"full_name": "Lê Thị Hoa", "id_number": "087205009876"},
        },
    )
    assert r.status_code == 200, r.text
    sha = r.json()["document_sha256"]
    assert http.get(f"{V1}/session").json()["idle_left_s"] == pytest.approx(120)
    clock.t += 121
    assert http.get(f"{V1}/session").json()["idle_left_s"] is None
    assert not still_prepared(http, sha)


def reasons(events: Iterator[tuple[str, dict[str, Any]]], n: int) -> list[Any]:
    out: list[Any] = []
    for kind, data in events:
        if kind in ("session", "identity"):
            out.append(data.get("reason", data.get("full_name")))
            if len(out) == n:
                break
    return out


def test_ended_and_replaced_sessions_are_announced_and_forget_prepared_filings(
    kiosk: KioskApp, http: httpx.Client
) -> None:
    def prepare() -> str:
        r = http.post(f"{V1}/filings/prepare", json={"procedure": "2.000815", "form": COPY_FORM})
        assert r.status_code == 200, r.text
        return str(r.json()["document_sha256"])

    with http.stream("GET", f"{V1}/events") as stream:
        events = sse(stream.iter_lines())
        scan(kiosk)
        sha = prepare()
        scan(kiosk)  # the same card again: not a new citizen
        assert still_prepared(http, sha)
        http.delete(f"{V1}/session")
        assert not still_prepared(http, sha)
        scan(kiosk)
        sha = prepare()
        scan(kiosk, "Trần Văn Ân", "087205005555")  # the next citizen's card
        assert not still_prepared(http, sha)
        got = reasons(events, 6)
    assert got == [NAME, NAME, "ended", NAME, "replaced", "Trần Văn Ân"]
