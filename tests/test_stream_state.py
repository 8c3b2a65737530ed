"""Central's per-stream sequence state: ranges, O(batch) cost, parked seq jumps, bounded reports.

Issue 6, items 2 and 3: a seq of 2^63-1 must not make central materialise
every missing seq, gaps are ranges, and the work per batch does not grow with
the records a stream already holds.
"""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.cli import main as central_cli
from central.store import SQLiteStore, Store
from sync.envelope import MAX_SEQ, decode_ack, records_topic
from sync.ids import new_stream_id, new_ulid
from tests import identity as keyring
from tests import records, stack
from tests.pg import StoreFactory

KIOSK = "k-seq-01"
TOPIC = records_topic(KIOSK)


_rec = partial(records.rating, kiosk=KIOSK)


def _model_gaps(seen: set[int]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    top = max(seen, default=0)
    q = 1
    while q <= top:
        if q in seen:
            q += 1
            continue
        lo = q
        while q not in seen:
            q += 1
        out.append((lo, q - 1))
    return tuple(out)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    order=st.permutations(list(range(1, 41))).flatmap(
        lambda p: st.tuples(st.just(p), st.integers(1, 40))
    ),
    bad=st.sets(st.integers(1, 40), max_size=6),
    duplicates=st.lists(st.integers(0, 39), max_size=5),
)
def test_gap_ranges_follow_the_seqs_accounted_for_after_every_batch(
    store_factory: StoreFactory,
    order: tuple[list[int], int],
    bad: set[int],
    duplicates: list[int],
) -> None:
    """Any arrival order, in any batch sizes, with parked (rejected) seqs and resends."""
    seqs, cut = order
    stream = new_stream_id()
    payloads = {q: _rec(q, stream, level="so-so" if q in bad else "hai_long") for q in seqs}
    arrivals = [payloads[q] for q in seqs] + [payloads[seqs[i]] for i in duplicates]
    store = store_factory(f"c-{new_ulid()}")  # one per example: a file or a schema
    seen: set[int] = set()
    for start in range(0, len(arrivals), cut):
        part = arrivals[start : start + cut]
        keyring.process_batch(store, [(TOPIC, p) for p in part])
        seen |= {json.loads(p)["seq"] for p in part}
        [state] = store.streams(KIOSK, max_ranges=100)
        gaps = _model_gaps(seen)
        assert state.gaps == gaps
        assert state.gap_count == len(gaps)
        assert state.missing_count == sum(hi - lo + 1 for lo, hi in gaps)
        assert state.max_seq == max(seen)
        assert state.contiguous_seq == (gaps[0][0] - 1 if gaps else max(seen))
        assert (state.gap_since is None) == (not gaps)
    store.close()


def test_the_protocol_maximum_seq_is_parked_not_stored(store_factory: StoreFactory) -> None:
    store = store_factory()
    stream = new_stream_id()
    first, far = _rec(1, stream), _rec(MAX_SEQ, stream)
    result = keyring.process_batch(store, [(TOPIC, first), (TOPIC, far)])
    [ack] = [decode_ack(p) for _, p in result.acks]
    assert ack.acked == (json.loads(first)["id"],)
    [parked] = ack.rejected
    assert parked.id == json.loads(far)["id"] and parked.reason.startswith("seq-jump")
    assert "max_seq_jump" in parked.reason
    [state] = store.streams(KIOSK)
    assert (state.contiguous_seq, state.max_seq, state.gaps) == (1, 1, ())
    assert store.record_ids(KIOSK) == [json.loads(first)["id"]]
    assert store.counter("seq_jumps_parked") == 1
    # Resent, it is parked again, never opening a gap; the stream goes on.
    keyring.process_batch(store, [(TOPIC, far), (TOPIC, _rec(2, stream))])
    [state] = store.streams(KIOSK)
    assert (state.contiguous_seq, state.max_seq, state.gap_count) == (2, 2, 0)
    store.close()


def _gaps_of_a_hundred_million(store: Store) -> None:
    """Seqs 1, 5*10^7, 10^8+2 and 2^63-1 of one stream: three gaps, 2^63-5 seqs missing."""
    stream = new_stream_id()
    keyring.process_batch(store, [(TOPIC, _rec(1, stream)), (TOPIC, _rec(10**8 + 2, stream))])
    keyring.process_batch(store, [(TOPIC, _rec(MAX_SEQ, stream)), (TOPIC, _rec(5 * 10**7, stream))])


def test_a_gap_of_a_hundred_million_is_one_range(store_factory: StoreFactory) -> None:
    """With the jump limit lifted, the largest gaps are still one row each."""
    store = store_factory("central", max_seq_jump=MAX_SEQ)
    _gaps_of_a_hundred_million(store)
    [state] = store.streams(KIOSK)
    assert state.gaps == ((2, 5 * 10**7 - 1), (5 * 10**7 + 1, 10**8 + 1), (10**8 + 3, MAX_SEQ - 1))
    assert state.missing_count == MAX_SEQ - 4 and state.max_seq == MAX_SEQ
    store.close()


def test_status_shows_a_gap_of_a_hundred_million_as_one_range(tmp_path: Path) -> None:
    """aps-central status reads the SQLite file only (docs/scale.md): SQLite alone here."""
    db = tmp_path / "central.db"
    store = SQLiteStore(db, max_seq_jump=MAX_SEQ)
    _gaps_of_a_hundred_million(store)
    store.close()
    cfg = stack.write_central_config(tmp_path / "central.toml", db, 1883)
    out = CliRunner().invoke(central_cli, ["status", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    [shown] = json.loads(out.output)["streams"]
    assert shown["missing_count"] == MAX_SEQ - 4 and len(shown["gaps"]) == 3


def _instructions(store: SQLiteStore, batch: list[tuple[str, bytes]]) -> int:
    """SQLite VM instructions one batch costs (a count, not a clock)."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    store.conn.set_progress_handler(tick, 100)
    try:
        keyring.process_batch(store, batch)
    finally:
        store.conn.set_progress_handler(None, 0)
    return steps[0] * 100


def test_batch_cost_does_not_grow_with_the_history_held(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "central.db")
    stream, seq = new_stream_id(), 0

    def batch(n: int, skip: int = 0) -> list[tuple[str, bytes]]:
        nonlocal seq
        out = []
        for _ in range(n):
            seq += 1 + skip
            out.append((TOPIC, _rec(seq, stream)))
        return out

    keyring.process_batch(store, batch(1000))
    small = [_instructions(store, batch(256)), _instructions(store, batch(256, skip=1))]
    for _ in range(19):
        keyring.process_batch(store, batch(1000))
    assert store.count() > 20_000
    large = [_instructions(store, batch(256)), _instructions(store, batch(256, skip=1))]
    # Same work per batch, in order and with a gap per record, at 1k and 20k held.
    assert large[0] < small[0] * 1.25, (small, large)
    assert large[1] < small[1] * 1.25, (small, large)
    store.close()


def test_status_lists_a_bounded_number_of_streams_and_ranges(tmp_path: Path) -> None:
    central_db = tmp_path / "central.db"
    cfg = stack.write_central_config(tmp_path / "central.toml", central_db, 1883)
    with cfg.open("a") as fh:
        fh.write("\n[alerts]\ngap_alert_after_s = 60\nreport_limit = 5\n")
    store = SQLiteStore(central_db)
    for k in range(8):
        kiosk = f"k-many-{k:02d}"
        stream = new_stream_id()
        batch = [(records_topic(kiosk), _rec(q, stream, kiosk=kiosk)) for q in range(1, 60, 2)]
        keyring.process_batch(store, batch)
    store.conn.execute("UPDATE streams SET gap_since = gap_since - 3600")
    store.close()
    out = CliRunner().invoke(central_cli, ["status", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    status = json.loads(out.output)
    assert len(status["streams"]) == 5 and status["streams_not_listed"] == 3
    assert status["streams_total"] == 8 and status["streams_with_gaps"] == 8
    for s in status["streams"]:
        assert s["gaps"] == [[2, 2], [4, 4], [6, 6], [8, 8], [10, 10]]
        assert s["gaps_not_listed"] == 29 - 5 and s["missing_count"] == 29
    assert len(status["alerts"]) == 6 and status["alerts"][-1].startswith("and 3 more streams")


OLD_SCHEMA = """
CREATE TABLE records (kiosk TEXT NOT NULL, id TEXT NOT NULL, stream TEXT NOT NULL,
    seq INTEGER NOT NULL, kind TEXT NOT NULL, created TEXT NOT NULL, received_at REAL NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (kiosk, id), UNIQUE (kiosk, stream, seq));
CREATE TABLE streams (kiosk TEXT NOT NULL, stream TEXT NOT NULL,
    contiguous_seq INTEGER NOT NULL DEFAULT 0, max_seq INTEGER NOT NULL DEFAULT 0,
    gap_since REAL, first_seen REAL NOT NULL, updated REAL NOT NULL, PRIMARY KEY (kiosk, stream));
CREATE TABLE rejected_records (kiosk TEXT NOT NULL, id TEXT NOT NULL, stream TEXT, seq INTEGER,
    reason TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (kiosk, id));
CREATE TABLE kiosks (kiosk TEXT PRIMARY KEY, state TEXT, state_at REAL,
    last_heartbeat_at REAL, queued INTEGER, oldest_queued TEXT, devices TEXT, heartbeat TEXT);
"""


def test_a_database_from_before_gap_ranges_is_migrated(tmp_path: Path) -> None:
    """Seqs 1, 2, 5 stored, 7 parked, 2^63-1 stored (the issue's record): ranges, once."""
    db, stream = tmp_path / "central.db", "00000000000000a1"
    conn = sqlite3.connect(db)
    conn.executescript(OLD_SCHEMA)
    for q in (1, 2, 5, MAX_SEQ):
        conn.execute(
            "INSERT INTO records VALUES (?, ?, ?, ?, 'rating', 'x', 0, '{}')",
            (KIOSK, new_ulid(), stream, q),
        )
    conn.execute(
        "INSERT INTO rejected_records VALUES (?, 'r', ?, 7, 'bad-body', 0)", (KIOSK, stream)
    )
    conn.execute("INSERT INTO streams VALUES (?, ?, 2, ?, 100.0, 0, 0)", (KIOSK, stream, MAX_SEQ))
    conn.commit()
    conn.close()
    store = SQLiteStore(db)
    [state] = store.streams(KIOSK)
    assert state.gaps == ((3, 4), (6, 6), (8, MAX_SEQ - 1))
    assert state.missing_count == 3 + MAX_SEQ - 8 and state.gap_since == 100.0
    # The next batch carries on from the migrated state.
    keyring.process_batch(store, [(TOPIC, _rec(3, stream)), (TOPIC, _rec(4, stream))])
    store.close()
    store = SQLiteStore(db)  # opening again migrates nothing twice
    [state] = store.streams(KIOSK)
    assert state.gaps == ((6, 6), (8, MAX_SEQ - 1)) and state.contiguous_seq == 5
    store.close()
