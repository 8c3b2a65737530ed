"""Per-stream sequence accounting at central: O(batch) work, gaps kept as ranges.

Theory of operation
-------------------
Every ``(kiosk, stream)`` has one row in ``streams``: ``contiguous_seq`` (all
seqs up to it are accounted for: stored, or parked as rejected),
``max_seq`` (the highest accounted seq), ``missing_count`` and ``gap_count``,
and ``gap_since`` (when the oldest open gap opened). The open gaps themselves
are ranges ``[lo, hi]`` in ``stream_gaps``, one row per range, never a list
of numbers: a gap of 10^8 (or 2^63) is one row.

A batch loads the rows of the streams it touches in one query, decides for
each incoming seq in memory whether it is new (above ``max_seq``, or inside
a gap), already taken (a seq conflict) or implausible (more than
``max_seq_jump`` past ``max_seq``: parked, never accounted, so it cannot open
a gap of 2^63), touches ``stream_gaps`` only for out-of-order seqs (one
indexed lookup and at most two row writes each), and writes the rows back in
one ``executemany``. Nothing reads the stream's records: the cost of a batch
does not grow with the history held.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass

DEFAULT_MAX_SEQ_JUMP = 1_000_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_gaps (
    kiosk TEXT NOT NULL,
    stream TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (kiosk, stream, lo)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stream_gaps_since ON stream_gaps (kiosk, stream, since);
"""

# Columns the streams row gained with this module (older databases get them
# by ALTER TABLE; see :func:`migrate`).
STREAM_COLUMNS = {
    "missing_count": "INTEGER NOT NULL DEFAULT 0",
    "gap_count": "INTEGER NOT NULL DEFAULT 0",
}

# Seqs accounted for in one stream: stored records and parked (rejected)
# ones. Used only to migrate a database written before gap ranges existed.
_ACCOUNTED_SEQS = (
    "SELECT seq FROM records WHERE kiosk = :k AND stream = :s AND seq > :c"
    " UNION SELECT seq FROM rejected_records"
    " WHERE kiosk = :k AND stream = :s AND seq IS NOT NULL AND seq > :c"
)


class Claim(enum.Enum):
    NEW = "new"
    TAKEN = "taken"
    JUMP = "jump"


@dataclass
class _Stream:
    contiguous: int = 0
    max_seq: int = 0
    missing: int = 0
    gap_count: int = 0
    gap_since: float | None = None
    gaps_changed: bool = False
    dirty: bool = False


class StreamBook:
    """Sequence state of the streams one batch touches, inside its transaction."""

    def __init__(self, conn: sqlite3.Connection, now: float, max_seq_jump: int) -> None:
        self.conn = conn
        self.now = now
        self.max_seq_jump = max_seq_jump
        self._streams: dict[tuple[str, str], _Stream] = {}

    def load(self, keys: set[tuple[str, str]]) -> None:
        """Read the rows of ``keys`` (one query); streams not seen yet start empty."""
        missing = [k for k in keys if k not in self._streams]
        for start in range(0, len(missing), 2000):
            part = missing[start : start + 2000]
            values = ", ".join("(?, ?)" for _ in part)
            rows = self.conn.execute(
                "SELECT s.kiosk, s.stream, s.contiguous_seq, s.max_seq, s.missing_count,"
                f" s.gap_count, s.gap_since FROM (VALUES {values}) AS v"
                " JOIN streams s ON s.kiosk = v.column1 AND s.stream = v.column2",
                [x for key in part for x in key],
            ).fetchall()
            for kiosk, stream, contiguous, max_seq, miss, gap_count, since in rows:
                self._streams[(kiosk, stream)] = _Stream(
                    contiguous=contiguous,
                    max_seq=max_seq,
                    missing=miss,
                    gap_count=gap_count,
                    gap_since=since,
                )
            for key in part:
                self._streams.setdefault(key, _Stream(dirty=True))

    def highest(self, kiosk: str, stream: str) -> int:
        self.load({(kiosk, stream)})
        return self._streams[(kiosk, stream)].max_seq

    def claim(self, kiosk: str, stream: str, seq: int) -> Claim:
        """Account ``seq`` if it is new; say why not otherwise."""
        st = self._streams.get((kiosk, stream))
        if st is None:
            self.load({(kiosk, stream)})
            st = self._streams[(kiosk, stream)]
        if seq > st.max_seq:
            if seq - st.max_seq > self.max_seq_jump:
                return Claim.JUMP
            if seq > st.max_seq + 1:
                self.conn.execute(
                    "INSERT INTO stream_gaps (kiosk, stream, lo, hi, since) VALUES (?, ?, ?, ?, ?)",
                    (kiosk, stream, st.max_seq + 1, seq - 1, self.now),
                )
                st.missing += seq - 1 - st.max_seq
                st.gap_count += 1
                if st.gap_since is None:
                    st.gap_since = self.now
            elif st.gap_count == 0:
                st.contiguous = seq
            st.max_seq = seq
            st.dirty = True
            return Claim.NEW
        if seq <= st.contiguous or st.gap_count == 0:
            return Claim.TAKEN
        row = self.conn.execute(
            "SELECT lo, hi, since FROM stream_gaps WHERE kiosk = ? AND stream = ? AND lo <= ?"
            " ORDER BY lo DESC LIMIT 1",
            (kiosk, stream, seq),
        ).fetchone()
        if row is None or row[1] < seq:
            return Claim.TAKEN
        lo, hi, since = row
        self.conn.execute(
            "DELETE FROM stream_gaps WHERE kiosk = ? AND stream = ? AND lo = ?", (kiosk, stream, lo)
        )
        pieces = [(a, b) for a, b in ((lo, seq - 1), (seq + 1, hi)) if a <= b]
        for a, b in pieces:
            self.conn.execute(
                "INSERT INTO stream_gaps (kiosk, stream, lo, hi, since) VALUES (?, ?, ?, ?, ?)",
                (kiosk, stream, a, b, since),
            )
        st.missing -= 1
        st.gap_count += len(pieces) - 1
        st.gaps_changed = st.dirty = True
        return Claim.NEW

    def flush(self) -> set[tuple[str, str]]:
        """Write back every stream row that changed; returns their keys."""
        rows = []
        changed = set()
        for (kiosk, stream), st in self._streams.items():
            if not st.dirty:
                continue
            changed.add((kiosk, stream))
            if st.gap_count == 0:
                st.contiguous, st.gap_since = st.max_seq, None
            elif st.gaps_changed:
                first, since = self.conn.execute(
                    "SELECT (SELECT lo FROM stream_gaps WHERE kiosk = ?1 AND stream = ?2"
                    " ORDER BY lo LIMIT 1), (SELECT min(since) FROM stream_gaps"
                    " WHERE kiosk = ?1 AND stream = ?2)",
                    (kiosk, stream),
                ).fetchone()
                st.contiguous, st.gap_since = first - 1, since
            rows.append(
                (
                    kiosk,
                    stream,
                    st.contiguous,
                    st.max_seq,
                    st.missing,
                    st.gap_count,
                    st.gap_since,
                    self.now,
                    self.now,
                )
            )
            st.dirty = st.gaps_changed = False
        self.conn.executemany(
            "INSERT INTO streams (kiosk, stream, contiguous_seq, max_seq, missing_count,"
            " gap_count, gap_since, first_seen, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (kiosk, stream) DO UPDATE SET contiguous_seq = excluded.contiguous_seq,"
            " max_seq = excluded.max_seq, missing_count = excluded.missing_count,"
            " gap_count = excluded.gap_count, gap_since = excluded.gap_since,"
            " updated = excluded.updated",
            rows,
        )
        return changed


def migrate(conn: sqlite3.Connection, had_gap_table: bool) -> None:
    """Bring a database written before gap ranges up to date (runs once).

    Adds the new ``streams`` columns and, if ``stream_gaps`` did not exist,
    computes the gap ranges of every stream with ``contiguous_seq < max_seq``
    from its accounted seqs, in SQL (a window over the seqs, never a list of
    the missing numbers).
    """
    have = {r[1] for r in conn.execute("PRAGMA table_info(streams)")}
    for name, decl in STREAM_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE streams ADD COLUMN {name} {decl}")
    if had_gap_table:
        return
    todo = conn.execute(
        "SELECT kiosk, stream, contiguous_seq, max_seq, coalesce(gap_since, updated)"
        " FROM streams WHERE contiguous_seq < max_seq"
    ).fetchall()
    for kiosk, stream, contiguous, _max_seq, since in todo:
        args = {"k": kiosk, "s": stream, "c": contiguous, "since": since}
        conn.execute(
            "INSERT INTO stream_gaps (kiosk, stream, lo, hi, since)"
            " SELECT :k, :s, prev + 1, seq - 1, :since FROM ("
            f"  SELECT seq, lag(seq, 1, :c) OVER (ORDER BY seq) AS prev FROM ({_ACCOUNTED_SEQS})"
            " ) WHERE seq > prev + 1",
            args,
        )
        count, missing = conn.execute(
            "SELECT count(*), coalesce(sum(hi - lo + 1), 0) FROM stream_gaps"
            " WHERE kiosk = ? AND stream = ?",
            (kiosk, stream),
        ).fetchone()
        conn.execute(
            "UPDATE streams SET gap_count = ?, missing_count = ? WHERE kiosk = ? AND stream = ?",
            (count, missing, kiosk, stream),
        )
