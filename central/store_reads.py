"""The store's report queries, one copy for SQLite and PostgreSQL.

Each function takes a :class:`central.portable_sql.SqlConn` (sqlite3's connection, or
the PostgreSQL store's ``PgConn`` inside a transaction the caller holds). ``text_order``
is how text sorts byte-wise in ORDER BY: SQLite's default already does; PostgreSQL's
locale collation does not, so its store passes ``COLLATE "C"`` and both list streams in
the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from central.portable_sql import SqlConn

REPORT_RANGES = 20  # gap ranges listed per stream by default


@dataclass(frozen=True, kw_only=True)
class StreamState:
    """Sequence state of one ``(kiosk, stream)``.

    ``gaps`` holds at most the first ``max_ranges`` open ranges ``(lo, hi)``
    (both inclusive) asked for; ``gap_count`` and ``missing_count`` count all
    of them, so a report can say how many more there are.
    """

    kiosk: str
    stream: str
    contiguous_seq: int
    max_seq: int
    gaps: tuple[tuple[int, int], ...] = ()
    gap_count: int = 0
    missing_count: int = 0
    gap_since: float | None = None


STREAM_COLUMNS = (
    "SELECT kiosk, stream, contiguous_seq, max_seq, gap_count, missing_count, gap_since"
    " FROM streams"
)


def streams(
    conn: SqlConn,
    kiosk: str | None = None,
    *,
    limit: int | None = None,
    max_ranges: int = REPORT_RANGES,
    text_order: str = "",
) -> list[StreamState]:
    """Streams with open gaps first (oldest gap first), each with its first gap ranges."""
    sql = STREAM_COLUMNS
    args: list[Any] = []
    if kiosk is not None:
        sql += " WHERE kiosk = ?"
        args.append(kiosk)
    sql += f" ORDER BY gap_since IS NULL, gap_since, kiosk{text_order}, stream{text_order}"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [state(conn, row, max_ranges) for row in conn.execute(sql, args).fetchall()]


def state(conn: SqlConn, row: tuple[Any, ...], max_ranges: int) -> StreamState:
    k, s, contiguous, max_seq, gap_count, missing, gap_since = row
    gaps: tuple[tuple[int, int], ...] = ()
    if gap_count:
        gaps = tuple(
            (lo, hi)
            for lo, hi in conn.execute(
                "SELECT lo, hi FROM stream_gaps WHERE kiosk = ? AND stream = ? ORDER BY lo LIMIT ?",
                (k, s, max_ranges),
            ).fetchall()
        )
    return StreamState(
        kiosk=k,
        stream=s,
        contiguous_seq=contiguous,
        max_seq=max_seq,
        gaps=gaps,
        gap_count=gap_count,
        missing_count=missing,
        gap_since=gap_since,
    )


def stream_count(conn: SqlConn, *, with_gaps: bool = False) -> int:
    sql = "SELECT count(*) FROM streams"
    if with_gaps:
        sql += " WHERE gap_since IS NOT NULL"
    return int(conn.execute(sql).fetchone()[0])


def stale_gaps(
    conn: SqlConn, cutoff: float, *, limit: int | None = None, max_ranges: int = REPORT_RANGES
) -> list[StreamState]:
    """Streams with a gap open since before ``cutoff`` (an alert), oldest first."""
    sql = STREAM_COLUMNS + " WHERE gap_since IS NOT NULL AND gap_since < ? ORDER BY gap_since"
    args: list[Any] = [cutoff]
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [state(conn, row, max_ranges) for row in conn.execute(sql, args).fetchall()]


def stale_gap_count(conn: SqlConn, cutoff: float) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM streams WHERE gap_since IS NOT NULL AND gap_since < ?",
            (cutoff,),
        ).fetchone()[0]
    )


def counter(conn: SqlConn, name: str) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return 0 if row is None else int(row[0])


def _dicts(conn: SqlConn, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = conn.execute(sql, args)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def conflicts(conn: SqlConn, limit: int = REPORT_RANGES) -> list[dict[str, Any]]:
    """The latest ``id-conflict`` dead letters, newest first."""
    return _dicts(
        conn,
        "SELECT n, at, topic_kiosk AS kiosk, record_id, reason FROM dead_letters"
        " WHERE reason LIKE 'id-conflict:%' ORDER BY n DESC LIMIT ?",
        (limit,),
    )


def clock_skews(conn: SqlConn, limit: int = REPORT_RANGES) -> list[dict[str, Any]]:
    """Kiosks by the size of their last measured clock skew, largest first."""
    return _dicts(
        conn,
        "SELECT kiosk, clock_skew_s, clock_skew_at FROM kiosks WHERE clock_skew_s IS NOT NULL"
        " ORDER BY abs(clock_skew_s) DESC, kiosk LIMIT ?",
        (limit,),
    )


def gap_summary(conn: SqlConn) -> list[tuple[str, int, int, float]]:
    """Per kiosk with an open gap: (kiosk, streams with gaps, records missing, oldest since)."""
    return [
        (str(k), int(n), int(missing), float(since))
        for k, n, missing, since in conn.execute(
            "SELECT kiosk, count(*), sum(missing_count), min(gap_since) FROM streams"
            " WHERE gap_since IS NOT NULL GROUP BY kiosk"
        ).fetchall()
    ]


def dead_letter_times(conn: SqlConn, after: float) -> list[tuple[str, float]]:
    """(kiosk, first seen) of each dead letter a kiosk's topic sent since ``after``."""
    return [
        (str(k), float(at))
        for k, at in conn.execute(
            "SELECT topic_kiosk, at FROM dead_letters WHERE at > ? AND topic_kiosk IS NOT NULL",
            (after,),
        ).fetchall()
    ]
