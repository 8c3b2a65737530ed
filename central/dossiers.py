"""Dossiers at central: the index staff search, status changes, payments, duplicates.

Theory of operation
-------------------
Kiosks file dossiers as ``dossier`` records; the collector stores them in
``records`` untouched. :func:`project` folds new ones into ``dossier_index``
(one row per dossier code) using the catch-up position of
:mod:`central.projection`; every function here calls it first, and central's
housekeeping calls it every round, so the index is never more than one
round behind and a query always sees every record committed before it.

A status change (:func:`set_status`) or a payment (:func:`record_payment`)
is one write transaction: the index row, an audit row
(:func:`central.audit.record`) and a ``dossier-status`` downlink item for
``office:<agency>`` (the agency that starts the code) commit together, or
nothing does. The transition is judged by :mod:`sync.dossier_status` alone.

**Back office first.** The one-stop office's system may know a dossier before
its record reaches central (a kiosk offline, its outbox still holding the
filing). Such a change is *accepted and held*: the index gets a row without a
record (``received`` false; the office is the code's agency part, so the
office's kiosks hear of it at once) and the record, when it arrives, fills in
the rest while the state, payments and notes already set are kept. A code
that never arrives stays listed (``dossier search --state ...`` shows
``received: false``), so a mistyped code is visible, not silent.

**Payments** are idempotent per bank/portal reference: a replayed callback
with the same reference, dossier and amount returns the dossier unchanged
(``replayed``: true) and writes nothing; the same reference for another
dossier or amount is a :class:`~central.staff_text.Conflict`. A dossier is
``paid`` once its confirmed payments cover its fee (or, fee unknown, on the
first payment).

**Likely duplicates**: the same applicant (SHA-256 of the ID number; central
holds the full body in ``records`` anyway) filing the same procedure within a
window (24 h by default), or a dossier whose body names an earlier
``unconfirmed_before`` filing (a code committed at a kiosk but never shown to
the citizen). :func:`project` marks ``duplicate_of`` with its default window;
:func:`duplicates` lists pairs for any window.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any, Final

from central import audit, downlink_log, projection
from central.staff_text import BackofficeError, Conflict, NotFound, check_actor, optional_text
from sync.dossier_status import (
    INITIAL,
    IllegalTransition,
    PortalCodes,
    PortalCodesError,
    State,
    UnknownState,
    allowed_next,
    check_transition,
    load_portal_codes,
    parse_state,
)
from sync.schemas import (
    DATE_RE,
    DOSSIER_CODE_RE,
    FEE_VND_MAX,
    PROCEDURE_RE,
    parse_datetime,
    unix_seconds,
)

log = logging.getLogger("aps.dossiers")

PROJECTION: Final = "dossiers"
KIND: Final = "dossier-status"
DEFAULT_DUPLICATE_WINDOW_S: Final = 24 * 3600.0
MAX_DUPLICATE_WINDOW_S: Final = 366 * 86400.0
NOTE_CHARS: Final = 1000
REFERENCE_CHARS: Final = 128
SOURCE_CHARS: Final = 64
PORTAL_CODE_CHARS: Final = 32
MAX_LIMIT: Final = 10_000
SYSTEM_ACTOR: Final = "central:projection"

SCHEMA = """
CREATE TABLE IF NOT EXISTS dossier_index (
    code TEXT PRIMARY KEY,
    office TEXT NOT NULL,
    kiosk TEXT,
    record_id TEXT,
    procedure TEXT,
    applicant_hash TEXT,
    applicant_name TEXT,
    received_at TEXT,
    received_unix REAL,
    day TEXT,
    state TEXT NOT NULL,
    paid INTEGER NOT NULL DEFAULT 0,
    paid_amount INTEGER,
    paid_at TEXT,
    fee_vnd INTEGER,
    due TEXT,
    duplicate_of TEXT,
    unconfirmed_before TEXT,
    note TEXT,
    portal_code TEXT,
    changed_at TEXT,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dossier_index_office_day ON dossier_index (office, day);
CREATE INDEX IF NOT EXISTS dossier_index_day ON dossier_index (day);
CREATE INDEX IF NOT EXISTS dossier_index_state ON dossier_index (state);
CREATE INDEX IF NOT EXISTS dossier_index_kiosk ON dossier_index (kiosk, received_unix);
CREATE INDEX IF NOT EXISTS dossier_index_applicant
    ON dossier_index (applicant_hash, procedure, received_unix);
CREATE TABLE IF NOT EXISTS dossier_payments (
    reference TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    amount_vnd INTEGER NOT NULL,
    paid_at TEXT NOT NULL,
    source TEXT NOT NULL,
    actor TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dossier_payments_code ON dossier_payments (code);
"""

COLUMNS: Final = (
    "code",
    "office",
    "kiosk",
    "record_id",
    "procedure",
    "applicant_name",
    "received_at",
    "day",
    "state",
    "paid",
    "paid_amount",
    "paid_at",
    "fee_vnd",
    "due",
    "duplicate_of",
    "unconfirmed_before",
    "note",
    "portal_code",
    "changed_at",
)


class TransitionRefused(Conflict):
    """The dossier's state may not move to the one asked (``allowed`` says what may)."""

    def __init__(self, exc: IllegalTransition) -> None:
        self.code = exc.code
        self.current = exc.current
        self.wanted = exc.wanted
        self.allowed = exc.allowed
        super().__init__(str(exc))


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def now_iso(now: float | None = None) -> str:
    """An ISO 8601 date-time with central's UTC offset (like a record's ``created``)."""
    at = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return at.astimezone().isoformat(timespec="seconds")


def office_of_code(code: str) -> str:
    """The agency part of a national dossier code (``000.00.14.H56-261201-1004``)."""
    return code.rsplit("-", 2)[0]


def applicant_hash(id_number: str) -> str:
    return hashlib.sha256(id_number.encode("utf-8")).hexdigest()


def check_code(code: str) -> str:
    if not isinstance(code, str) or DOSSIER_CODE_RE.match(code) is None:
        raise BackofficeError(
            f"dossier code {code!r}: expected a national dossier code <agency>-YYMMDD-NNNN "
            f"such as 000.00.14.H56-261201-1004"
        )
    return code


# -- the projection ----------------------------------------------------------------------


def project(
    conn: sqlite3.Connection,
    *,
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S,
    now: float | None = None,
) -> int:
    """Fold dossier records central received since the last call; returns how many.

    Cheap when nothing is new (two indexed reads, no write lock). Runs in its
    own write transaction unless the caller is already in one.
    """
    return projection.catch_up(conn, PROJECTION, lambda: _project(conn, duplicate_window_s, now))


def _project(conn: sqlite3.Connection, window_s: float, now: float | None) -> int:
    done = 0
    at = now_iso(now)
    for row in projection.new_records(conn, PROJECTION, ("dossier",)):
        try:
            body = json.loads(row.body)
            fields = _index_fields(body, row.created)
        except (ValueError, KeyError, TypeError) as exc:  # schema-checked at ingest: no
            log.error("dossier record %s/%s not indexed: %s", row.kiosk, row.id, exc)
            continue
        code = fields["code"]
        claimed = downlink_log.office_of(conn, row.kiosk)
        if claimed is not None and claimed != fields["office"]:
            log.warning(
                "dossier %s from kiosk %s names office %s, central has the kiosk at %s",
                code,
                row.kiosk,
                fields["office"],
                claimed,
            )
        known = conn.execute(
            "SELECT record_id, kiosk FROM dossier_index WHERE code = ?", (code,)
        ).fetchone()
        if known is not None and known[0] is not None:
            if (known[1], known[0]) != (row.kiosk, row.id):
                log.error(
                    "dossier code %s filed twice: record %s/%s kept, %s/%s not indexed",
                    code,
                    known[1],
                    known[0],
                    row.kiosk,
                    row.id,
                )
            continue
        dup = fields["unconfirmed_before"] or _earlier_filing(
            conn, fields["applicant_hash"], fields["procedure"], fields["received_unix"], window_s
        )
        values = {**fields, "kiosk": row.kiosk, "record_id": row.id, "duplicate_of": dup}
        if known is None:
            conn.execute(
                "INSERT INTO dossier_index (code, office, kiosk, record_id, procedure,"
                " applicant_hash, applicant_name, received_at, received_unix, day, state,"
                " fee_vnd, due, duplicate_of, unconfirmed_before, changed_at, indexed_at)"
                " VALUES (:code, :office, :kiosk, :record_id, :procedure, :applicant_hash,"
                " :applicant_name, :received_at, :received_unix, :day, :state, :fee_vnd, :due,"
                " :duplicate_of, :unconfirmed_before, :changed_at, :indexed_at)",
                {**values, "state": INITIAL, "changed_at": at, "indexed_at": row.received_at},
            )
        else:  # held: the back office spoke first; keep its state, payments and note
            conn.execute(
                "UPDATE dossier_index SET kiosk = :kiosk, record_id = :record_id,"
                " procedure = :procedure, applicant_hash = :applicant_hash,"
                " applicant_name = :applicant_name, received_at = :received_at,"
                " received_unix = :received_unix, day = :day, fee_vnd = :fee_vnd, due = :due,"
                " duplicate_of = :duplicate_of, unconfirmed_before = :unconfirmed_before"
                " WHERE code = :code",
                values,
            )
            _refresh_paid(conn, code)
            current = _row(conn, code)
            assert current is not None
            _send(conn, current)
            audit.record(
                conn,
                SYSTEM_ACTOR,
                "dossier.record-arrived",
                code,
                {"kiosk": row.kiosk, "record": row.id, "state": current["state"]},
            )
        done += 1
    return done


def _index_fields(body: dict[str, Any], created: str) -> dict[str, Any]:
    code = body["code"]
    if not isinstance(code, str) or DOSSIER_CODE_RE.match(code) is None:
        raise ValueError(f"bad code {code!r}")
    applicant = body["applicant"]
    received_at = body.get("received_at") or created
    parsed = parse_datetime(received_at) or parse_datetime(created)
    if parsed is None:
        raise ValueError(f"no usable date-time in received_at {received_at!r}")
    fee = body.get("fee_vnd")
    if fee is None and isinstance(body.get("fee"), dict):
        fee = body["fee"].get("amount_vnd")
    return {
        "code": code,
        "office": office_of_code(code),
        "procedure": str(body["procedure"]),
        "applicant_hash": applicant_hash(str(applicant["id_number"])),
        "applicant_name": str(applicant["full_name"]),
        "received_at": received_at,
        "received_unix": unix_seconds(parsed),
        "day": parsed.date().isoformat(),  # the office's own calendar day (its offset)
        "fee_vnd": fee if isinstance(fee, int) and not isinstance(fee, bool) else None,
        "due": body.get("due"),
        "unconfirmed_before": body.get("unconfirmed_before"),
    }


def _earlier_filing(
    conn: sqlite3.Connection, who: str, procedure: str, at: float, window_s: float
) -> str | None:
    row = conn.execute(
        "SELECT code FROM dossier_index WHERE applicant_hash = ? AND procedure = ?"
        " AND received_unix >= ? AND received_unix <= ? AND record_id IS NOT NULL"
        " ORDER BY received_unix DESC LIMIT 1",
        (who, procedure, at - window_s, at),
    ).fetchone()
    return None if row is None else str(row[0])


# -- reading ------------------------------------------------------------------------------


def _as_dict(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(COLUMNS, row, strict=True))
    out["paid"] = bool(out["paid"])
    out["received"] = out["record_id"] is not None
    return out


def _row(conn: sqlite3.Connection, code: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {', '.join(COLUMNS)} FROM dossier_index WHERE code = ?", (code,)
    ).fetchone()
    return None if row is None else _as_dict(row)


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BackofficeError(f"limit: {limit!r} is outside 1..{MAX_LIMIT}")
    return limit


def search_dossiers(
    conn: sqlite3.Connection,
    *,
    code: str | None = None,
    office: str | None = None,
    day: str | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Dossiers matching every filter given, newest first, at most ``limit``.

    ``code``: the whole code, or its start (``000.00.14.H56-261201``); ``day``:
    YYYY-MM-DD (the office's calendar day of reception); ``state``: a state name.
    """
    project(conn)
    where: list[str] = []
    args: list[Any] = []
    if code:
        if len(code) > 64:
            raise BackofficeError("code: longer than 64 characters")
        where.append("code >= ? AND code < ?")
        args += [code, code + "\U0010ffff"]
    if office:
        where.append("office = ?")
        args.append(office)
    if day:
        if DATE_RE.match(day) is None:
            raise BackofficeError(f"day: {day!r} is not a date YYYY-MM-DD")
        where.append("day = ?")
        args.append(day)
    if state:
        where.append("state = ?")
        args.append(_state(state))
    sql = f"SELECT {', '.join(COLUMNS)} FROM dossier_index"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY coalesce(received_unix, indexed_at) DESC, code DESC LIMIT ?"
    rows = conn.execute(sql, (*args, _limit(limit))).fetchall()
    return [_as_dict(r) for r in rows]


def get_dossier(conn: sqlite3.Connection, code: str) -> dict[str, Any]:
    """One dossier: its index row, payments, allowed next states and its history."""
    check_code(code)
    project(conn)
    out = _row(conn, code)
    if out is None:
        raise NotFound(f"dossier {code}: central has no such dossier (not received, never set)")
    out["allowed_next"] = sorted(allowed_next(parse_state(out["state"])))
    out["payments"] = payments(conn, code)
    out["history"] = audit.entries(conn, target=code, limit=50)
    return out


def payments(conn: sqlite3.Connection, code: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT reference, amount_vnd, paid_at, source, actor, at FROM dossier_payments"
        " WHERE code = ? ORDER BY at, reference",
        (code,),
    ).fetchall()
    keys = ("reference", "amount_vnd", "paid_at", "source", "actor", "at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# -- changes ------------------------------------------------------------------------------


def _state(value: str) -> State:
    try:
        return parse_state(value)
    except UnknownState as exc:
        raise BackofficeError(str(exc)) from None


def status_body(row: dict[str, Any]) -> dict[str, Any]:
    """The ``dossier-status`` downlink body of an index row (COMMON.md shape)."""
    return {
        "code": row["code"],
        "state": row["state"],
        "paid": bool(row["paid"]),
        "paid_amount_vnd": row["paid_amount"],
        "paid_at": row["paid_at"],
        "portal_code": row["portal_code"],
        "note": row["note"],
        "changed_at": row["changed_at"],
        "due": row["due"],
    }


def _send(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    return downlink_log.append(
        conn, downlink_log.office_audience(row["office"]), KIND, row["code"], status_body(row)
    )


def _hold(conn: sqlite3.Connection, code: str, at: str, now: float | None) -> dict[str, Any]:
    """The index row of ``code``, created without its record if central lacks it."""
    row = _row(conn, code)
    if row is not None:
        return row
    conn.execute(
        "INSERT INTO dossier_index (code, office, state, changed_at, indexed_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            code,
            office_of_code(code),
            INITIAL,
            at,
            datetime.now(UTC).timestamp() if now is None else now,
        ),
    )
    held = _row(conn, code)
    assert held is not None
    return held


def _portal_code(state: State, given: str | int | None, codes: PortalCodes) -> str | None:
    known = codes.code_of(state)
    if given is None or given == "":
        return None if known is None else str(known)
    text = str(given).strip()
    if len(text) > PORTAL_CODE_CHARS or not text.isascii() or not text.isprintable():
        raise BackofficeError(
            f"portal_code: {text[:40]!r} is not a portal status code (at most "
            f"{PORTAL_CODE_CHARS} printable ASCII characters)"
        )
    if known is not None and text != str(known):
        raise Conflict(
            f"portal_code: {text} does not match state {state!r}, whose portal code is {known} "
            f"in {codes.source}; send the state that code means, or fix the file"
        )
    return text


def set_status(
    conn: sqlite3.Connection,
    code: str,
    state: str,
    *,
    actor: str,
    note: str | None = None,
    portal_code: str | int | None = None,
    portal_codes: PortalCodes | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Move dossier ``code`` to ``state``; returns the dossier (``changed``: did anything).

    One transaction: index row, audit row, ``dossier-status`` item for the
    office. Raises :class:`BackofficeError` for a bad code/state/note,
    :class:`TransitionRefused` (a Conflict) naming the allowed next states.
    The same state again with the same note is accepted and changes nothing.
    A dossier central has not received yet is accepted and held (module doc).
    ``portal_code``: the portal's status code the back office sent, if any;
    it must agree with ``state`` where the code table knows that state.
    """
    check_code(code)
    wanted = _state(state)
    who = check_actor(actor)
    text = optional_text("note", note, max_chars=NOTE_CHARS, multiline=True)
    codes = portal_codes if portal_codes is not None else default_portal_codes()
    pcode = _portal_code(wanted, portal_code, codes)
    at = now_iso(now)
    with projection.transaction(conn):
        project(conn)
        row = _hold(conn, code, at, now)
        held = row["record_id"] is None
        current = parse_state(row["state"])
        try:
            new = check_transition(code, current, wanted)
        except IllegalTransition as exc:
            raise TransitionRefused(exc) from None
        if (
            new == current
            and text == row["note"]
            and (pcode or row["portal_code"]) == row["portal_code"]
        ):
            return {**row, "changed": False, "held": held}
        conn.execute(
            "UPDATE dossier_index SET state = ?, note = ?, portal_code = ?, changed_at = ?"
            " WHERE code = ?",
            (new, text, pcode, at, code),
        )
        out = _row(conn, code)
        assert out is not None
        cursor = _send(conn, out)
        audit.record(
            conn,
            who,
            "dossier.status",
            code,
            {"from": current, "to": new, "note": text, "portal_code": pcode, "held": held},
            now=now,
        )
    return {**out, "changed": True, "held": held, "cursor": cursor}


def _refresh_paid(conn: sqlite3.Connection, code: str) -> None:
    total, last = conn.execute(
        "SELECT sum(amount_vnd), max(paid_at) FROM dossier_payments WHERE code = ?", (code,)
    ).fetchone()
    if total is None:
        return
    conn.execute(
        "UPDATE dossier_index SET paid_amount = ?, paid_at = ?,"
        " paid = CASE WHEN fee_vnd IS NULL OR ? >= fee_vnd THEN 1 ELSE 0 END WHERE code = ?",
        (total, last, total, code),
    )


def _paid_at(value: str | datetime) -> str:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise BackofficeError("paid_at: a date-time without a UTC offset; give one (+07:00)")
        return value.isoformat(timespec="seconds")
    if not isinstance(value, str) or parse_datetime(value) is None:
        raise BackofficeError(
            f"paid_at: {value!r} is not an ISO 8601 date-time with a UTC offset, "
            f"e.g. 2026-12-01T09:15:00+07:00"
        )
    return value


def record_payment(
    conn: sqlite3.Connection,
    code: str,
    *,
    amount_vnd: int,
    reference: str,
    paid_at: str | datetime,
    actor: str,
    source: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Record a confirmed payment of ``code`` (idempotent per ``reference``).

    Returns the dossier with ``replayed`` (the reference was already recorded
    for this dossier and amount: nothing written) and ``changed``. The same
    reference for another dossier or amount raises :class:`Conflict`. The
    change flows down as ``dossier-status`` with ``paid`` true once the
    payments cover the fee. A payment for a dossier central has not received
    yet is held like a status change.
    """
    check_code(code)
    who = check_actor(actor)
    if isinstance(amount_vnd, bool) or not isinstance(amount_vnd, int):
        raise BackofficeError(f"amount_vnd: expected a whole number of dong, not {amount_vnd!r}")
    if not 1 <= amount_vnd <= FEE_VND_MAX:
        raise BackofficeError(f"amount_vnd: {amount_vnd} is outside 1..{FEE_VND_MAX}")
    ref = optional_text("reference", reference, max_chars=REFERENCE_CHARS)
    if ref is None:
        raise BackofficeError("reference: empty; give the bank's or the portal's transaction id")
    src = optional_text("source", source, max_chars=SOURCE_CHARS)
    if src is None or PROCEDURE_RE.match(src) is None:
        raise BackofficeError(
            f"source: {source!r}; expected a short name such as bank, portal or cli"
        )
    when = _paid_at(paid_at)
    stamp = datetime.now(UTC).timestamp() if now is None else now
    with projection.transaction(conn):
        project(conn)
        seen = conn.execute(
            "SELECT code, amount_vnd FROM dossier_payments WHERE reference = ?", (ref,)
        ).fetchone()
        if seen is not None:
            if (seen[0], seen[1]) != (code, amount_vnd):
                raise Conflict(
                    f"payment reference {ref!r} is already recorded for dossier {seen[0]}, "
                    f"{seen[1]} VND; a reference is used once (this call: {code}, "
                    f"{amount_vnd} VND)"
                )
            row = _row(conn, code)
            assert row is not None
            return {**row, "replayed": True, "changed": False, "held": row["record_id"] is None}
        total = conn.execute(
            "SELECT coalesce(sum(amount_vnd), 0) FROM dossier_payments WHERE code = ?", (code,)
        ).fetchone()[0]
        if total + amount_vnd > FEE_VND_MAX:
            raise BackofficeError(
                f"amount_vnd: dossier {code} would total {total + amount_vnd} VND, more than "
                f"{FEE_VND_MAX}; check the amount"
            )
        at = now_iso(now)
        row = _hold(conn, code, at, now)
        conn.execute(
            "INSERT INTO dossier_payments (reference, code, amount_vnd, paid_at, source, actor,"
            " at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ref, code, amount_vnd, when, src, who, stamp),
        )
        _refresh_paid(conn, code)
        conn.execute("UPDATE dossier_index SET changed_at = ? WHERE code = ?", (at, code))
        out = _row(conn, code)
        assert out is not None
        cursor = _send(conn, out)
        audit.record(
            conn,
            who,
            "dossier.payment",
            code,
            {
                "reference": ref,
                "amount_vnd": amount_vnd,
                "paid_at": when,
                "source": src,
                "paid": out["paid"],
                "held": row["record_id"] is None,
            },
            now=now,
        )
    return {
        **out,
        "replayed": False,
        "changed": True,
        "held": out["record_id"] is None,
        "cursor": cursor,
    }


# -- duplicates ---------------------------------------------------------------------------


def duplicates(
    conn: sqlite3.Connection,
    *,
    window_s: float = DEFAULT_DUPLICATE_WINDOW_S,
    office: str | None = None,
    day: str | None = None,
    limit: int = 100,
    include_settled: bool = False,
) -> dict[str, Any]:
    """Likely duplicate filings for staff: ``{"pairs": [...], "unconfirmed_before": n, ...}``.

    A pair is a later dossier and the earlier one it likely repeats: the same
    applicant and procedure within ``window_s`` seconds (reason
    ``same-applicant-procedure``), or the later one's body names the earlier
    as ``unconfirmed_before`` (reason ``unconfirmed-before``, any time apart).
    ``office`` and ``day`` filter on the later dossier. A pair where either
    dossier is withdrawn or rejected is settled (staff have acted) and left out
    unless ``include_settled``.
    """
    if isinstance(window_s, bool) or not 0 < float(window_s) <= MAX_DUPLICATE_WINDOW_S:
        raise BackofficeError(
            f"window: {window_s!r} s is outside 0..{MAX_DUPLICATE_WINDOW_S:.0f} s (366 days)"
        )
    project(conn)
    where = ["b.record_id IS NOT NULL"]
    args: list[Any] = [float(window_s)]
    if office:
        where.append("b.office = ?")
        args.append(office)
    if day:
        if DATE_RE.match(day) is None:
            raise BackofficeError(f"day: {day!r} is not a date YYYY-MM-DD")
        where.append("b.day = ?")
        args.append(day)
    if not include_settled:
        where.append("b.state NOT IN ('withdrawn', 'rejected')")
        where.append("a.state NOT IN ('withdrawn', 'rejected')")
    cond = " AND ".join(where)
    rows = conn.execute(
        "SELECT b.code, a.code, CASE WHEN b.unconfirmed_before = a.code"
        " THEN 'unconfirmed-before' ELSE 'same-applicant-procedure' END,"
        " b.applicant_name, b.procedure, b.office, b.received_at, a.received_at,"
        " b.received_unix - a.received_unix, b.state, a.state"
        " FROM dossier_index b JOIN dossier_index a ON a.code != b.code AND ("
        "  b.unconfirmed_before = a.code OR (a.applicant_hash = b.applicant_hash"
        "  AND a.procedure = b.procedure AND a.record_id IS NOT NULL"
        "  AND a.received_unix <= b.received_unix"
        "  AND b.received_unix - a.received_unix <= ?"
        "  AND (a.received_unix < b.received_unix OR a.code < b.code)))"
        f" WHERE {cond} ORDER BY b.received_unix DESC, b.code, a.code LIMIT ?",
        (*args, _limit(limit)),
    ).fetchall()
    keys = (
        "code",
        "duplicate_of",
        "reason",
        "applicant_name",
        "procedure",
        "office",
        "received_at",
        "earlier_received_at",
        "apart_s",
        "state",
        "earlier_state",
    )
    pairs = [dict(zip(keys, r, strict=True)) for r in rows]
    unconfirmed = conn.execute(
        "SELECT count(*) FROM dossier_index WHERE unconfirmed_before IS NOT NULL"
    ).fetchone()[0]
    return {"window_s": float(window_s), "pairs": pairs, "unconfirmed_before": int(unconfirmed)}


# -- configuration ------------------------------------------------------------------------

_default_codes: PortalCodes | None = None


def default_portal_codes() -> PortalCodes:
    """The bundled portal status code table (read once)."""
    global _default_codes
    if _default_codes is None:
        try:
            _default_codes = load_portal_codes()
        except PortalCodesError as exc:  # a broken install: say so, do not guess
            raise BackofficeError(str(exc)) from None
    return _default_codes
