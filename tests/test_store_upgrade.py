"""A central database written by the previous release opens in this one, data kept.

tests/data/central-c572e15.sql is the ``.dump`` of a store that the code on main at
c572e15 (the last release before the PostgreSQL work of issue 11) wrote: two kiosks'
ratings with a gap, a dead letter, an attachment of which one chunk of three arrived,
a status row. This release must open it, keep every row, fill the gap and finish the
attachment with what arrives next (PostgreSQL's upgrade from its first schema is in
tests/test_store_contract.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from central.store import SQLiteStore
from sync.attachments import chunk_bodies
from sync.envelope import records_topic
from tests import identity as keyring
from tests import records

DUMP = Path(__file__).parent / "data" / "central-c572e15.sql"
S1, S2, ATT = "0123456789abcdef", "fedcba9876543210", "01JDX5V7Q6M1B8X3Z4K0N2R7TA"


def old_database(tmp_path: Path) -> Path:
    db = tmp_path / "central.db"
    conn = sqlite3.connect(db)
    conn.executescript(DUMP.read_text(encoding="utf-8"))
    conn.close()
    return db


def test_the_previous_releases_database_opens_with_its_data_and_goes_on(tmp_path: Path) -> None:
    db = old_database(tmp_path)
    store = SQLiteStore(db)
    try:
        assert store.count() == 6 and store.dead_letter_count() == 1
        [one] = store.streams("k-old-01")
        assert (one.contiguous_seq, one.max_seq, one.gaps) == (3, 5, ((4, 4),))
        assert store.quota_usage(["k-old-01"])["k-old-01"].records == 4
        row = store.conn.execute("SELECT state FROM kiosks WHERE kiosk = 'k-old-01'").fetchone()
        assert row == ("online",)
        assert store.attachments() == []  # one chunk of three: still in progress
        # It goes on: the missing seq closes the gap, the last chunks finish the file.
        gap = records.rating(4, S1, kiosk="k-old-01", rid="01JDX70000000000000000000A")
        chunks = chunk_bodies(ATT, b"APS" * 100, 100)
        rest = [
            records.posted(
                records.record(2 + i, S2, kiosk="k-old-02", kind="chunk", body=chunks[i], rid=rid)
            )
            for i, rid in ((1, "01JDX70000000000000000000B"), (2, "01JDX70000000000000000000C"))
        ]
        out = keyring.process_batch(store, [(records_topic("k-old-01"), gap), *rest]).outcome
        assert out.stored == 3 and out.attachments["complete"] == 1
        [one] = store.streams("k-old-01")
        assert (one.contiguous_seq, one.gaps) == (5, ())
        assert store.attachment_data("k-old-02", ATT) == b"APS" * 100
    finally:
        store.close()
    again = SQLiteStore(db)  # opening once more changes nothing
    try:
        assert again.count() == 9 and again.dead_letter_count() == 1
    finally:
        again.close()
