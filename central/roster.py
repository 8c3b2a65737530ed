"""The free support team's duty roster: staff, their channels and their shifts.

Theory of operation
-------------------
A **staff member** has an id (a short slug chosen by the admin, e.g.
``lan.nguyen``), a display name shown to citizens, a phone, an optional
e-mail for notifications and the channels they answer on (``desk``: they walk
to the kiosk; ``hotline``: they call back; ``zalo``: they message).

A **shift** puts one staff member on duty for one office (the agency
identifier that starts the office's dossier codes) from ``start`` to ``end``
(``HH:MM``, end excluded), either every given weekday (0 Monday .. 6 Sunday)
or on one date. Times are the office's wall clock (``[support] timezone``);
a shift that crosses midnight is two shifts.

:func:`on_duty` answers "who is on duty for this office now": every active
staff member with a shift covering ``at``, fewest open requests first (the
router takes the first). Every change goes through a function here that
writes its audit row in the same transaction (:mod:`central.audit`); the CLI
and the HTTP API call these functions and nothing else.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from central import audit
from central.backoffice_db import transaction
from sync.schemas import PHONE_RE, text_problem

CHANNELS = ("desk", "hotline", "zalo")
STAFF_ID_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,39}\Z")
OFFICE_RE = re.compile(r"\A[0-9A-Za-z.]{1,40}\Z")
DAY_RE = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
HHMM_RE = re.compile(r"\A([01][0-9]|2[0-3]):[0-5][0-9]\Z")
EMAIL_RE = re.compile(r"\A[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,63}\Z")
NAME_CHARS = 100
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


class RosterError(ValueError):
    """A roster change was refused; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(RosterError):
    """The staff member or shift named does not exist."""


@dataclass(frozen=True, kw_only=True)
class Staff:
    id: str
    name: str
    phone: str
    email: str | None
    channels: tuple[str, ...]
    active: bool

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(self.channels)
        return out


@dataclass(frozen=True, kw_only=True)
class Shift:
    n: int
    staff: str
    office: str
    weekday: int | None
    day: str | None
    start: str
    end: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- validation ----------------------------------------------------------------------


def check_staff_id(value: str, field: str = "id") -> str:
    if not isinstance(value, str) or not STAFF_ID_RE.match(value):
        raise RosterError(
            field, "expected 1-40 characters of a-z, 0-9, '.', '_' or '-', such as lan.nguyen"
        )
    return value


def check_office(value: str, field: str = "office") -> str:
    if not isinstance(value, str) or not OFFICE_RE.match(value):
        raise RosterError(
            field, "expected an agency identifier of 1-40 letters, digits and dots (000.00.14.H56)"
        )
    return value


def _check_name(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RosterError("name", "a display name is required (shown to citizens)")
    if len(value) > NAME_CHARS:
        raise RosterError("name", f"at most {NAME_CHARS} characters, got {len(value)}")
    problem = text_problem(value)
    if problem is not None:
        raise RosterError("name", problem[1])
    return value.strip()


def _check_phone(value: str) -> str:
    if not isinstance(value, str) or not PHONE_RE.match(value):
        raise RosterError("phone", "expected a phone number: digits, optional +, spaces, . - ( )")
    return value


def _check_email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not EMAIL_RE.match(value):
        raise RosterError("email", "expected an e-mail address such as lan@example.vn")
    return value


def _check_channels(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise RosterError("channels", f"at least one of {', '.join(CHANNELS)}")
    out: list[str] = []
    for ch in value:
        if ch not in CHANNELS:
            raise RosterError("channels", f"unknown channel {ch!r}; expected {', '.join(CHANNELS)}")
        if ch not in out:
            out.append(ch)
    return tuple(out)


def _check_time(value: str, field: str) -> str:
    if not isinstance(value, str) or not HHMM_RE.match(value):
        raise RosterError(field, "expected a time HH:MM (24 h), such as 07:30")
    return value


def _check_day(value: str) -> str:
    if isinstance(value, str) and DAY_RE.match(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise RosterError("day", "expected a date YYYY-MM-DD, such as 2026-12-24")


# -- staff ---------------------------------------------------------------------------


def _staff_row(row: tuple[Any, ...]) -> Staff:
    sid, name, phone, email, channels, active = row
    return Staff(
        id=sid,
        name=name,
        phone=phone,
        email=email,
        channels=tuple(json.loads(channels)),
        active=bool(active),
    )


_STAFF_COLS = "id, name, phone, email, channels, active"


def add_staff(
    conn: sqlite3.Connection,
    actor: str,
    *,
    staff_id: str,
    name: str,
    phone: str,
    channels: Any,
    email: str | None = None,
) -> Staff:
    """Add a staff member, or update one with the same id (reactivating them)."""
    staff = Staff(
        id=check_staff_id(staff_id),
        name=_check_name(name),
        phone=_check_phone(phone),
        email=_check_email(email),
        channels=_check_channels(channels),
        active=True,
    )
    with transaction(conn):
        conn.execute(
            "INSERT INTO staff (id, name, phone, email, channels, active, created_at)"
            " VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
            " phone = excluded.phone, email = excluded.email, channels = excluded.channels,"
            " active = 1",
            (
                staff.id,
                staff.name,
                staff.phone,
                staff.email,
                json.dumps(list(staff.channels)),
                time.time(),
            ),
        )
        audit.record(conn, actor, "roster.staff.put", f"roster:{staff.id}", staff.as_dict())
    return staff


def get_staff(conn: sqlite3.Connection, staff_id: str) -> Staff:
    row = conn.execute(f"SELECT {_STAFF_COLS} FROM staff WHERE id = ?", (staff_id,)).fetchone()
    if row is None:
        raise NotFound("staff", f"no staff member {staff_id!r}; see: aps-central roster list")
    return _staff_row(row)


def list_staff(conn: sqlite3.Connection, *, include_inactive: bool = False) -> list[Staff]:
    sql = f"SELECT {_STAFF_COLS} FROM staff"
    if not include_inactive:
        sql += " WHERE active = 1"
    return [_staff_row(r) for r in conn.execute(sql + " ORDER BY id")]


def remove_staff(conn: sqlite3.Connection, actor: str, staff_id: str) -> None:
    """Deactivate a staff member and drop their shifts (their past requests keep the id)."""
    with transaction(conn):
        get_staff(conn, staff_id)
        dropped = conn.execute("DELETE FROM shifts WHERE staff = ?", (staff_id,)).rowcount
        conn.execute("UPDATE staff SET active = 0 WHERE id = ?", (staff_id,))
        audit.record(
            conn, actor, "roster.staff.remove", f"roster:{staff_id}", {"shifts_removed": dropped}
        )


# -- shifts --------------------------------------------------------------------------


def _shift_row(row: tuple[Any, ...]) -> Shift:
    n, staff, office, weekday, day, start, end = row
    return Shift(n=n, staff=staff, office=office, weekday=weekday, day=day, start=start, end=end)


_SHIFT_COLS = 'n, staff, office, weekday, day, start, "end"'  # END is reserved in PostgreSQL


def add_shift(
    conn: sqlite3.Connection,
    actor: str,
    *,
    staff_id: str,
    office: str,
    start: str,
    end: str,
    weekday: int | None = None,
    day: str | None = None,
) -> Shift:
    """Put a staff member on duty for an office, every ``weekday`` or on one ``day``."""
    check_staff_id(staff_id, "staff")
    check_office(office)
    _check_time(start, "start")
    _check_time(end, "end")
    if end <= start:
        raise RosterError(
            "end", f"must be after start ({start}); a shift across midnight is two shifts"
        )
    if (weekday is None) == (day is None):
        raise RosterError("weekday", "give exactly one of weekday (0 Monday .. 6 Sunday) or day")
    if weekday is not None and (
        isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6
    ):
        raise RosterError("weekday", "expected 0 (Monday) to 6 (Sunday)")
    if day is not None:
        day = _check_day(day)
    with transaction(conn):
        staff = get_staff(conn, staff_id)
        if not staff.active:
            raise RosterError("staff", f"{staff_id} was removed; add them again first")
        cur = conn.execute(
            'INSERT INTO shifts (staff, office, weekday, day, start, "end", created_at)'
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING n",
            (staff_id, office, weekday, day, start, end, time.time()),
        )
        shift = Shift(
            n=int(cur.fetchone()[0]),
            staff=staff_id,
            office=office,
            weekday=weekday,
            day=day,
            start=start,
            end=end,
        )
        audit.record(conn, actor, "roster.shift.add", f"roster:{staff_id}", shift.as_dict())
    return shift


def list_shifts(
    conn: sqlite3.Connection, *, office: str | None = None, staff_id: str | None = None
) -> list[Shift]:
    sql = f"SELECT {_SHIFT_COLS} FROM shifts WHERE 1 = 1"
    args: list[Any] = []
    if office is not None:
        sql += " AND office = ?"
        args.append(office)
    if staff_id is not None:
        sql += " AND staff = ?"
        args.append(staff_id)
    return [_shift_row(r) for r in conn.execute(sql + " ORDER BY office, n", args)]


def remove_shift(conn: sqlite3.Connection, actor: str, n: int) -> None:
    with transaction(conn):
        row = conn.execute(f"SELECT {_SHIFT_COLS} FROM shifts WHERE n = ?", (n,)).fetchone()
        if row is None:
            raise NotFound("shift", f"no shift {n}; see: aps-central roster list")
        shift = _shift_row(row)
        conn.execute("DELETE FROM shifts WHERE n = ?", (n,))
        audit.record(conn, actor, "roster.shift.remove", f"roster:{shift.staff}", shift.as_dict())


def local_time(at: datetime, timezone: str = DEFAULT_TIMEZONE) -> datetime:
    """``at`` on the office's wall clock (an aware datetime is required)."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware (central never guesses a time zone)")
    return at.astimezone(ZoneInfo(timezone))


def on_duty(
    conn: sqlite3.Connection,
    office: str,
    at: datetime,
    *,
    timezone: str = DEFAULT_TIMEZONE,
) -> list[Staff]:
    """Active staff with a shift for ``office`` covering ``at``, least busy first.

    Busy: requests assigned to them and not yet resolved (``support_requests``,
    when that table exists). Ties go to the staff id, so the answer is stable.
    """
    local = local_time(at, timezone)
    hhmm = local.strftime("%H:%M")
    rows = conn.execute(
        "SELECT DISTINCT s.id, s.name, s.phone, s.email, s.channels, s.active"
        " FROM shifts h JOIN staff s ON s.id = h.staff"
        ' WHERE h.office = ? AND s.active = 1 AND h.start <= ? AND ? < h."end"'
        " AND (h.weekday = ? OR h.day = ?)",
        (office, hhmm, hhmm, local.weekday(), local.date().isoformat()),
    ).fetchall()
    staff = [_staff_row(r) for r in rows]
    load = _open_load(conn)
    return sorted(staff, key=lambda s: (load.get(s.id, 0), s.id))


def _open_load(conn: sqlite3.Connection) -> dict[str, int]:
    try:
        rows = conn.execute(
            "SELECT staff_id, count(*) FROM support_requests"
            " WHERE staff_id IS NOT NULL AND status IN ('assigned', 'acknowledged')"
            " GROUP BY staff_id"
        ).fetchall()
    except sqlite3.OperationalError:  # support's schema not there (roster used alone)
        return {}
    return {r[0]: int(r[1]) for r in rows}
