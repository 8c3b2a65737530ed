"""Central's downlink service on a real central database, its publish captured.

The MQTT side is covered by test_downlink_e2e.py; here every refusal and every
limit of one request is exercised directly.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from central import backoffice_db, downlink_log
from central.downlink import DownlinkService, DownlinkSettings, KioskThrottle, RpcFailure
from sync.downlink import (
    MAX_STATE_BYTES,
    RpcRequest,
    StateRequest,
    decode_nudge,
    decode_rpc_reply,
    decode_state_reply,
    up_topic,
)
from sync.ids import new_ulid
from tests import identity as keyring

K = "k-svc-01"
OFFICE = "000.00.14.H56"


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self.cond:
            self.messages.append((topic, payload))
            self.cond.notify_all()

    def wait(self, n: int) -> list[tuple[str, bytes]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.messages) >= n, timeout=30)
            return list(self.messages)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "central.db"
    backoffice_db.connect(path).close()
    return path


def _request(cursor: int = 0, *, kiosk: str = K, office: str = OFFICE, limit: int = 100) -> bytes:
    return StateRequest(
        kiosk=kiosk, request=new_ulid(), cursor=cursor, office=office, limit=limit
    ).encode()


def _append(conn: Any, audience: str, kind: str, key: str, body: dict[str, Any]) -> int:
    with backoffice_db.transaction(conn):
        return downlink_log.append(conn, audience, kind, key, body)


def test_refused_requests_get_no_reply(db: Path) -> None:
    sent = Sent()
    svc = DownlinkService(database=db, publish=sent, signing_key=keyring.CENTRAL_KEY)
    conn = backoffice_db.connect(db)
    with backoffice_db.transaction(conn):
        downlink_log.assign_office(conn, K, OFFICE)
    assert not svc.answer_state(conn, K, b"{not json")
    assert not svc.answer_state(conn, K, _request(kiosk="k-svc-02"))  # another kiosk's name
    assert not svc.answer_state(conn, K, _request(office="000.00.14.H57"))  # another office
    assert not svc.answer_state(
        conn,
        K,
        json.dumps(
            {
                "v": 1,
                "type": "state-request",
                "kiosk": K,
                "request": new_ulid(),
                "cursor": -1,
                "office": OFFICE,
                "limit": 100,
            }
        ).encode(),
    )
    assert sent.messages == []
    assert svc.counters.invalid == 3 and svc.counters.office_conflicts == 1
    assert svc.answer_state(conn, K, _request())
    assert len(sent.messages) == 1


def test_replies_stay_under_256_kib_and_page_the_rest(db: Path) -> None:
    sent = Sent()
    svc = DownlinkService(database=db, publish=sent, signing_key=keyring.CENTRAL_KEY)
    conn = backoffice_db.connect(db)
    big = "x" * (100 * 1024)
    for i in range(5):
        body = {
            "id": f"n{i}",
            "title": "Tin",
            "body": big,
            "published_at": "2026-12-01T09:00+07:00",
            "withdrawn": False,
        }
        _append(conn, "*", "news", f"n{i}", body)
    cursor, keys = 0, []
    for _ in range(10):
        svc.answer_state(conn, K, _request(cursor))
        payload = sent.messages[-1][1]
        assert len(payload) <= MAX_STATE_BYTES
        reply = decode_state_reply(payload)
        keys += [i.key for i in reply.items]
        cursor = reply.next_cursor
        if not reply.more:
            break
    assert keys == [f"n{i}" for i in range(5)]


def test_an_item_too_big_for_any_reply_is_skipped_not_wedging_the_kiosk(db: Path) -> None:
    sent = Sent()
    svc = DownlinkService(database=db, publish=sent, signing_key=keyring.CENTRAL_KEY)
    conn = backoffice_db.connect(db)
    huge = _append(conn, "*", "catalogue", "catalogue", {"version": 1, "p": "x" * 300_000})
    ok = _append(conn, "*", "news", "n1", {"id": "n1"})
    svc.answer_state(conn, K, _request(0))
    first = decode_state_reply(sent.messages[-1][1])
    assert first.items == () and first.next_cursor == huge and first.more
    svc.answer_state(conn, K, _request(first.next_cursor))
    second = decode_state_reply(sent.messages[-1][1])
    assert [i.cursor for i in second.items] == [ok]
    assert svc.counters.oversize_items == 1


def test_remote_calls_answer_with_a_result_or_a_named_error(db: Path) -> None:
    sent = Sent()
    svc = DownlinkService(
        database=db,
        publish=sent,
        settings=DownlinkSettings(rpc_per_kiosk=1),
        signing_key=keyring.CENTRAL_KEY,
    )
    release = threading.Event()

    def refuse(kiosk: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RpcFailure("expired", "Yêu cầu ký đã hết hạn")

    def crash(kiosk: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("provider secret abc123 in a traceback")

    def huge(kiosk: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"x": "a" * 70_000}

    def slow(kiosk: str, params: dict[str, Any]) -> dict[str, Any]:
        release.wait(30)
        return {"kiosk": kiosk}

    for name, fn in [("a.refuse", refuse), ("a.crash", crash), ("a.huge", huge), ("a.slow", slow)]:
        svc.register_rpc(name, fn)
    replies = {}
    for method in ["a.refuse", "a.crash", "a.huge", "a.none"]:
        reply = svc.call_handler(K, new_ulid(), method, {})
        replies[method] = (reply.ok, reply.error_code, reply.error_message)
    assert replies["a.refuse"] == (False, "expired", "Yêu cầu ký đã hết hạn")
    assert replies["a.crash"] == (False, "internal", "central could not complete the call")
    assert replies["a.huge"][:2] == (False, "internal")
    assert replies["a.none"][:2] == (False, "unknown-method")
    # At most rpc_per_kiosk calls of one kiosk in progress: the next is answered "busy".
    svc.start()
    try:
        for _ in range(2):
            call = RpcRequest(kiosk=K, request=new_ulid(), method="a.slow", params={})
            assert svc.submit(up_topic(K, "rpc"), call.encode())
        [(topic, payload)] = sent.wait(1)
        assert topic.endswith(f"/{K}/down/rpc") and decode_rpc_reply(payload).error_code == "busy"
        release.set()
        msgs = sent.wait(2)
        assert decode_rpc_reply(msgs[1][1]).result == {"kiosk": K}
    finally:
        release.set()
        svc.stop()


def test_the_nudger_reaches_the_kiosks_of_each_changed_audience(db: Path) -> None:
    sent = Sent()
    svc = DownlinkService(database=db, publish=sent, signing_key=keyring.CENTRAL_KEY)
    conn = backoffice_db.connect(db)
    with backoffice_db.transaction(conn):
        downlink_log.assign_office(conn, "k-a-01", OFFICE)
        downlink_log.assign_office(conn, "k-b-01", OFFICE)
        downlink_log.assign_office(conn, "k-c-01", "000.00.14.H57")
    svc.nudge_changed(conn)  # baseline
    code = f"{OFFICE}-261201-1001"
    newest = _append(conn, f"office:{OFFICE}", "dossier-status", code, {"code": code})
    assert svc.nudge_changed(conn) == 2
    assert sorted(t.split("/")[2] for t, _ in sent.messages) == ["k-a-01", "k-b-01"]
    assert {decode_nudge(p).cursor for _, p in sent.messages} == {newest}
    assert svc.nudge_changed(conn) == 0  # nothing new: nothing sent
    _append(conn, "*", "news", "n1", {"id": "n1"})
    assert svc.nudge_changed(conn) == 3


def test_the_throttle_is_per_kiosk() -> None:
    throttle = KioskThrottle(rate=1.0, burst=3, max_kiosks=2)
    assert [throttle.admit("k-a-01", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert throttle.admit("k-b-01", now=0.0)  # another kiosk has its own bucket
    assert throttle.admit("k-a-01", now=1.0)  # refilled at the rate
    assert not throttle.admit("k-a-01", now=1.0)
    throttle.admit("k-c-01", now=1.0)  # a third kiosk: the least recently seen is forgotten
    assert len(throttle._buckets) == 2


def test_submit_drops_what_the_queue_cannot_hold(db: Path) -> None:
    svc = DownlinkService(
        database=db,
        publish=Sent(),
        settings=DownlinkSettings(queue_max=10, burst=100),
        signing_key=keyring.CENTRAL_KEY,
    )
    taken = [svc.submit(up_topic(K, "state-request"), _request()) for _ in range(15)]
    assert taken.count(True) == 10 and svc.counters.queue_full == 5
    assert not svc.submit("aps/v1/k-svc-01/up/records", b"{}")
    assert not svc.submit("garbage", b"{}")
