"""The sync state machine test, for any central store (the zarr-python pattern).

:class:`SyncSystem` is a hypothesis ``RuleBasedStateMachine`` that drives
several kiosks (each a real :class:`sync.outbox.Outbox` on its own SQLite file
and a real :class:`sync.machine.SyncMachine`, carried out by the agent's own
step ``sync.client.execute_actions``) and one central store, fed through the
collector's own step ``central.collector.process_batch``, over an in-memory
network that drops, duplicates and reorders. It talks to central only through
the :class:`central.store.Store` contract (``ingest`` via the collector step,
``streams``, ``stored_records``, ``parked_record_ids``, ``close``), so every
store runs the same machine: pass a factory that opens the store of one
example's directory (the same directory again after a restart).

The model: every record a kiosk committed (kiosk, stream, seq, valid or not),
the ids a dead kiosk had not committed, the records lost with a replaced SD
card (re-provisioning: a new outbox file, so a new stream id, for the same
kiosk), what each kiosk purged and ever saw acked.

After every step (invariants 1-4 and 8 of docs ARCHITECTURE):

- each kiosk's outbox holds exactly its stream's committed, unpurged records,
  with their seqs; only records central must refuse are ``rejected``;
- central holds only committed, valid records, each once, with the seq and
  stream they were committed with; records the kiosk marked acked are all
  there, records it marked rejected are all parked;
- sequence gaps are exact and real (:meth:`SyncSystem.gaps_are_real`): for
  each stream central reports, ``max_seq`` is the highest seq it accounted for
  (stored or parked), ``contiguous_seq`` the end of the gap-free prefix, the
  gaps exactly the seqs below ``max_seq`` it has not accounted for, and
  ``gap_since`` set exactly when there is a gap; and every gap is a record the
  kiosk really committed and has not been told about: still queued in its
  outbox (so it will come), or lost with a replaced card. No other gap may be
  reported, and no stream central holds nothing of.

A kiosk crash is a real crash: optionally with a filing's transaction open
(its records added and, with a tiny page cache, spilled into the WAL as
uncommitted frames), the kiosk's files are copied as they are at that instant
(db and WAL; the -shm index is rebuilt, as after a power cut) and the agent
restarts on that image; the dead process's connections are then thrown away.

Central's commit can fail too (a store whose every ingest raises): the
collector step must then raise and ack nothing, and the kiosks resend.

At the end a reliable network drains everything: every committed record of
every current outbox is at central exactly once (rejected ones parked), and
those streams are gap-free.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from central.collector import process_batch
from central.store import Store, StreamState
from sync.client import SyncCounters, accept_ack, execute_actions
from sync.envelope import (
    Ack,
    Rejection,
    acks_topic,
    records_topic,
)
from sync.envelope_signing import sign
from sync.ids import new_ulid
from sync.machine import Action, LinkState, SyncMachine
from sync.outbox import Outbox
from sync.wire_signing import encode_signed, record_digest, sign_ack
from tests import identity as keyring

StoreFactory = Callable[[Path], Store]
"""Opens central's store kept in a directory; the same directory again reopens it."""

KIOSK_IDS = ("sadec-p1-k01", "sadec-p1-k02")
FOREIGN_KIOSK = "sadec-p1-k99"
#: Someone with a broker credential (a collector's, another kiosk's) but no real key.
FORGER_KEY = Ed25519PrivateKey.generate()
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
KINDS = st.sampled_from(["dossier", "support", "feedback", "rating", "bad-rating"])
WHICH_KIOSK = st.integers(0, len(KIOSK_IDS) - 1)


def scratch_dir() -> str | None:
    """tmpfs when there is one: fsync costs nothing there, and the machine never needs it.

    Its crashes copy the files as the page cache holds them (a kill, not a power
    cut); whether commits reach the disk is tests/test_durable_fsync.py's job.
    """
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def gap_seqs(state: StreamState) -> set[int]:
    """The seqs a stream's state reports missing (the one place that reads the gap format).

    Gaps are ranges (``StreamState.gaps``, at most ``max_ranges`` of them; the
    machine's streams are small, and ``gap_count`` says whether all were listed).
    """
    assert len(state.gaps) == state.gap_count, "more gap ranges than listed"
    seqs = {q for lo, hi in state.gaps for q in range(lo, hi + 1)}
    assert len(seqs) == state.missing_count
    return seqs


@dataclass(frozen=True)
class Committed:
    kiosk: str
    stream: str
    seq: int
    kind: str
    valid: bool


@dataclass
class Kiosk:
    """One kiosk as the machine runs it: its current outbox file, link and sync machine."""

    id: str
    path: Path
    outbox: Outbox
    machine: SyncMachine
    down: list[bytes] = field(default_factory=list)  # acks on their way to this kiosk

    @property
    def stream(self) -> str:
        return self.outbox.stream


class AbortFiling(Exception):
    """Raised inside a transaction to simulate a filing that fails half way."""


class CommitFailed(Exception):
    """Central's store could not commit a batch (injected)."""


class RefusingStore:
    """Central's store with a failing disk: every ingest fails, nothing of it is kept."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def ingest(self, items: Any) -> Any:
        raise CommitFailed("injected: the store's transaction failed")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class SyncSystem(RuleBasedStateMachine):
    def __init__(self, store_factory: StoreFactory) -> None:
        super().__init__()
        self.store_factory = store_factory
        self.dir = Path(tempfile.mkdtemp(prefix="aps-stateful-", dir=scratch_dir()))
        self.central_dir = self.dir / "central"
        self.central_dir.mkdir()
        self.now = 1000.0
        self.files = 0
        self.up: list[tuple[str, bytes]] = []  # (topic, envelope) on their way to central
        self.kiosks: list[Kiosk] = []
        # The model.
        self.committed: dict[str, Committed] = {}
        self.never_committed: set[str] = set()  # added by a filing that died before COMMIT
        self.lost: set[str] = set()  # committed, unsynced, on a replaced card
        self.purged: set[str] = set()
        self.ever_acked: set[str] = set()
        self.counters = SyncCounters()
        self.store: Store | None = None

    # -- set-up and the adapters --------------------------------------------------
    def new_file(self, kiosk: str) -> Path:
        self.files += 1
        return self.dir / f"{kiosk}-{self.files}.db"

    @initialize(online=st.lists(st.booleans(), min_size=len(KIOSK_IDS), max_size=len(KIOSK_IDS)))
    def start(self, online: list[bool]) -> None:
        self.store = self.store_factory(self.central_dir)
        for kiosk_id, up in zip(KIOSK_IDS, online, strict=True):
            path = self.new_file(kiosk_id)
            kiosk = Kiosk(
                id=kiosk_id, path=path, outbox=self.open_outbox(path, kiosk_id), machine=self.sm()
            )
            self.kiosks.append(kiosk)
            if up:
                self.execute(kiosk, kiosk.machine.connected(self.now))

    @staticmethod
    def open_outbox(path: Path, kiosk: str) -> Outbox:
        return Outbox(path, kiosk, min_free_disk_bytes=0)

    @staticmethod
    def sm() -> SyncMachine:
        return SyncMachine(window=WINDOW, ack_timeout=ACK_TIMEOUT)

    @property
    def central(self) -> Store:
        assert self.store is not None
        return self.store

    def execute(self, kiosk: Kiosk, actions: list[Action]) -> None:
        """Carry out a kiosk's actions with the agent's own step (execute_actions)."""

        def publish(payload: bytes) -> None:
            assert kiosk.machine.state is LinkState.ONLINE, "published while offline"
            assert len(kiosk.machine.in_flight) <= WINDOW, "window overrun"
            self.up.append((records_topic(kiosk.id), payload))

        execute_actions(
            actions,
            machine=kiosk.machine,
            outbox=kiosk.outbox,
            publish=publish,
            counters=self.counters,
            now=self.now,
            signing_key=keyring.KIOSK_KEY,
        )
        self.ever_acked |= {r["id"] for r in kiosk.outbox.records("acked")}

    def central_ingest(self, batch: list[tuple[str, bytes]]) -> None:
        """One collector batch through the collector's own step: commit, then acks."""
        result = process_batch(self.central, batch, **keyring.CENTRAL)
        by_topic = {acks_topic(k.id): k for k in self.kiosks}
        for ack_topic, payload in result.acks:
            assert ack_topic in by_topic, f"central acked on {ack_topic}, no kiosk of ours"
            by_topic[ack_topic].down.append(payload)

    def deliver_ack(self, kiosk: Kiosk, i: int) -> None:
        # The agent's own check (signature, kiosk, digests): refused acks mark nothing.
        ack = accept_ack(
            kiosk.down.pop(i),
            kiosk=kiosk.id,
            identity=keyring.kiosk_identity(),
            outbox=kiosk.outbox,
            counters=self.counters,
        )
        if ack is not None:
            self.execute(kiosk, kiosk.machine.ack(ack, self.now))

    def links(self) -> Iterator[list[Any]]:
        if self.up:
            yield self.up
        for kiosk in self.kiosks:
            if kiosk.down:
                yield kiosk.down

    def any_in_transit(self) -> bool:
        return next(self.links(), None) is not None

    # -- the kiosks -----------------------------------------------------------------
    @rule(
        k=WHICH_KIOSK,
        kinds=st.lists(KINDS, min_size=1, max_size=4),
        variant=st.integers(0, 2),
        wake=st.booleans(),
    )
    def commit(self, k: int, kinds: list[str], variant: int, wake: bool) -> None:
        """A service files records in one transaction (dossier + its extras)."""
        kiosk = self.kiosks[k]
        with kiosk.outbox.transaction() as tx:
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
            self.committed[rec.id] = Committed(
                kiosk=kiosk.id, stream=kiosk.stream, seq=rec.seq, kind=rec.kind, valid=valid
            )
        if wake:  # SyncClient.wake(): a tick without the clock moving
            self.execute(kiosk, kiosk.machine.tick(self.now))

    @rule(k=WHICH_KIOSK)
    def commit_aborted(self, k: int) -> None:
        """A filing that fails half way leaves nothing in the outbox."""
        ob = self.kiosks[k].outbox
        before = len(ob.records())
        try:
            with ob.transaction() as tx:
                self.never_committed.add(tx.add("support", {"message": "sẽ bị huỷ"}).id)
                raise AbortFiling
        except AbortFiling:
            pass
        assert len(ob.records()) == before

    @rule(k=WHICH_KIOSK, lose_acks=st.booleans())
    def link(self, k: int, lose_acks: bool) -> None:
        """The link comes up, or drops (with a clean session acks in the broker are lost)."""
        kiosk = self.kiosks[k]
        if kiosk.machine.state is LinkState.OFFLINE:
            self.execute(kiosk, kiosk.machine.connected(self.now))
            return
        self.execute(kiosk, kiosk.machine.disconnected())
        if lose_acks:
            kiosk.down.clear()

    @rule(dt=st.sampled_from([0.0, 1.0, ACK_TIMEOUT / 2, ACK_TIMEOUT + 1.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        for kiosk in self.kiosks:
            self.execute(kiosk, kiosk.machine.tick(self.now))

    @rule(k=WHICH_KIOSK, mid_filing=st.booleans(), n=st.integers(1, 3), spill=st.booleans())
    def crash_kiosk(self, k: int, mid_filing: bool, n: int, spill: bool) -> None:
        """kill -9: the agent restarts on its files as they were at that instant.

        With ``mid_filing`` a second writer (the filer) has a transaction open,
        its records added; with ``spill`` its page cache is one page, so those
        records are already in the WAL as uncommitted frames.
        """
        kiosk = self.kiosks[k]
        filer: Outbox | None = None
        filing: contextlib.AbstractContextManager[Any] | None = None
        if mid_filing:
            filer = Outbox(kiosk.path, kiosk.id, min_free_disk_bytes=0, check_integrity=False)
            if spill:
                filer.conn.execute("PRAGMA cache_size=1")
            filing = filer.transaction()
            tx = filing.__enter__()
            for i in range(n):
                body = {"message": f"đang nộp dở {i} " + "x" * (3000 if spill else 10)}
                self.never_committed.add(tx.add("support", body).id)
            event(f"kiosk crashed mid-filing (spilled: {spill})")
        # The instant of death: what is on disk now is all the restarted agent gets.
        image = self.new_file(kiosk.id)
        for suffix in ("", "-wal"):
            src = Path(f"{kiosk.path}{suffix}")
            if src.exists():
                shutil.copyfile(src, f"{image}{suffix}")
        # The dead process's connections vanish; nothing they do now reaches the image.
        if filing is not None and filer is not None:
            with contextlib.suppress(AbortFiling):
                filing.__exit__(AbortFiling, AbortFiling(), None)
            filer.close()
        stream = kiosk.stream
        kiosk.outbox.close()
        self.remove_files(kiosk.path)
        kiosk.path = image
        kiosk.outbox = self.open_outbox(image, kiosk.id)
        assert kiosk.stream == stream, "a restart changed the stream id"
        kiosk.machine = self.sm()  # in-flight is forgotten; the outbox is the truth

    @rule(k=WHICH_KIOSK)
    def reprovision(self, k: int) -> None:
        """The SD card is replaced: a new outbox file, so a new stream, same kiosk id.

        Whatever the old card had not synced is lost with it (it may still be in
        transit, and then arrive); the acks for it will reach the new outbox,
        which holds no such ids and ignores them.
        """
        kiosk = self.kiosks[k]
        old = kiosk.stream
        unsynced = {r["id"] for r in kiosk.outbox.records("queued")}
        event(f"re-provisioned, unsynced records lost: {bool(unsynced)}")
        self.lost |= unsynced
        kiosk.outbox.close()
        self.remove_files(kiosk.path)
        kiosk.path = self.new_file(kiosk.id)
        kiosk.outbox = self.open_outbox(kiosk.path, kiosk.id)
        kiosk.machine = self.sm()
        kiosk.down.clear()
        assert kiosk.stream != old, "a new card must start a new stream"

    @rule(k=WHICH_KIOSK)
    def purge(self, k: int) -> None:
        """Retention 0: every acked record goes (invariant 8); nothing else does."""
        ob = self.kiosks[k].outbox
        acked = {r["id"] for r in ob.records("acked")}
        ob.purge(retention_s=0, now=time.time() + 1)
        left = {r["id"] for r in ob.records()}
        assert not (acked & left), "an acked record survived the purge"
        self.purged |= acked

    @staticmethod
    def remove_files(path: Path) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    # -- the network -----------------------------------------------------------------
    @precondition(lambda self: self.up)
    @rule(data=st.data())
    def deliver_up(self, data: st.DataObject) -> None:
        """Central takes a batch of in-transit messages, in any order."""
        n = data.draw(st.integers(1, min(4, len(self.up))), label="batch size")
        batch = []
        for _ in range(n):
            i = data.draw(st.integers(0, len(self.up) - 1), label="message")
            batch.append(self.up.pop(i))
        self.central_ingest(batch)

    @precondition(lambda self: self.any_in_transit())
    @rule()
    def network_round(self) -> None:
        """A good spell: everything in transit arrives, in order, once, until quiet."""
        while self.any_in_transit():
            batch, self.up = self.up, []
            if batch:
                self.central_ingest(batch)
            for kiosk in self.kiosks:
                while kiosk.down:
                    self.deliver_ack(kiosk, 0)

    @precondition(lambda self: self.up)
    @rule(data=st.data())
    def central_dies_after_commit(self, data: st.DataObject) -> None:
        """Central commits a batch, then dies before publishing the acks."""
        i = data.draw(st.integers(0, len(self.up) - 1), label="message")
        process_batch(self.central, [self.up.pop(i)], **keyring.CENTRAL)
        self.restart_central()

    @precondition(lambda self: self.up)
    @rule(data=st.data())
    def central_commit_fails(self, data: st.DataObject) -> None:
        """The collector takes a batch and its commit fails: nothing may be acked.

        As Collector._handle does, the batch is then dropped; the kiosks send
        those records again after their ack timeout.
        """
        n = data.draw(st.integers(1, min(4, len(self.up))), label="batch size")
        batch = [self.up.pop(0) for _ in range(n)]
        try:
            result = process_batch(
                RefusingStore(self.central),  # type: ignore[arg-type]
                batch,
                **keyring.CENTRAL,
            )
        except CommitFailed:
            return
        raise AssertionError(
            f"process_batch hid a failed commit and returned ({len(result.acks)} ack messages)"
        )

    @precondition(lambda self: any(k.down for k in self.kiosks))
    @rule(data=st.data())
    def deliver_down(self, data: st.DataObject) -> None:
        kiosk = data.draw(st.sampled_from([k for k in self.kiosks if k.down]), label="kiosk")
        self.deliver_ack(kiosk, data.draw(st.integers(0, len(kiosk.down) - 1), label="ack"))

    @rule(
        k=WHICH_KIOSK,
        which=st.sampled_from(
            ["bytes", "foreign-kiosk", "unknown-version", "ack-garbage", "ack-unknown-id"]
        ),
        junk=st.binary(max_size=64),
    )
    def inject_garbage(self, k: int, which: str, junk: bytes) -> None:
        """Noise on both links: none of it may reach the store or the outbox state."""
        kiosk = self.kiosks[k]
        if which == "bytes":
            self.up.append((records_topic(kiosk.id), junk))
        elif which in ("foreign-kiosk", "unknown-version"):
            env = {
                "v": 2 if which == "unknown-version" else 1,
                "type": "record",
                "kind": "support",
                "kiosk": kiosk.id if which == "unknown-version" else FOREIGN_KIOSK,
                "stream": kiosk.stream,
                "seq": 1,
                "id": new_ulid(),
                "created": "2026-11-26T09:15:02.123+07:00",
                "body": {"message": "không phải của tôi"},
            }
            self.up.append((records_topic(kiosk.id), json.dumps(env).encode()))
        elif which == "ack-garbage":
            kiosk.down.append(junk)
        else:
            # Signed by central, but naming ids and digests of no record of this kiosk.
            ack = Ack(
                kiosk=kiosk.id,
                acked=(new_ulid(),),
                digests=(record_digest({"id": "none"}),),
                rejected=(Rejection(id=new_ulid(), reason="?"),),
            )
            kiosk.down.append(sign_ack(ack, keyring.CENTRAL_KEY))

    @rule(k=WHICH_KIOSK, which=st.sampled_from(["forged-ack", "forged-record", "stale-ack"]))
    def forge(self, k: int, which: str) -> None:
        """The attacks of issue 9, by someone with a broker credential but no real key:

        - ``forged-ack``: an ack for every queued record of a kiosk, with the right
          digests, in central's exact format, signed by the forger. Acted on, it would
          mark them synced (and the purge delete them) while central lacks them.
        - ``forged-record``: a kiosk's queued record replayed under its real id with a body
          central must reject, signed by the forger. Rejected to the kiosk, it would park
          the real (valid) record for good.
        - ``stale-ack``: central's real, signed ack for this kiosk's records, but naming
          digests of other envelopes (what a store holding something else would say).
        """
        kiosk = self.kiosks[k]
        queued = [json.loads(bytes(p.payload)) for p in kiosk.outbox.pending(limit=WINDOW)]
        if which == "forged-record":
            if not queued:
                return
            env = dict(queued[0])
            env["body"] = {"level": "?"} if env["kind"] == "rating" else {}
            forged = encode_signed(sign("aps-record-v1", env, FORGER_KEY))
            self.up.append((records_topic(kiosk.id), forged))
            return
        ids = tuple(e["id"] for e in queued)
        if which == "forged-ack":
            digests = tuple(record_digest(e) for e in queued)
            key = FORGER_KEY
        else:
            digests = tuple(record_digest({**e, "seq": e["seq"] + 1}) for e in queued)
            key = keyring.CENTRAL_KEY
        kiosk.down.append(sign_ack(Ack(kiosk=kiosk.id, acked=ids, digests=digests), key))

    @precondition(lambda self: self.any_in_transit())
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        link = data.draw(st.sampled_from(list(self.links())), label="link")
        link.pop(data.draw(st.integers(0, len(link) - 1), label="dropped"))

    @precondition(lambda self: self.any_in_transit())
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        link = data.draw(st.sampled_from(list(self.links())), label="link")
        link.append(link[data.draw(st.integers(0, len(link) - 1), label="duplicated")])

    @rule()
    def restart_central(self) -> None:
        self.central.close()
        self.store = self.store_factory(self.central_dir)

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def kiosks_keep_every_promise(self) -> None:
        """Every committed, unpurged record of a kiosk's stream is in its outbox (inv. 1, 2)."""
        for kiosk in self.kiosks:
            rows = {r["id"]: r for r in kiosk.outbox.records()}
            expected = {
                rid
                for rid, c in self.committed.items()
                if (c.kiosk, c.stream) == (kiosk.id, kiosk.stream)
            } - self.purged
            assert set(rows) == expected, f"{kiosk.id}: outbox differs from what it promised"
            for rid, row in rows.items():
                assert row["seq"] == self.committed[rid].seq
                if row["state"] == "rejected":
                    assert not self.committed[rid].valid, f"valid record {rid} rejected: {row}"
        seqs = [(c.kiosk, c.stream, c.seq) for c in self.committed.values()]
        assert len(set(seqs)) == len(seqs), "a seq was reused for a committed record"

    @invariant()
    def central_holds_only_committed_records_once(self) -> None:
        held = self.central.stored_records()
        ids = [r.id for r in held]
        assert len(ids) == len(set(ids)), "a record id twice at central"
        for r in held:
            assert r.id not in self.never_committed, f"central holds {r.id}, never committed"
            c = self.committed.get(r.id)
            assert c is not None, f"central holds {r.id}, never committed"
            assert c.valid, f"central stored invalid record {r.id}"
            assert (r.kiosk, r.stream, r.seq, r.kind) == (c.kiosk, c.stream, c.seq, c.kind)
        places = [(r.kiosk, r.stream, r.seq) for r in held]
        assert len(places) == len(set(places)), "two records at central with one seq"

    @invariant()
    def ack_implies_committed_at_central(self) -> None:
        at_central = {r.id for r in self.central.stored_records()}
        missing = self.ever_acked - at_central
        assert not missing, f"kiosk marked acked but central lacks {missing}"
        # The same for records central rejected: parked at central.
        parked = self.central.parked_record_ids()
        assert parked <= set(self.committed), "central parked a record never committed"
        for kiosk in self.kiosks:
            rejected = {r["id"] for r in kiosk.outbox.records("rejected")}
            assert rejected <= parked, f"{kiosk.id}: rejected but not parked at central"

    @invariant()
    def gaps_are_real(self) -> None:
        """Gaps exactly as held, and each one a record still on its way (or lost with a card)."""
        accounted: dict[tuple[str, str], set[int]] = {}
        for r in self.central.stored_records():
            accounted.setdefault((r.kiosk, r.stream), set()).add(r.seq)
        for rid in self.central.parked_record_ids():
            c = self.committed[rid]
            accounted.setdefault((c.kiosk, c.stream), set()).add(c.seq)
        states = self.central.streams(max_ranges=1000)
        reported = {(s.kiosk, s.stream): s for s in states}
        assert len(reported) == len(states), "a stream reported twice"
        assert set(reported) == set(accounted), "streams reported != streams central holds"
        queued = {r["id"] for kiosk in self.kiosks for r in kiosk.outbox.records("queued")}
        by_place = {(c.kiosk, c.stream, c.seq): rid for rid, c in self.committed.items()}
        for key, state in reported.items():
            held = accounted[key]
            top = max(held)
            prefix = 0
            while prefix + 1 in held:
                prefix += 1
            gaps = gap_seqs(state)
            assert state.max_seq == top, f"{key}: max_seq {state.max_seq}, holds up to {top}"
            assert state.contiguous_seq == prefix, f"{key}: contiguous {state.contiguous_seq}"
            assert gaps == set(range(1, top + 1)) - held, f"{key}: gaps {sorted(gaps)}"
            assert (state.gap_since is not None) == bool(gaps), f"{key}: gap_since wrong"
            if gaps:
                event("a gap was reported")
            for q in gaps:
                rid = by_place.get((*key, q))
                assert rid is not None, f"{key}: gap at seq {q}, which was never committed"
                assert rid in queued or rid in self.lost, (
                    f"{key}: gap at seq {q}, but the kiosk no longer has {rid} queued"
                )

    # -- the end: a reliable network drains everything ----------------------------------
    def drain(self) -> None:
        for _ in range(200):
            for kiosk in self.kiosks:
                if kiosk.machine.state is LinkState.OFFLINE:
                    self.execute(kiosk, kiosk.machine.connected(self.now))
            if self.up:
                batch, self.up = self.up, []
                self.central_ingest(batch)
            for kiosk in self.kiosks:
                while kiosk.down:
                    self.deliver_ack(kiosk, 0)
            if not self.up and not any(k.outbox.pending() or k.down for k in self.kiosks):
                return
            self.tick(ACK_TIMEOUT + 1.0)
        raise AssertionError(
            "no progress: "
            + ", ".join(
                f"{k.id}: {len(k.outbox.pending())} queued, in flight {sorted(k.machine.in_flight)}"
                for k in self.kiosks
            )
        )

    def teardown(self) -> None:
        try:
            if self.store is None or len(self.kiosks) < len(KIOSK_IDS):
                return
            self.drain()
            self.kiosks_keep_every_promise()
            self.central_holds_only_committed_records_once()
            self.ack_implies_committed_at_central()
            self.gaps_are_real()
            at_central = [r.id for r in self.central.stored_records()]
            streams = {(s.kiosk, s.stream): s for s in self.central.streams(max_ranges=1000)}
            for kiosk in self.kiosks:
                mine = {
                    rid: c
                    for rid, c in self.committed.items()
                    if (c.kiosk, c.stream) == (kiosk.id, kiosk.stream)
                }
                valid = {rid for rid, c in mine.items() if c.valid}
                assert valid <= set(at_central), f"{kiosk.id}: not every record is at central"
                states = {r["id"]: r["state"] for r in kiosk.outbox.records()}
                for rid, c in mine.items():
                    want = "acked" if c.valid else "rejected"
                    assert rid in self.purged or states[rid] == want, (rid, states.get(rid))
                if mine:
                    # Rejected records are parked, never stored, but their seqs are
                    # accounted for: no gaps, whatever was rejected.
                    state = streams[(kiosk.id, kiosk.stream)]
                    n = len(mine)
                    assert (state.contiguous_seq, state.max_seq) == (n, n)
                    assert gap_seqs(state) == set()
            expected = {rid for rid, c in self.committed.items() if c.valid} - self.lost
            assert expected <= set(at_central)
        finally:
            closables: list[Any] = [k.outbox for k in self.kiosks]
            if self.store is not None:
                closables.append(self.store)
            for closable in closables:
                with contextlib.suppress(sqlite3.Error):
                    closable.close()
            shutil.rmtree(self.dir, ignore_errors=True)
