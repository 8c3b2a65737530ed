"""The kiosk inbox (edge_agent/inbox.py) on a real kiosk database; the state machine's limits."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge_agent.inbox import Inbox
from sync.downlink import Item, StateReply
from sync.outbox import Outbox, OutboxFull
from sync.state_sync import SendRequest, StateSync
from tests import identity as keyring
from tests import stack

K = "k-inbox-01"
AT = "2026-12-01T09:00:00+07:00"


def news(cursor: int, nid: str, title: str = "Tin") -> Item:
    body = {"id": nid, "title": title, "body": "Nội dung.", "published_at": AT, "withdrawn": False}
    return Item(cursor=cursor, kind="news", key=nid, body=body)


def test_an_invalid_item_is_skipped_counted_and_does_not_hold_the_cursor(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "kiosk.db", K)
    inbox = Inbox(outbox)
    result = inbox.apply([news(1, "a"), news(2, "b", title=""), news(3, "c")], 5, now=100.0)
    assert (result.applied, result.invalid, result.cursor) == (2, 1, 5)
    assert inbox.get("news", "b") is None
    assert inbox.get("news", "c") is not None
    assert inbox.cursor() == 5 and inbox.last_reply_at() == 100.0
    assert inbox.counters.invalid == 1 and "body.title" in inbox.counters.last_invalid[0]
    # Its next version is applied as usual.
    inbox.apply([news(6, "b", title="Sửa")], 6)
    got = inbox.get("news", "b")
    assert got is not None and got.body["title"] == "Sửa"
    outbox.close()


def test_old_items_and_old_pages_change_nothing(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    inbox = Inbox(conn)
    inbox.apply([news(4, "a", "Bốn")], 10)
    result = inbox.apply([news(3, "a", "Ba"), news(2, "z")], 3)
    assert (result.applied, result.stale, result.cursor) == (0, 2, 10)
    got = inbox.get("news", "a")
    assert got is not None and got.body["title"] == "Bốn" and got.cursor == 4
    assert inbox.get("news", "z") is None
    assert inbox.cursor() == 10


def test_a_refusing_handler_leaves_nothing_behind_and_the_rest_applies(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    conn.execute("CREATE TABLE catalogue_rows (v INTEGER)")
    inbox = Inbox(conn)
    inbox.register_validator("catalogue", lambda body: None)

    def swap(c: sqlite3.Connection, item: Item) -> None:
        c.execute("INSERT INTO catalogue_rows VALUES (?)", (item.body["version"],))
        if item.body["version"] == 2:
            raise ValueError("procedure 1.001193: fee rule unknown")

    inbox.register("catalogue", swap)
    inbox.apply([Item(cursor=1, kind="catalogue", key="catalogue", body={"version": 1})], 1)
    result = inbox.apply(
        [Item(cursor=2, kind="catalogue", key="catalogue", body={"version": 2}), news(3, "n")], 3
    )
    assert (result.applied, result.failed, result.cursor) == (1, 1, 3)
    assert [r[0] for r in conn.execute("SELECT v FROM catalogue_rows")] == [1]
    got = inbox.get("catalogue", "catalogue")
    assert got is not None and got.body["version"] == 1  # the last good one stays


def test_a_database_failure_applies_nothing_of_the_page(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    inbox = Inbox(conn)

    def broken(c: sqlite3.Connection, item: Item) -> None:
        c.execute("INSERT INTO no_such_table VALUES (1)")

    inbox.register("news", broken)
    with pytest.raises(sqlite3.OperationalError):
        inbox.apply([news(1, "a")], 1)
    assert inbox.cursor() == 0 and inbox.get("news", "a") is None


def test_items_still_apply_when_the_outbox_refuses_new_filings(tmp_path: Path) -> None:
    db = tmp_path / "kiosk.db"
    stack.fill_outbox(db, 2, kiosk=K)
    outbox = Outbox(db, K, max_queued=2)
    with pytest.raises(OutboxFull):
        outbox.add("dossier", stack.dossier_body(9))
    inbox = Inbox(outbox)
    inbox.apply([news(1, "a")], 1)
    assert inbox.cursor() == 1 and inbox.get("news", "a") is not None
    outbox.close()


def test_tables_are_the_contract_names(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    Inbox(conn).apply([news(1, "a")], 1, now=5.0)
    rows = dict(conn.execute("SELECT name, value FROM downlink_state").fetchall())
    assert rows["cursor"] == "1" and rows["last_reply_at"] == "5.0"
    assert rows["kinds"] == "answer,dossier-status,faq,news,support-reply"  # see the upgrade test
    cols = [r[1] for r in conn.execute("PRAGMA table_info(downlink_items)")]
    assert cols == ["kind", "key", "cursor", "body", "applied_at"]


# -- the state machine's limits ------------------------------------------------------------------
def _machine(**kw: Any) -> StateSync:
    ids = iter(f"01JDX5V7Q6M1B8X3Z4K0N2R{n:03d}" for n in range(1000))
    return StateSync(kiosk=K, office="000.00.14.H56", new_id=lambda: next(ids), **kw)


def test_a_silent_central_gets_a_bounded_number_of_requests() -> None:
    m = _machine(reply_timeout_s=10, max_attempts=3, idle_retry_s=300)
    sent = len(m.connected(0.0, cursor=0))
    now = 0.0
    while now < 299:
        now += 1.0
        sent += len(m.tick(now))
    assert sent == 3 and m.counters.gave_up == 1  # then quiet until idle_retry_s
    sent += len(m.tick(now + 30 + 300))
    assert sent == 4


def test_a_collector_coming_online_replaces_a_request_that_went_to_nobody() -> None:
    # The kiosk asked before central's collector had subscribed: that request reached
    # no one. The collector's live "online" must not wait out reply_timeout_s (600 s).
    m = _machine(reply_timeout_s=600)
    [lost] = m.connected(0.0, cursor=4)
    assert isinstance(lost, SendRequest)
    [again] = m.poke(1.0)
    assert isinstance(again, SendRequest)
    assert again.request.request != lost.request.request and again.request.cursor == 4
    # A late reply to the lost request is ignored; the new one's is applied, once.
    late = StateReply(request=lost.request.request, items=(), next_cursor=9, more=False)
    assert m.reply(late, 1.1) == [] and m.counters.ignored_replies == 1
    fresh = StateReply(request=again.request.request, items=(), next_cursor=9, more=False)
    assert len(m.reply(fresh, 1.2)) == 1
    # While a page is being applied, a poke waits for the commit, then asks once.
    assert m.poke(1.3) == []
    after = m.applied(fresh, 1.4, cursor=9)
    assert len(after) == 1 and isinstance(after[0], SendRequest)


def test_nudges_ask_once_per_page_however_many_come() -> None:
    m = _machine()
    [first] = m.connected(0.0, cursor=5)
    assert isinstance(first, SendRequest)
    assert m.nudge(3, 0.1) == []  # not above the stored cursor
    for c in range(6, 200):
        assert m.nudge(c, 0.2) == []  # a request is out: remembered, not sent
    reply = StateReply(request=first.request.request, items=(), next_cursor=9, more=False)
    assert len(m.reply(reply, 0.3)) == 1  # ApplyPage
    again = m.applied(reply, 0.4, cursor=9)
    assert len(again) == 1 and isinstance(again[0], SendRequest)
    assert again[0].request.cursor == 9
    assert m.counters.requests == 2


def test_a_reply_to_another_request_is_ignored() -> None:
    m = _machine()
    m.connected(0.0, cursor=0)
    stranger = StateReply(
        request="01JDX5V7Q6M1B8X3Z4K0N2R999", items=(), next_cursor=99, more=False
    )
    assert m.reply(stranger, 0.1) == []
    assert m.counters.ignored_replies == 1 and m.cursor == 0


def test_for_app_builds_the_inbox_on_the_apps_outbox_and_attaches_state(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from edge_agent.inbox import for_app
    from sync.client import SyncClient, SyncSettings
    from sync.mqtt_link import MqttSettings

    db = tmp_path / "kiosk.db"
    outbox = Outbox(db, K)
    sync = SyncClient(
        database=db,
        kiosk=K,
        mqtt_settings=MqttSettings(),
        settings=SyncSettings(),
        identity=keyring.kiosk_identity(),
    )
    app = SimpleNamespace(
        outbox=outbox, sync=sync, cfg=SimpleNamespace(kiosk=SimpleNamespace(agency="000.00.14.H56"))
    )
    inbox = for_app(app)
    assert sync.state is not None and sync.state.office == "000.00.14.H56"
    inbox.apply([news(1, "a")], 1)
    assert sync._stored_cursor() == 1  # the client reads the cursor the inbox stored
    sync.outbox.close()
    outbox.close()


def test_an_upgrade_that_learns_a_kind_asks_from_the_start_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    old = Inbox(conn)  # knows no catalogue: the item is skipped, the cursor moves on
    result = old.apply(
        [news(1, "a"), Item(cursor=2, kind="catalogue", key="catalogue", body={"version": 1})], 2
    )
    assert (result.applied, result.invalid, old.cursor()) == (1, 1, 2)
    new = Inbox(conn)
    new.register_validator("catalogue", lambda body: None)
    assert new.cursor() == 0  # ask for everything once
    result = new.apply(
        [news(1, "a"), Item(cursor=2, kind="catalogue", key="catalogue", body={"version": 1})], 2
    )
    assert (result.applied, result.stale) == (1, 1)  # the news item is not applied twice
    assert new.get("catalogue", "catalogue") is not None
    assert new.cursor() == 2  # and from then on, as usual
