"""Questions, feedback and petitions at central, and the staff answers that go back.

Theory of operation
-------------------
A citizen's question (hỏi đáp), feedback (phản ánh) or petition (kiến nghị) is
a ``feedback`` record with a ``lookup_code`` the kiosk printed for them.
:func:`project` folds new ones into ``inquiries`` (catch-up by rowid, as
:mod:`central.dossiers` does). Lookup codes are unique within one office (the
kiosk's slot is in them), not across offices, so an inquiry is keyed by its
record ``(kiosk, record_id)`` and found by ``(office, lookup_code)``.

:func:`answer` stores the answer, an audit row and an ``answer`` downlink
item in one transaction. The item goes to ``office:<office>`` so the citizen
can look the answer up at any kiosk of the office. The office is resolved
when answering: the kiosk's office in ``kiosk_offices``
(:func:`central.downlink_log.office_of`), else the agency of the latest
dossier that kiosk filed; when neither is known the answer goes to that one
kiosk (``kiosk:<id>``) and the reply says so. Answering again corrects the
answer (the new item supersedes the old); the response time (received ->
first answer) is kept from the first answer.

Feedback without a lookup code (kiosks before lookup codes) is indexed for
the lists and reports but cannot be answered by code.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any, Final

from central import audit, dossiers, downlink_log, projection
from central.dossiers import now_iso
from central.staff_text import BackofficeError, NotFound, check_actor, optional_text
from sync.schemas import (
    FEEDBACK_CATEGORIES,
    FULL_NAME_CHARS,
    LOOKUP_CODE_RE,
    MESSAGE_CHARS,
    parse_datetime,
    unix_seconds,
)

log = logging.getLogger("aps.answers")

PROJECTION: Final = "inquiries"
KIND: Final = "answer"
MAX_LIMIT: Final = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS inquiries (
    kiosk TEXT NOT NULL,
    record_id TEXT NOT NULL,
    lookup_code TEXT,
    category TEXT NOT NULL,
    procedure TEXT,
    message TEXT NOT NULL,
    contact TEXT,
    created TEXT NOT NULL,
    received_unix REAL NOT NULL,
    day TEXT NOT NULL,
    answer TEXT,
    answered_at TEXT,
    answered_unix REAL,
    answered_by TEXT,
    office TEXT,
    first_answered_unix REAL,
    response_s REAL,
    PRIMARY KEY (kiosk, record_id)
);
CREATE INDEX IF NOT EXISTS inquiries_lookup ON inquiries (lookup_code);
CREATE INDEX IF NOT EXISTS inquiries_open ON inquiries (category, received_unix)
    WHERE answer IS NULL;
"""

COLUMNS: Final = (
    "kiosk",
    "record_id",
    "lookup_code",
    "category",
    "procedure",
    "message",
    "contact",
    "created",
    "day",
    "answer",
    "answered_at",
    "answered_by",
    "office",
    "response_s",
)


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def project(conn: sqlite3.Connection) -> int:
    """Fold feedback records central received since the last call; returns how many."""
    return projection.catch_up(conn, PROJECTION, lambda: _project(conn))


def _project(conn: sqlite3.Connection) -> int:
    done = 0
    for row in projection.new_records(conn, PROJECTION, ("feedback",)):
        try:
            body = json.loads(row.body)
            created = parse_datetime(row.created)
            if created is None:
                raise ValueError(f"created {row.created!r}")
            category = body["category"]
            message = body["message"]
            if category not in FEEDBACK_CATEGORIES or not isinstance(message, str):
                raise ValueError("category or message")
        except (ValueError, KeyError, TypeError) as exc:  # schema-checked at ingest: no
            log.error("feedback record %s/%s not indexed: %s", row.kiosk, row.id, exc)
            continue
        conn.execute(
            "INSERT INTO inquiries (kiosk, record_id, lookup_code, category, procedure,"
            " message, contact, created, received_unix, day) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                row.kiosk,
                row.id,
                body.get("lookup_code"),
                category,
                body.get("procedure"),
                message,
                body.get("contact") or None,
                row.created,
                unix_seconds(created),
                created.date().isoformat(),
            ),
        )
        done += 1
    return done


def _office_of_kiosk(conn: sqlite3.Connection, kiosk: str) -> str | None:
    office = downlink_log.office_of(conn, kiosk)
    if office is not None:
        return office
    row = conn.execute(
        "SELECT office FROM dossier_index WHERE kiosk = ? ORDER BY received_unix DESC LIMIT 1",
        (kiosk,),
    ).fetchone()
    return None if row is None else str(row[0])


def _as_dict(conn: sqlite3.Connection, row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(COLUMNS, row, strict=True))
    if out["office"] is None:
        out["office"] = _office_of_kiosk(conn, out["kiosk"])
    out["answered"] = out["answer"] is not None
    return out


def list_inquiries(
    conn: sqlite3.Connection,
    *,
    office: str | None = None,
    category: str | None = None,
    unanswered: bool = False,
    lookup_code: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Inquiries, oldest unanswered first when ``unanswered``, else newest first."""
    project(conn)
    dossiers.project(conn)  # a kiosk's office may be known from its dossiers only
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BackofficeError(f"limit: {limit!r} is outside 1..{MAX_LIMIT}")
    where: list[str] = []
    args: list[Any] = []
    if category:
        if category not in FEEDBACK_CATEGORIES:
            raise BackofficeError(
                f"category: {category!r}; expected one of {', '.join(FEEDBACK_CATEGORIES)}"
            )
        where.append("category = ?")
        args.append(category)
    if unanswered:
        where.append("answer IS NULL")
    if lookup_code:
        where.append("lookup_code = ?")
        args.append(lookup_code)
    sql = f"SELECT {', '.join(COLUMNS)} FROM inquiries"
    if where:
        sql += " WHERE " + " AND ".join(where)
    order = "ASC" if unanswered else "DESC"
    sql += f" ORDER BY received_unix {order}, rowid {order}"
    out: list[dict[str, Any]] = []
    # The office filter needs each kiosk's office (resolved, not stored, until answered).
    for row in conn.execute(sql, args):
        item = _as_dict(conn, row)
        if office and item["office"] != office:
            continue
        out.append(item)
        if len(out) >= limit:
            break
    return out


def get_inquiry(
    conn: sqlite3.Connection, lookup_code: str, *, office: str | None = None
) -> dict[str, Any]:
    """The one inquiry with this lookup code (in ``office``, when codes of two offices clash)."""
    if not isinstance(lookup_code, str) or LOOKUP_CODE_RE.match(lookup_code) is None:
        raise BackofficeError(
            f"lookup code {lookup_code!r}: expected two letters, YYMMDD and four digits, "
            f"such as HT-261201-1004"
        )
    found = list_inquiries(conn, lookup_code=lookup_code, office=office, limit=MAX_LIMIT)
    if not found:
        where = f" at office {office}" if office else ""
        raise NotFound(f"inquiry {lookup_code}{where}: central has no such question or petition")
    if len(found) > 1:
        offices = sorted({str(f["office"]) for f in found})
        raise BackofficeError(
            f"lookup code {lookup_code} is used at {len(found)} inquiries (offices: "
            f"{', '.join(offices)}); name the office"
        )
    return found[0]


def answer(
    conn: sqlite3.Connection,
    lookup_code: str,
    text: str,
    *,
    actor: str,
    answered_by: str | None = None,
    office: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Answer the inquiry ``lookup_code``; returns it with ``audience`` and ``cursor``.

    ``text``: the answer citizens read (Vietnamese, multi-line, at most
    MESSAGE_CHARS); ``answered_by``: a display name shown with it (no account
    ids); ``office``: only needed when two offices used the same lookup code.
    """
    who = check_actor(actor)
    body_text = optional_text("answer", text, max_chars=MESSAGE_CHARS, multiline=True)
    if body_text is None:
        raise BackofficeError("answer: empty; write the answer the citizen will read")
    by = optional_text("answered_by", answered_by, max_chars=FULL_NAME_CHARS)
    stamp = datetime.now(UTC).timestamp() if now is None else now
    at = now_iso(now)
    with projection.transaction(conn):
        item = get_inquiry(conn, lookup_code, office=office)
        where = item["office"]
        audience = (
            downlink_log.office_audience(where)
            if where is not None
            else downlink_log.kiosk_audience(item["kiosk"])
        )
        first = conn.execute(
            "SELECT first_answered_unix, received_unix FROM inquiries"
            " WHERE kiosk = ? AND record_id = ?",
            (item["kiosk"], item["record_id"]),
        ).fetchone()
        first_at = first[0] if first[0] is not None else stamp
        response_s = max(0.0, first_at - first[1])
        conn.execute(
            "UPDATE inquiries SET answer = ?, answered_at = ?, answered_unix = ?,"
            " answered_by = ?, office = ?, first_answered_unix = ?, response_s = ?"
            " WHERE kiosk = ? AND record_id = ?",
            (
                body_text,
                at,
                stamp,
                by,
                where,
                first_at,
                response_s,
                item["kiosk"],
                item["record_id"],
            ),
        )
        body = {
            "lookup_code": item["lookup_code"],
            "category": item["category"],
            "answer": body_text,
            "answered_at": at,
            "answered_by": by,
        }
        cursor = downlink_log.append(conn, audience, KIND, item["lookup_code"], body, now=now)
        audit.record(
            conn,
            who,
            "inquiry.answer",
            item["lookup_code"],
            {
                "kiosk": item["kiosk"],
                "record": item["record_id"],
                "audience": audience,
                "answered_by": by,
                "corrected": item["answered"],
                "response_s": response_s,
            },
            now=now,
        )
    return {
        **item,
        "answer": body_text,
        "answered_at": at,
        "answered_by": by,
        "answered": True,
        "response_s": response_s,
        "audience": audience,
        "cursor": cursor,
    }


def response_times(
    conn: sqlite3.Connection, *, office: str | None = None, day: str | None = None
) -> list[dict[str, Any]]:
    """Per office, day and category: inquiries, answered, median and max response (s)."""
    project(conn)
    groups: dict[tuple[str, str, str], list[float | None]] = {}
    for row in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM inquiries"):
        item = _as_dict(conn, row)
        where = item["office"] or f"kiosk:{item['kiosk']}"
        if (office and where != office) or (day and item["day"] != day):
            continue
        groups.setdefault((where, item["day"], item["category"]), []).append(item["response_s"])
    out: list[dict[str, Any]] = []
    for (where, d, category), times in sorted(groups.items()):
        done = sorted(t for t in times if t is not None)
        out.append(
            {
                "office": where,
                "day": d,
                "category": category,
                "inquiries": len(times),
                "answered": len(done),
                "median_response_s": done[len(done) // 2] if done else None,
                "max_response_s": done[-1] if done else None,
            }
        )
    return out
