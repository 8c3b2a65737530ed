"""Reports for staff and the console: satisfaction ratings and dossiers per office and day.

Theory of operation
-------------------
Ratings (``rating`` records: rất hài lòng / hài lòng / không hài lòng, an
optional reason and dossier code) are folded into ``rating_index`` by the
same rowid catch-up as the dossier index. A rating's office is the agency of
its dossier code when it names one, else the office of the kiosk that sent it
(``kiosk_offices``, else the agency of the latest dossier that kiosk filed;
resolved at report time, so a kiosk placed later still counts for its
office); ``unknown`` when none is known. Its day is the
kiosk's calendar day in the record's ``created`` (the office's own offset).

Dossier counts are read from ``dossier_index`` (:mod:`central.dossiers`).
Shares are fractions of the group's total, rounded to 4 places.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Final

from central import dossiers, projection
from central.staff_text import BackofficeError
from sync.schemas import DATE_RE, RATING_LEVELS, parse_datetime

log = logging.getLogger("aps.reports")

PROJECTION: Final = "ratings"
UNKNOWN_OFFICE: Final = "unknown"
LEVEL_LABELS_VI: Final = {
    "rat_hai_long": "Rất hài lòng",
    "hai_long": "Hài lòng",
    "khong_hai_long": "Không hài lòng",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS rating_index (
    kiosk TEXT NOT NULL,
    record_id TEXT NOT NULL,
    level TEXT NOT NULL,
    reason TEXT,
    dossier_code TEXT,
    code_office TEXT,
    day TEXT NOT NULL,
    PRIMARY KEY (kiosk, record_id)
);
CREATE INDEX IF NOT EXISTS rating_index_day ON rating_index (day);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def project(conn: sqlite3.Connection) -> int:
    """Fold rating records central received since the last call; returns how many."""
    return projection.catch_up(conn, PROJECTION, lambda: _project(conn))


def _project(conn: sqlite3.Connection) -> int:
    done = 0
    for row in projection.new_records(conn, PROJECTION, ("rating",)):
        try:
            body = json.loads(row.body)
            created = parse_datetime(row.created)
            level = body["level"]
            if created is None or level not in RATING_LEVELS:
                raise ValueError("created or level")
        except (ValueError, KeyError, TypeError) as exc:  # schema-checked at ingest: no
            log.error("rating record %s/%s not indexed: %s", row.kiosk, row.id, exc)
            continue
        code = body.get("dossier_code")
        conn.execute(
            "INSERT INTO rating_index (kiosk, record_id, level, reason, dossier_code,"
            " code_office, day) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                row.kiosk,
                row.id,
                level,
                body.get("reason") or None,
                code,
                dossiers.office_of_code(code) if isinstance(code, str) else None,
                created.date().isoformat(),
            ),
        )
        done += 1
    return done


def _check_day(name: str, day: str | None) -> None:
    if day is not None and DATE_RE.match(day) is None:
        raise BackofficeError(f"{name}: {day!r} is not a date YYYY-MM-DD")


def ratings(
    conn: sqlite3.Connection,
    *,
    day: str | None = None,
    office: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[dict[str, Any]]:
    """Ratings per office and day: counts and shares of each level, oldest day first.

    ``day`` one day; ``since``/``until`` an inclusive range of days (YYYY-MM-DD).
    """
    for name, value in (("day", day), ("since", since), ("until", until)):
        _check_day(name, value)
    project(conn)
    where: list[str] = []
    args: list[Any] = []
    if day:
        where.append("r.day = ?")
        args.append(day)
    if since:
        where.append("r.day >= ?")
        args.append(since)
    if until:
        where.append("r.day <= ?")
        args.append(until)
    dossiers.project(conn)  # a kiosk's office may be known from its dossiers only
    office_expr = (
        "coalesce(r.code_office, k.office, (SELECT d.office FROM dossier_index d"
        " WHERE d.kiosk = r.kiosk ORDER BY d.received_unix DESC LIMIT 1),"
        f" '{UNKNOWN_OFFICE}')"
    )
    if office:
        where.append(f"{office_expr} = ?")
        args.append(office)
    sql = (
        f"SELECT {office_expr} AS office, r.day, r.level, count(*) FROM rating_index r"
        " LEFT JOIN kiosk_offices k ON k.kiosk = r.kiosk"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " GROUP BY 1, 2, 3"
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for where_office, d, level, n in conn.execute(sql, args):
        groups.setdefault((where_office, d), dict.fromkeys(RATING_LEVELS, 0))[level] = n
    out: list[dict[str, Any]] = []
    for (where_office, d), counts in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
        total = sum(counts.values())
        out.append(
            {
                "office": where_office,
                "day": d,
                "total": total,
                "counts": counts,
                "shares": {k: round(v / total, 4) for k, v in counts.items()},
                "labels": LEVEL_LABELS_VI,
            }
        )
    return out


def dossier_counts(
    conn: sqlite3.Connection,
    *,
    day: str | None = None,
    office: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[dict[str, Any]]:
    """Dossiers per office, day and state (received records only), plus paid counts."""
    for name, value in (("day", day), ("since", since), ("until", until)):
        _check_day(name, value)
    dossiers.project(conn)
    where = ["record_id IS NOT NULL"]
    args: list[Any] = []
    for clause, value in (
        ("day = ?", day),
        ("day >= ?", since),
        ("day <= ?", until),
        ("office = ?", office),
    ):
        if value:
            where.append(clause)
            args.append(value)
    rows = conn.execute(
        "SELECT office, day, state, count(*), sum(paid) FROM dossier_index"
        f" WHERE {' AND '.join(where)} GROUP BY office, day, state ORDER BY day, office, state",
        args,
    ).fetchall()
    return [
        {"office": o, "day": d, "state": s, "count": n, "paid": int(p or 0)}
        for o, d, s, n, p in rows
    ]
