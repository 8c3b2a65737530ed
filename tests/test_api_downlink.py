"""Downlink arrivals reach the screen as ``downlink`` events: kind and key, no citizen data."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.mosquitto import MosquittoProcess
from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from sync.downlink import Item
from tests.downlink_stack import AT, OFFICE, answer_body, news_body, start_central, status_body
from tests.kiosk import KIOSK, app_config
from tests.test_api_local import next_event, sse

V1 = "/api/v1"


def faq_body(fid: str) -> dict[str, Any]:
    return {
        "id": fid,
        "question": "Lệ phí bao nhiêu?",
        "answer": "Xem trên màn hình.",
        "tags": [],
        "published_at": AT,
        "withdrawn": False,
    }


def drain(app: KioskApp) -> list[dict[str, Any]]:
    out = []
    while (notice := app.next_notice()) is not None:
        if notice.kind == "downlink":
            out.append(notice.data)
    return out


def downlinks(lines: Iterator[str], n: int, within_s: float) -> list[dict[str, Any]]:
    """The first ``n`` downlink events, or fewer when ``within_s`` runs out."""
    deadline = time.monotonic() + within_s
    got: list[dict[str, Any]] = []
    kind = ""
    for line in lines:  # a keep-alive comment comes every second (KEEPALIVE_S patched)
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "downlink":
            got.append(json.loads(line[6:]))
        if len(got) == n or time.monotonic() > deadline:
            break
    return got


def test_arrivals_from_central_reach_the_event_stream(
    broker: MosquittoProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edge_agent.api.app.KEEPALIVE_S", 1.0)
    central = start_central(broker, tmp_path / "central.db")
    app = KioskApp(app_config(tmp_path, broker.kiosk(KIOSK)))
    srv = ApiServer(app, "127.0.0.1:0")
    srv.start()
    app.start()
    code, lookup = f"{OFFICE}-261201-1001", "HT-261201-1001"
    try:
        with (
            httpx.Client(base_url=srv.url, timeout=30.0) as http,
            http.stream("GET", f"{V1}/events") as stream,
        ):
            lines = stream.iter_lines()
            events = sse(lines)
            while not next_event(events, "sync")["online"]:
                pass
            assert app.inbox is not None
            central.append(
                f"office:{OFFICE}", "dossier-status", code, status_body(code, "received")
            )
            central.append(f"office:{OFFICE}", "answer", lookup, answer_body(lookup, "Thứ Sáu."))
            central.append("*", "news", "n-1", news_body("n-1", "Nghỉ lễ"))
            got = downlinks(lines, 3, within_s=30)
    finally:
        srv.stop()
        app.stop()
        central.stop()
    assert sorted(got, key=str) == sorted(
        [
            {"kind": "dossier-status", "key": code},
            {"kind": "answer", "key": lookup},
            {"kind": "news", "key": None},
        ],
        key=str,
    )


def test_one_notice_per_kind_for_lists_and_floods_and_none_for_stale(tmp_path: Path) -> None:
    app = KioskApp(app_config(tmp_path))
    try:
        assert app.inbox is not None
        drain(app)
        codes = [f"{OFFICE}-261201-{1001 + n}" for n in range(12)]
        page = [
            Item(cursor=n + 1, kind="dossier-status", key=c, body=status_body(c, "received"))
            for n, c in enumerate(codes)
        ]
        page += [
            Item(cursor=20, kind="faq", key="f-1", body=faq_body("f-1")),
            Item(cursor=21, kind="news", key="n-1", body=news_body("n-1", "Một")),
            Item(cursor=22, kind="news", key="n-2", body=news_body("n-2", "Hai")),
            Item(cursor=23, kind="support-reply", key="HO-261201-1001", body={"bad": 1}),
        ]
        app.inbox.apply(page, 23)  # type: ignore[attr-defined]
        assert drain(app) == [
            {"kind": "dossier-status", "key": None},  # 12 at once: "reload", not 12 events
            {"kind": "faq", "key": None},
            {"kind": "news", "key": None},
        ]  # the invalid support-reply is not news
        app.inbox.apply(page, 23)  # type: ignore[attr-defined]
        assert drain(app) == []  # stale: nothing new
        one = Item(
            cursor=24, kind="dossier-status", key=codes[0], body=status_body(codes[0], "processing")
        )
        app.inbox.apply([one], 24)  # type: ignore[attr-defined]
        assert drain(app) == [{"kind": "dossier-status", "key": codes[0]}]
    finally:
        app.stop()
