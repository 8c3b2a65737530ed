"""The downstream cursor under hypothesis: nothing skipped, nothing applied twice.

Real parts end to end except the network: central's downlink log and its
reply code (``DownlinkService.answer_state`` on a real SQLite file, or PostgreSQL), the
kiosk's :class:`StateSync` and :class:`Inbox` on another real SQLite file.
The "network" is two lists hypothesis reorders, duplicates, drops and
replays. The kiosk may crash at any step, including inside the transaction
that applies a page (the crash is an exception that escapes the inbox's
per-item handling, so SQLite rolls the whole page back), and comes back from
what is on its disk.

Invariants after every step:

- for every key the kiosk reads whose current item at central is at or below
  the kiosk's stored cursor, the kiosk holds exactly that item (nothing
  skipped), or, if that item is invalid, an older one or none;
- no key of another office or kiosk is ever held;
- a (kind, key) is applied only with growing cursors (the kind handler,
  writing in the same transaction, checks it), so nothing is applied twice;
- the stored cursor never goes down.

At the end the network turns honest and the kiosk must catch up completely.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from central import backoffice_db, downlink_log
from central.backoffice_db import PgTarget
from central.downlink import DownlinkService
from edge_agent.inbox import Inbox
from sync.downlink import Item, StateReply, StateRequest, decode_state_reply
from sync.state_sync import ApplyPage, SendRequest, StateAction, StateSync
from tests import identity as keyring

K, OTHER_K = "k-cur-01", "k-cur-02"
OFFICE, OTHER = "000.00.14.H56", "000.00.14.H57"
AT = "2026-12-01T09:00:00+07:00"


class Crash(BaseException):
    """The kiosk process dies here (not an Exception: nothing may catch it)."""


def _key_and_body(
    audience: int, n: int, rev: int, valid: bool
) -> tuple[str, str, str, dict[str, Any]]:
    """(audience, kind, key, body) of one append; keys differ between audiences."""
    if audience == 0:
        key = f"n{n}"
        body = {
            "id": key,
            "title": f"Tin {rev}" if valid else "",
            "body": "Nội dung.",
            "published_at": AT,
            "withdrawn": False,
        }
        return "*", "news", key, body
    if audience in (1, 2):
        agency = OFFICE if audience == 1 else OTHER
        key = f"{agency}-261201-{1000 + n}"
        body = {
            "code": key,
            "state": "processing" if valid else "lost",
            "paid": rev % 2 == 0,
            "changed_at": AT,
            "note": f"Lần {rev}",
        }
        return f"office:{agency}", "dossier-status", key, body
    kiosk = K if audience == 3 else OTHER_K
    key = f"HO-261201-{(1 if audience == 3 else 2) * 1000 + n}"
    body = {
        "lookup_code": key,
        "status": "assigned",
        "staff_name": "Chị Lan",
        "channel": "desk",
        "hotline": None,
        "message": f"Đang tới {rev}" if valid else "",
        "at": AT,
    }
    return f"kiosk:{kiosk}", "support-reply", key, body


class CursorMachine(RuleBasedStateMachine):
    def __init__(self, central: PgTarget | None = None) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="aps-cursor-"))
        if central is None:  # SQLite: a new file per example
            self.central = backoffice_db.connect(self.dir / "central.db")
        else:  # PostgreSQL: one database for the test, emptied for each example
            self.central = backoffice_db.connect(central)
            with backoffice_db.transaction(self.central):
                self.central.execute("DELETE FROM downlink")
                self.central.execute("DELETE FROM kiosk_offices")
        self.published: list[tuple[str, bytes]] = []
        self.service = DownlinkService(
            database=self.dir / "central.db",
            publish=lambda t, p: self.published.append((t, p)),
            signing_key=keyring.CENTRAL_KEY,
        )
        self.kiosk_db = self.dir / "kiosk.db"
        self.now = 0.0
        self.rev = 0
        self.requests: list[StateRequest] = []
        self.replies: list[StateReply] = []
        self.history: list[StateReply] = []
        self.violations: list[str] = []
        self.crash_armed = False
        self.last_cursor = 0
        # (audience, kind, key) -> whether its newest append was valid
        self.valid: dict[tuple[str, str, str], bool] = {}
        self._boot()

    # -- the kiosk ---------------------------------------------------------------------
    def _boot(self) -> None:
        self.kconn = sqlite3.connect(self.kiosk_db, isolation_level=None)
        self.kconn.execute(
            "CREATE TABLE IF NOT EXISTS applied_log (kind TEXT, key TEXT, cursor INTEGER)"
        )
        self.inbox = Inbox(self.kconn)
        for kind in ("news", "dossier-status", "support-reply"):
            self.inbox.register(kind, self._handler)
        self.machine = StateSync(
            kiosk=K,
            office=OFFICE,
            page_limit=3,
            reply_timeout_s=5.0,
            max_attempts=3,
            idle_retry_s=50.0,
        )

    def _handler(self, conn: sqlite3.Connection, item: Item) -> None:
        row = conn.execute(
            "SELECT max(cursor) FROM applied_log WHERE kind = ? AND key = ?", (item.kind, item.key)
        ).fetchone()
        if row[0] is not None and row[0] >= item.cursor:
            self.violations.append(
                f"{item.kind} {item.key} applied at {item.cursor} after {row[0]}"
            )
        conn.execute("INSERT INTO applied_log VALUES (?, ?, ?)", (item.kind, item.key, item.cursor))
        if self.crash_armed:
            self.crash_armed = False
            raise Crash

    def _run(self, actions: list[StateAction]) -> None:
        todo = list(actions)
        while todo:
            action = todo.pop(0)
            if isinstance(action, SendRequest):
                self.requests.append(action.request)
            elif isinstance(action, ApplyPage):
                try:
                    self.inbox.apply(action.reply.items, action.reply.next_cursor, now=self.now)
                except Crash:
                    self.crash()
                    return
                todo += self.machine.applied(action.reply, self.now, self.inbox.cursor())

    # -- central ----------------------------------------------------------------------------
    @rule(
        audience=st.integers(0, 4),
        n=st.integers(0, 3),
        valid=st.booleans() | st.just(True),
    )
    def append(self, audience: int, n: int, valid: bool) -> None:
        self.rev += 1
        aud, kind, key, body = _key_and_body(audience, n, self.rev, valid)
        with backoffice_db.transaction(self.central):
            downlink_log.append(self.central, aud, kind, key, body)
        self.valid[(aud, kind, key)] = valid

    @precondition(lambda self: self.requests)
    @rule(data=st.data(), twice=st.booleans())
    def central_answers(self, data: st.DataObject, twice: bool) -> None:
        i = data.draw(st.integers(0, len(self.requests) - 1))
        request = self.requests.pop(i)
        for _ in range(2 if twice else 1):
            self.published.clear()
            self.service.answer_state(self.central, K, request.encode())
            for topic, payload in self.published:
                assert topic.endswith(f"/{K}/down/state")
                self.replies.append(decode_state_reply(payload))

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def lose_request(self, data: st.DataObject) -> None:
        self.requests.pop(data.draw(st.integers(0, len(self.requests) - 1)))

    @precondition(lambda self: self.replies)
    @rule(data=st.data())
    def deliver_reply(self, data: st.DataObject) -> None:
        reply = self.replies.pop(data.draw(st.integers(0, len(self.replies) - 1)))
        self.history.append(reply)
        self._run(self.machine.reply(reply, self.now))

    @precondition(lambda self: self.replies)
    @rule(data=st.data())
    def lose_reply(self, data: st.DataObject) -> None:
        self.replies.pop(data.draw(st.integers(0, len(self.replies) - 1)))

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def replay_reply(self, data: st.DataObject) -> None:
        reply = self.history[data.draw(st.integers(0, len(self.history) - 1))]
        self._run(self.machine.reply(reply, self.now))

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def replay_into_the_inbox(self, data: st.DataObject) -> None:
        """An old page applied again behind the state machine's back (its replay check
        is one layer; the inbox's per-key cursors are the other, tested on their own)."""
        reply = self.history[data.draw(st.integers(0, len(self.history) - 1))]
        try:
            self.inbox.apply(reply.items, reply.next_cursor, now=self.now)
        except Crash:
            self.crash()

    @rule()
    def nudge(self) -> None:
        self._run(self.machine.nudge(downlink_log.latest_cursor(self.central), self.now))

    @rule(dt=st.sampled_from([0.5, 5.0, 60.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._run(self.machine.tick(self.now))

    @rule()
    def connect(self) -> None:
        if not self.machine.online:
            self._run(self.machine.connected(self.now, self.inbox.cursor()))

    @rule()
    def disconnect(self) -> None:
        self.machine.disconnected()

    @rule()
    def arm_crash_in_apply(self) -> None:
        self.crash_armed = True

    @rule()
    def crash(self) -> None:
        """The process dies: memory is gone, the network keeps what was in flight."""
        self.kconn.close()
        self.crash_armed = False
        self._boot()

    # -- invariants ---------------------------------------------------------------------------
    def _current(self) -> dict[tuple[str, str], tuple[int, dict[str, Any], bool]]:
        out = {}
        for aud in ("*", f"office:{OFFICE}", f"kiosk:{K}"):
            for kind in ("news", "dossier-status", "support-reply"):
                for item in downlink_log.current(self.central, aud, kind):
                    valid = self.valid[(aud, kind, item.key)]
                    out[(kind, item.key)] = (item.cursor, item.body, valid)
        return out

    @invariant()
    def nothing_skipped_nothing_foreign_nothing_twice(self) -> None:
        stored = self.inbox.cursor()
        assert stored >= self.last_cursor, "the cursor went back"
        self.last_cursor = stored
        assert not self.violations, self.violations
        current = self._current()
        for (kind, key), (cursor, body, valid) in current.items():
            held = self.inbox.get(kind, key)
            if cursor <= stored:
                if valid:
                    assert held is not None and held.cursor == cursor and held.body == body, (
                        kind,
                        key,
                        cursor,
                        stored,
                        held,
                    )
                else:
                    assert held is None or held.cursor < cursor
            else:
                assert held is None or held.cursor < cursor
        for kind in ("news", "dossier-status", "support-reply"):
            for held in self.inbox.all(kind):
                assert (kind, held.key) in current, f"foreign or unknown item {kind} {held.key}"

    def teardown(self) -> None:
        try:
            # The network turns honest: the kiosk must catch up completely.
            self.crash_armed = False
            self.replies.clear()
            self.requests.clear()
            self.machine.disconnected()
            self._run(self.machine.connected(self.now, self.inbox.cursor()))
            latest = downlink_log.latest_cursor(self.central)
            for _ in range(200):
                if self.requests:
                    request = self.requests.pop(0)
                    self.published.clear()
                    self.service.answer_state(self.central, K, request.encode())
                    for _topic, payload in self.published:
                        self._run(self.machine.reply(decode_state_reply(payload), self.now))
                elif self.inbox.cursor() == latest:
                    break
                else:
                    self.now += 100.0
                    self._run(self.machine.tick(self.now))
            assert self.inbox.cursor() == latest
            self.nothing_skipped_nothing_foreign_nothing_twice()
            for (kind, key), (cursor, _body, valid) in self._current().items():
                if valid:
                    held = self.inbox.get(kind, key)
                    assert held is not None and held.cursor == cursor
        finally:
            self.kconn.close()
            self.central.close()
            self.service.stop()
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_downstream_cursor(engine: str, request: pytest.FixtureRequest) -> None:
    central = PgTarget(request.getfixturevalue("pg").dsn) if engine == "postgresql" else None
    run_state_machine_as_test(
        lambda: CursorMachine(central),
        settings=settings(max_examples=60, stateful_step_count=40, deadline=None),
    )
