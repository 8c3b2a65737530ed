"""Stateful test: real outbox + real sync machine + real central, faulty network.

A hypothesis ``RuleBasedStateMachine`` (the zarr-python pattern in
docs STYLE.md) drives the kiosk's SQLite :class:`sync.outbox.Outbox`, the
sans-I/O :class:`sync.machine.SyncMachine` and central's
:func:`central.ingest.classify` + :class:`central.store.SQLiteStore`, joined by
an in-memory network that drops, duplicates and reorders messages. The kiosk
and central both crash and restart. A small model (what the kiosk committed,
which ids central should never hold) is compared with both databases after
every step (invariants 2, 3 and 4), and a final drain over a reliable network
proves that every committed record ends up at central exactly once.

Actions are carried out by the agent's own step, ``sync.client.execute_actions``
(the up-link is an in-memory list instead of paho), and central's batches go
through the collector's own step, ``central.collector.process_batch``, which
builds acks only after ``SQLiteStore.ingest`` has returned (its commit).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from central.collector import process_batch
from central.store import SQLiteStore
from sync.client import SyncCounters, execute_actions
from sync.envelope import Ack, EnvelopeError, Rejection, acks_topic, decode_ack, records_topic
from sync.ids import new_ulid
from sync.machine import Action, LinkState, SyncMachine
from sync.outbox import Outbox

KIOSK = "sadec-p1-k01"
ACK_TIMEOUT = 30.0
WINDOW = 3

# Valid bodies of each kind central accepts, and one central must reject.
VALID_BODIES: dict[str, list[dict[str, Any]]] = {
    "dossier": [
        {
            "code": "000.00.14.H56-261126-3017",
            "procedure": "1.001193",
            "procedure_version": 1,
            "form": {"ho_ten": "Nguyễn Thị Ngọc Hường"},
            "applicant": {"full_name": "Nguyễn Thị Ngọc Hường", "id_number": "079123456789"},
            "attachments": [],
        }
    ],
    "support": [{"topic": "máy in", "message": "Hết giấy", "contact": "", "channel": "kiosk"}],
    "feedback": [
        {"category": "feedback", "message": "Nhanh gọn", "contact": ""},
        {"category": "petition", "message": "Kiến nghị", "contact": "0909"},
    ],
    "rating": [{"level": "rat_hai_long"}, {"level": "hai_long"}, {"level": "khong_hai_long"}],
}
BAD_RATING = {"level": "so-so"}  # fails central's body check: rejected, parked


@dataclass(frozen=True)
class Committed:
    seq: int
    kind: str
    valid: bool


class AbortFiling(Exception):
    """Raised inside a transaction to simulate a filing that fails half way."""


class SyncSystem(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="aps-stateful-"))
        self.kiosk_db = self.dir / "kiosk.db"
        self.central_db = self.dir / "central.db"
        self.now = 1000.0
        self.up: list[bytes] = []  # record envelopes on their way to central
        self.down: list[bytes] = []  # ack messages on their way to the kiosk
        # The model.
        self.committed: dict[str, Committed] = {}
        self.purged: set[str] = set()
        self.ever_acked: set[str] = set()
        self.outbox: Outbox | None = None
        self.store: SQLiteStore | None = None
        self.counters = SyncCounters()

    # -- set-up and the adapter ---------------------------------------------------
    @initialize(online=st.booleans())
    def start(self, online: bool) -> None:
        self.outbox = Outbox(self.kiosk_db, KIOSK)
        self.stream = self.outbox.stream
        self.machine = SyncMachine(window=WINDOW, ack_timeout=ACK_TIMEOUT)
        self.store = SQLiteStore(self.central_db)
        if online:
            self.execute(self.machine.connected(self.now))

    @property
    def ob(self) -> Outbox:
        assert self.outbox is not None
        return self.outbox

    @property
    def central(self) -> SQLiteStore:
        assert self.store is not None
        return self.store

    def execute(self, actions: list[Action]) -> None:
        """Carry out the machine's actions with the agent's own step (execute_actions)."""
        execute_actions(
            actions,
            machine=self.machine,
            outbox=self.ob,
            publish=self.publish,
            counters=self.counters,
            now=self.now,
        )
        self.ever_acked |= {r["id"] for r in self.ob.records("acked")}

    def publish(self, payload: bytes) -> None:
        assert self.machine.state is LinkState.ONLINE, "published while offline"
        assert len(self.machine.in_flight) <= WINDOW, "window overrun"
        self.up.append(payload)

    def central_ingest(self, payloads: list[bytes]) -> list[bytes]:
        """One collector batch through the collector's own step: commit, then acks."""
        result = process_batch(self.central, [(records_topic(KIOSK), p) for p in payloads])
        assert {t for t, _ in result.acks} <= {acks_topic(KIOSK)}
        return [payload for _, payload in result.acks]

    def deliver_first_ack(self) -> None:
        try:
            ack = decode_ack(self.down.pop(0))
        except EnvelopeError:
            return
        self.execute(self.machine.ack(ack, self.now))

    # -- the kiosk ------------------------------------------------------------------
    @rule(
        kinds=st.lists(
            st.sampled_from(["dossier", "support", "feedback", "rating", "bad-rating"]),
            min_size=1,
            max_size=4,
        ),
        variant=st.integers(0, 2),
        wake=st.booleans(),
    )
    def commit(self, kinds: list[str], variant: int, wake: bool) -> None:
        """A service files records in one transaction (dossier + its extras)."""
        with self.ob.transaction() as tx:
            made = []
            for kind in kinds:
                if kind == "bad-rating":
                    # As an older agent without the shared schema queued it: central parks it.
                    with mock.patch("sync.outbox.check_body"):
                        rec = tx.add("rating", dict(BAD_RATING))
                else:
                    bodies = VALID_BODIES[kind]
                    rec = tx.add(kind, dict(bodies[variant % len(bodies)]))
                made.append((rec, kind != "bad-rating"))
        # Promised only now, after the transaction returned.
        for rec, valid in made:
            assert rec.id not in self.committed
            self.committed[rec.id] = Committed(seq=rec.seq, kind=rec.kind, valid=valid)
        if wake:  # SyncClient.wake(): a tick without the clock moving
            self.execute(self.machine.tick(self.now))

    @rule()
    def commit_aborted(self) -> None:
        """A filing that fails half way leaves nothing in the outbox."""
        before = len(self.ob.records())
        try:
            with self.ob.transaction() as tx:
                tx.add("support", {"message": "sẽ bị huỷ"})
                raise AbortFiling
        except AbortFiling:
            pass
        assert len(self.ob.records()) == before

    @precondition(lambda self: self.machine.state is LinkState.OFFLINE)
    @rule()
    def connect(self) -> None:
        self.execute(self.machine.connected(self.now))

    @precondition(lambda self: self.machine.state is LinkState.ONLINE)
    @rule(lose_acks=st.booleans())
    def disconnect(self, lose_acks: bool) -> None:
        """The link drops; with a clean session the broker forgets acks for us."""
        self.execute(self.machine.disconnected())
        if lose_acks:
            self.down.clear()

    @rule(dt=st.sampled_from([0.0, 1.0, ACK_TIMEOUT / 2, ACK_TIMEOUT + 1.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.execute(self.machine.tick(self.now))

    @rule()
    def crash_kiosk(self) -> None:
        """kill -9 and restart: reopen the outbox file; in-flight is forgotten."""
        self.ob.close()
        self.outbox = Outbox(self.kiosk_db, KIOSK)
        assert self.outbox.stream == self.stream
        self.machine = SyncMachine(window=WINDOW, ack_timeout=ACK_TIMEOUT)

    @rule()
    def purge(self) -> None:
        """Retention 0: every acked record goes (invariant 8); nothing else does."""
        acked = {r["id"] for r in self.ob.records("acked")}
        self.ob.purge(retention_s=0, now=time.time() + 1)
        left = {r["id"] for r in self.ob.records()}
        assert not (acked & left), "an acked record survived the purge"
        self.purged |= acked

    # -- the network -----------------------------------------------------------------
    @precondition(lambda self: self.up)
    @rule(data=st.data())
    def deliver_up(self, data: st.DataObject) -> None:
        """Central takes a batch of in-transit records, in any order."""
        n = data.draw(st.integers(1, min(4, len(self.up))), label="batch size")
        batch = []
        for _ in range(n):
            i = data.draw(st.integers(0, len(self.up) - 1), label="message")
            batch.append(self.up.pop(i))
        self.down += self.central_ingest(batch)

    @precondition(lambda self: self.up or self.down)
    @rule()
    def network_round(self) -> None:
        """A good spell: everything in transit arrives, in order, once, until quiet."""
        while self.up or self.down:
            batch, self.up = self.up, []
            if batch:
                self.down += self.central_ingest(batch)
            while self.down:
                self.deliver_first_ack()

    @precondition(lambda self: self.up)
    @rule(data=st.data())
    def central_dies_after_commit(self, data: st.DataObject) -> None:
        """Central commits a batch, then dies before publishing the acks."""
        i = data.draw(st.integers(0, len(self.up) - 1), label="message")
        self.central_ingest([self.up.pop(i)])
        self.restart_central()

    @precondition(lambda self: self.down)
    @rule(data=st.data())
    def deliver_down(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.down) - 1), label="ack")
        try:
            ack = decode_ack(self.down.pop(i))
        except EnvelopeError:
            return  # SyncClient logs a malformed ack and ignores it
        self.execute(self.machine.ack(ack, self.now))

    @rule(
        which=st.sampled_from(
            ["bytes", "foreign-kiosk", "unknown-version", "ack-garbage", "ack-unknown-id"]
        ),
        junk=st.binary(max_size=64),
    )
    def inject_garbage(self, which: str, junk: bytes) -> None:
        """Noise on both links: none of it may reach the store or the outbox state."""
        if which == "bytes":
            self.up.append(junk)
        elif which in ("foreign-kiosk", "unknown-version"):
            env = {
                "v": 2 if which == "unknown-version" else 1,
                "type": "record",
                "kind": "support",
                "kiosk": KIOSK if which == "unknown-version" else "sadec-p1-k99",
                "stream": self.stream,
                "seq": 1,
                "id": new_ulid(),
                "created": "2026-11-26T09:15:02.123+07:00",
                "body": {"message": "không phải của tôi"},
            }
            self.up.append(json.dumps(env).encode())
        elif which == "ack-garbage":
            self.down.append(junk)
        else:
            self.down.append(
                Ack(acked=(new_ulid(),), rejected=(Rejection(id=new_ulid(), reason="?"),)).encode()
            )

    @precondition(lambda self: self.up or self.down)
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        link = self.up if self.up and (not self.down or data.draw(st.booleans())) else self.down
        link.pop(data.draw(st.integers(0, len(link) - 1), label="dropped"))

    @precondition(lambda self: self.up or self.down)
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        link = self.up if self.up and (not self.down or data.draw(st.booleans())) else self.down
        link.append(link[data.draw(st.integers(0, len(link) - 1), label="duplicated")])

    @rule()
    def restart_central(self) -> None:
        self.central.close()
        self.store = SQLiteStore(self.central_db)

    # -- invariants --------------------------------------------------------------------
    def central_rows(self) -> list[tuple[str, str, str, int, str]]:
        return self.central.conn.execute(
            "SELECT kiosk, id, stream, seq, kind FROM records"
        ).fetchall()

    @invariant()
    def kiosk_keeps_every_promise(self) -> None:
        """Every committed, unpurged record is in the outbox with its seq (inv. 1, 2)."""
        rows = {r["id"]: r for r in self.ob.records()}
        expected = set(self.committed) - self.purged
        assert set(rows) == expected
        for rid, row in rows.items():
            assert row["seq"] == self.committed[rid].seq
            if row["state"] == "rejected":
                assert not self.committed[rid].valid, f"valid record {rid} rejected: {row}"
        seqs = [c.seq for c in self.committed.values()]
        assert len(set(seqs)) == len(seqs), "a seq was reused"

    @invariant()
    def central_holds_only_committed_records_once(self) -> None:
        rows = self.central_rows()
        ids = [r[1] for r in rows]
        assert len(ids) == len(set(ids)), "a record id twice at central"
        for kiosk, rid, stream, seq, _kind in rows:
            assert kiosk == KIOSK and stream == self.stream
            assert rid in self.committed, f"central holds {rid}, never committed"
            assert self.committed[rid].valid, f"central stored invalid record {rid}"
            assert seq == self.committed[rid].seq
        dup_seqs = self.central.conn.execute(
            "SELECT kiosk, stream, seq FROM records GROUP BY kiosk, stream, seq HAVING count(*) > 1"
        ).fetchall()
        assert dup_seqs == []

    @invariant()
    def ack_implies_committed_at_central(self) -> None:
        at_central = {r[1] for r in self.central_rows()}
        missing = self.ever_acked - at_central
        assert not missing, f"kiosk marked acked but central lacks {missing}"
        # The same for records central rejected: parked in its dead letters.
        rejected = {r["id"] for r in self.ob.records("rejected")}
        dead = {
            row[0]
            for row in self.central.conn.execute(
                "SELECT record_id FROM dead_letters WHERE record_id IS NOT NULL"
            )
        }
        assert rejected <= dead

    # -- the end: a reliable network drains everything ----------------------------------
    def drain(self) -> None:
        for _ in range(200):
            if self.machine.state is LinkState.OFFLINE:
                self.connect()
            if self.up:
                batch, self.up = self.up, []
                self.down += self.central_ingest(batch)
            while self.down:
                self.deliver_first_ack()
            if not self.ob.pending() and not self.up and not self.down:
                return
            self.tick(ACK_TIMEOUT + 1.0)
        raise AssertionError(
            f"no progress: {len(self.ob.pending())} still queued, in flight "
            f"{sorted(self.machine.in_flight)}, cursor {self.machine.cursor}"
        )

    def teardown(self) -> None:
        try:
            if self.outbox is None or self.store is None:
                return
            self.drain()
            self.kiosk_keeps_every_promise()
            self.central_holds_only_committed_records_once()
            self.ack_implies_committed_at_central()
            valid = {rid for rid, c in self.committed.items() if c.valid}
            invalid = set(self.committed) - valid
            at_central = [r[1] for r in self.central_rows()]
            assert sorted(at_central) == sorted(valid), "not every record is at central once"
            states = {r["id"]: r["state"] for r in self.ob.records()}
            for rid in valid:
                assert rid in self.purged or states[rid] == "acked", rid
            for rid in invalid:
                assert states[rid] == "rejected", rid
            streams = self.central.streams(KIOSK)
            if not self.committed:
                assert streams == []
                return
            [state] = streams
            # Rejected records are parked, never stored, but their seqs are
            # accounted for: no gaps, whatever was rejected.
            n = len(self.committed)
            assert state.contiguous_seq == n and state.max_seq == n and state.gaps == ()
        finally:
            for closable in (self.outbox, self.store):
                if closable is not None:
                    with contextlib.suppress(sqlite3.Error):
                        closable.close()
            shutil.rmtree(self.dir, ignore_errors=True)


SyncSystem.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSyncSystem = SyncSystem.TestCase
