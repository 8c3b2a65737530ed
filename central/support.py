"""Support requests: from the kiosk's help screen or button to a staff member.

Theory of operation
-------------------
A kiosk sends a help or home-visit request as an ordinary ``support`` record
(durable outbox, exactly-once ingest). :func:`project` copies new ``support``
records into ``support_requests``, catching up by the records table's rowid
(``support_progress``); it is idempotent (``UNIQUE (kiosk, record_id)``), so
every reader calls it first and central's router calls it every round.

Each request then moves through a small state machine, one table
(:data:`TRANSITIONS`) that every change goes through, so an illegal move
(resolving twice, acknowledging a request nobody was given) is refused with
:class:`IllegalTransition`:

- ``pending`` (help, just projected) --route--> ``assigned`` (someone is on
  duty for the kiosk's office now: :func:`central.roster.on_duty`) or
  ``no-one-on-duty`` (the reply carries the hotline from config);
- ``queued`` (a home visit: it waits for the team to pick someone)
  --assign--> ``assigned``;
- ``assigned``/``no-one-on-duty`` --acknowledge--> ``acknowledged``;
- anything open --resolve--> ``resolved``; open requests may be re-assigned.

Every move that the citizen should see appends a ``support-reply`` item to
the downlink log for the asking kiosk (audience ``kiosk:<id>``, key the
lookup code) in the same transaction, with an audit row.

**Notifications** are a second, separate step (:func:`route_pending` does
both): assigning sets ``notify_state = pending``; the router sends outside
any transaction, then records ``sent`` or the error, with a bounded number
of attempts and exponential backoff. A help request from a kiosk that a
staff member was sent to within ``coalesce_s`` goes to the same person
without a new notification (``coalesced``): a citizen pressing the button
forty times, or a kiosk flooding, pages nobody forty times. A request is never lost or rolled back
by a notifier failure; after the last attempt it is ``failed`` (listed, and
logged as an ALERT) and the kiosk is told to call the hotline instead.

**Response times**: ``received_at`` (central got the record), ``notified_at``,
``acknowledged_at`` and ``resolved_at`` are kept; :meth:`Request.as_dict`
gives the seconds from receipt to each.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from central import audit, dossiers, downlink_log, projection, roster
from central.backoffice_db import transaction
from central.notify import Notification, Notifier, NotifyError
from sync.schemas import LOOKUP_CODE_RE

log = logging.getLogger("aps.central.support")


STATUSES = ("pending", "queued", "assigned", "no-one-on-duty", "acknowledged", "resolved")
OPEN = frozenset(STATUSES) - {"resolved"}
# (action, from-status) -> allowed; the resulting status is the action's own
# (route decides between two), so the table says what may happen, not how.
TRANSITIONS: dict[str, frozenset[str]] = {
    "route": frozenset({"pending"}),
    "assign": frozenset({"pending", "queued", "assigned", "no-one-on-duty", "acknowledged"}),
    "acknowledge": frozenset({"assigned", "no-one-on-duty"}),
    "resolve": OPEN,
    # The router, when the assignee left the roster before being notified.
    "unassign": frozenset({"assigned"}),
}
PROJECT_BATCH = 1000
NOTIFY_BATCH = 20
RESOLUTION_CHARS = 1000
ROUTER = "central:router"
#: The request is still routed as when it was read (``routed_at IS ?`` on SQLite alone:
#: PostgreSQL's IS takes no parameter; routed_at is a Unix time, never -1).
_SAME_ROUTING = " AND coalesce(routed_at, -1) = coalesce(?, -1)"


class SupportError(ValueError):
    """A support change was refused; ``field`` names what to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RequestNotFound(SupportError):
    pass


class IllegalTransition(SupportError):
    """The action is not allowed from the request's current status."""


@dataclass(frozen=True, kw_only=True)
class SupportSettings:
    hotline: str | None = None  # the office's hotline, shown when no one is on duty
    timezone: str = roster.DEFAULT_TIMEZONE
    notify_max_attempts: int = 6
    notify_backoff_s: float = 5.0
    notify_backoff_max_s: float = 300.0
    # A help request from a kiosk someone was sent to this recently goes to them too.
    coalesce_s: float = 600.0

    def timezone_info(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def check_transition(action: str, status: str) -> None:
    allowed = TRANSITIONS.get(action)
    if allowed is None:
        raise IllegalTransition("action", f"unknown action {action!r}")
    if status not in allowed:
        raise IllegalTransition(
            "status",
            f"cannot {action} a request that is {status}; allowed from: "
            f"{', '.join(sorted(allowed))}",
        )


@dataclass(frozen=True, kw_only=True)
class Request:
    n: int
    kiosk: str
    record_id: str
    office: str | None
    type: str
    source: str | None
    lookup_code: str | None
    message: str
    topic: str | None
    contact: str | None
    channel: str | None
    full_name: str | None
    phone: str | None
    address: str | None
    reason: str | None
    created: str
    received_at: float
    status: str
    staff_id: str | None
    routed_at: float | None
    notify_state: str
    notify_attempts: int
    notify_next_at: float | None
    notify_error: str | None
    notified_at: float | None
    acknowledged_at: float | None
    acknowledged_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    resolution: str | None

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in _COLUMNS}
        del out["record_id"]
        out["record"] = self.record_id

        def since(t: float | None) -> float | None:
            return None if t is None else round(t - self.received_at, 3)

        out["response_s"] = {
            "notified": since(self.notified_at),
            "acknowledged": since(self.acknowledged_at),
            "resolved": since(self.resolved_at),
        }
        return out


_COLUMNS = tuple(name for name in Request.__dataclass_fields__ if name not in ("source_rowid",))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM support_requests"


def _row(row: tuple[Any, ...]) -> Request:
    return Request(**dict(zip(_COLUMNS, row, strict=True)))


def iso(ts: float, timezone: str = roster.DEFAULT_TIMEZONE) -> str:
    """Unix seconds as ISO 8601 with the office's offset (like record ``created``)."""
    return datetime.fromtimestamp(ts, ZoneInfo(timezone)).isoformat(timespec="seconds")


# -- projection ----------------------------------------------------------------------


def project(conn: sqlite3.Connection, *, limit: int = PROJECT_BATCH) -> int:
    """Copy support records not yet projected; returns how many requests are new.

    Repeats in batches until it has caught up. Safe to call from anywhere, any
    number of times, concurrently: each batch is one write transaction.
    """
    # Cheap when nothing is new: two indexed reads, no write lock.
    top = projection.records_top(conn)
    row = conn.execute("SELECT value FROM support_progress WHERE name = 'records_rowid'").fetchone()
    if top <= (int(row[0]) if row else 0):
        return 0
    added = 0
    while True:
        with transaction(conn):
            row = conn.execute(
                "SELECT value FROM support_progress WHERE name = 'records_rowid'"
            ).fetchone()
            after = int(row[0]) if row else 0
            # Records are never deleted, and records_top is the fenced top (SQLite: one
            # writer, rowids in commit order; PostgreSQL: store_pg's records fence):
            # every record committed later gets a rowid above `high`.
            high = projection.records_top(conn)
            rows = conn.execute(
                "SELECT rowid, kiosk, id, created, received_at, body FROM records"
                " WHERE rowid > ? AND rowid <= ? AND kind = 'support' ORDER BY rowid LIMIT ?",
                (after, high, limit),
            ).fetchall()
            for rowid, kiosk, rec_id, created, received_at, text in rows:
                added += _insert(conn, rowid, kiosk, rec_id, created, received_at, text)
            done = len(rows) < limit
            last = high if done else rows[-1][0]
            if last > after:
                conn.execute(
                    "INSERT INTO support_progress (name, value) VALUES ('records_rowid', ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (last,),
                )
        if done:
            return added


def _insert(
    conn: sqlite3.Connection,
    rowid: int,
    kiosk: str,
    rec_id: str,
    created: str,
    received_at: float,
    text: str,
) -> int:
    try:
        body = json.loads(text)
    except ValueError:  # the store only holds validated bodies; never lose the rest
        log.error("support record %s/%s: body is not JSON; skipped", kiosk, rec_id)
        return 0
    kind = body.get("type") or "help"
    status = "queued" if kind == "home-visit" else "pending"
    cur = conn.execute(
        "INSERT INTO support_requests (kiosk, record_id, source_rowid, office, type,"
        " source, lookup_code, message, topic, contact, channel, full_name, phone, address,"
        " reason, created, received_at, status)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (
            kiosk,
            rec_id,
            rowid,
            office_of_kiosk(conn, kiosk),
            kind,
            body.get("source"),
            body.get("lookup_code"),
            body.get("message", ""),
            body.get("topic"),
            body.get("contact"),
            body.get("channel"),
            body.get("full_name"),
            body.get("phone"),
            body.get("address"),
            body.get("reason"),
            created,
            received_at,
            status,
        ),
    )
    return cur.rowcount


def office_of_kiosk(conn: sqlite3.Connection, kiosk: str) -> str | None:
    """The kiosk's office: as it claimed it (downlink), else from the dossiers it filed."""
    office = downlink_log.office_of(conn, kiosk)
    if office is not None:
        return office
    try:
        row = conn.execute(
            "SELECT office FROM dossier_index WHERE kiosk = ? ORDER BY received_unix DESC LIMIT 1",
            (kiosk,),
        ).fetchone()
    except sqlite3.OperationalError:  # the dossier index is not there (support used alone)
        return None
    return None if row is None else str(row[0])


# -- reading -------------------------------------------------------------------------


def get_request(conn: sqlite3.Connection, n: int) -> Request:
    row = conn.execute(_SELECT + " WHERE n = ?", (n,)).fetchone()
    if row is None:
        raise RequestNotFound("request", f"no support request {n}; see: aps-central support list")
    return _row(row)


def list_requests(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    type: str | None = None,
    office: str | None = None,
    staff_id: str | None = None,
    lookup_code: str | None = None,
    open_only: bool = False,
    before: int | None = None,
    limit: int = 100,
    catch_up: bool = True,
) -> list[Request]:
    """Requests newest first (``before``: the ``n`` to page below)."""
    if catch_up:
        project(conn)
    if status is not None and status not in STATUSES:
        raise SupportError("status", f"expected one of {', '.join(STATUSES)}")
    if type is not None and type not in ("help", "home-visit"):
        raise SupportError("type", "expected help or home-visit")
    sql = _SELECT + " WHERE 1 = 1"
    args: list[Any] = []
    for column, value in (
        ("status", status),
        ("type", type),
        ("office", office),
        ("staff_id", staff_id),
        ("lookup_code", lookup_code),
    ):
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    if open_only:
        sql += " AND status != 'resolved'"
    if before is not None:
        sql += " AND n < ?"
        args.append(before)
    sql += " ORDER BY n DESC LIMIT ?"
    args.append(max(0, limit))
    return [_row(r) for r in conn.execute(sql, args)]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def response_report(
    conn: sqlite3.Connection,
    *,
    office: str | None = None,
    since: str | None = None,
    until: str | None = None,
    timezone: str = roster.DEFAULT_TIMEZONE,
) -> list[dict[str, Any]]:
    """Requests per office and day (office time) with response-time medians and p90s.

    ``since``/``until``: inclusive days YYYY-MM-DD. Seconds from central's receipt
    to the first notification, the acknowledgement and the resolution.
    """
    for name, value in (("since", since), ("until", until)):
        if value is not None and not roster.DAY_RE.match(value):
            raise SupportError(name, "expected a date YYYY-MM-DD")
    project(conn)
    zone = ZoneInfo(timezone)
    groups: dict[tuple[str, str], list[Request]] = {}
    sql, args = _SELECT + " WHERE 1 = 1", []
    if office is not None:
        sql += " AND office = ?"
        args.append(office)
    for row in conn.execute(sql + " ORDER BY n", args):
        req = _row(row)
        day = datetime.fromtimestamp(req.received_at, zone).date().isoformat()
        if (since and day < since) or (until and day > until):
            continue
        groups.setdefault((req.office or "unknown", day), []).append(req)
    out: list[dict[str, Any]] = []
    for (where, day), reqs in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
        entry: dict[str, Any] = {
            "office": where,
            "day": day,
            "requests": len(reqs),
            "help": sum(r.type == "help" for r in reqs),
            "home_visits": sum(r.type == "home-visit" for r in reqs),
            "no_one_on_duty": sum(r.status == "no-one-on-duty" for r in reqs),
            "notify_failed": sum(r.notify_state == "failed" for r in reqs),
            "open": sum(r.status != "resolved" for r in reqs),
        }
        for name, attr in (
            ("notified", "notified_at"),
            ("acknowledged", "acknowledged_at"),
            ("resolved", "resolved_at"),
        ):
            waits = [getattr(r, attr) - r.received_at for r in reqs if getattr(r, attr)]
            entry[f"{name}_s"] = {
                "count": len(waits),
                "p50": _percentile(waits, 0.5),
                "p90": _percentile(waits, 0.9),
            }
        out.append(entry)
    return out


# -- the kiosk's reply ---------------------------------------------------------------


def _reply(
    conn: sqlite3.Connection,
    req: Request,
    status: str,
    message: str,
    *,
    staff: roster.Staff | None = None,
    channel: str | None = None,
    hotline: str | None = None,
    now: float,
    settings: SupportSettings,
) -> int | None:
    """Append the ``support-reply`` item for the asking kiosk; its cursor, or None."""
    code = req.lookup_code
    if code is None or not LOOKUP_CODE_RE.match(code):
        log.warning(
            "support request %d from %s has no lookup code: no reply sent", req.n, req.kiosk
        )
        return None
    body = {
        "lookup_code": code,
        "status": status,
        "staff_name": None if staff is None else staff.name,
        "channel": channel,
        "hotline": hotline,
        "message": message,
        "at": iso(now, settings.timezone),
    }
    return downlink_log.append(
        conn, downlink_log.kiosk_audience(req.kiosk), "support-reply", code, body, now=now
    )


def _channel_for(req: Request, staff: roster.Staff) -> str:
    wanted = (req.channel or "").strip().lower()
    return wanted if wanted in staff.channels else staff.channels[0]


def _assigned_message(req: Request, staff: roster.Staff, channel: str) -> tuple[str, str | None]:
    """(message for the screen, number to call) once ``staff`` has the request."""
    if req.type == "home-visit":
        return (
            f"Cán bộ {staff.name} sẽ liên hệ với bạn để hẹn lịch đến tận nhà hỗ trợ. "
            f"Số điện thoại của cán bộ: {staff.phone}.",
            staff.phone,
        )
    if channel == "desk":
        return f"Cán bộ {staff.name} đang đến máy để hỗ trợ bạn. Vui lòng chờ tại đây.", None
    if channel == "zalo":
        return (
            f"Cán bộ {staff.name} sẽ hỗ trợ bạn qua Zalo số {staff.phone}.",
            staff.phone,
        )
    return (
        f"Cán bộ {staff.name} đang trực đường dây nóng. Vui lòng gọi số {staff.phone}.",
        staff.phone,
    )


def _hotline_message(hotline: str | None, *, failed: bool = False) -> str:
    lead = "Chưa liên lạc được cán bộ trực." if failed else "Hiện không có cán bộ trực."
    if hotline:
        return f"{lead} Vui lòng gọi đường dây nóng {hotline} để được hỗ trợ."
    return f"{lead} Vui lòng đến quầy tiếp nhận của bộ phận một cửa để được hỗ trợ."


# -- changes -------------------------------------------------------------------------


def _set_assigned(
    conn: sqlite3.Connection,
    actor: str,
    req: Request,
    staff: roster.Staff,
    *,
    now: float,
    settings: SupportSettings,
    action: str,
    notify: bool = True,
) -> None:
    channel = _channel_for(req, staff)
    message, number = _assigned_message(req, staff, channel)
    conn.execute(
        "UPDATE support_requests SET status = 'assigned', staff_id = ?, routed_at = ?,"
        " notify_state = ?, notify_attempts = 0, notify_next_at = ?,"
        " notify_error = NULL, notified_at = NULL, acknowledged_at = NULL,"
        " acknowledged_by = NULL WHERE n = ?",
        (staff.id, now, "pending" if notify else "coalesced", now if notify else None, req.n),
    )
    cursor = _reply(
        conn,
        req,
        "assigned",
        message,
        staff=staff,
        channel=channel,
        hotline=number,
        now=now,
        settings=settings,
    )
    audit.record(
        conn,
        actor,
        f"support.{action}",
        _target(req),
        {"staff": staff.id, "channel": channel, "reply_cursor": cursor},
        now=now,
    )


def _already_coming(
    conn: sqlite3.Connection, req: Request, now: float, settings: SupportSettings
) -> roster.Staff | None:
    """The staff member given an open help request of the same kiosk lately, if any."""
    row = conn.execute(
        "SELECT staff_id FROM support_requests WHERE kiosk = ? AND n != ? AND type = 'help'"
        " AND status IN ('assigned', 'acknowledged') AND staff_id IS NOT NULL"
        " AND notify_state IN ('pending', 'sent', 'coalesced', 'not-configured')"
        " AND routed_at >= ? ORDER BY routed_at DESC LIMIT 1",
        (req.kiosk, req.n, now - settings.coalesce_s),
    ).fetchone()
    if row is None or req.type != "help":
        return None
    staff = _staff_or_none(conn, row[0])
    return staff if staff is not None and staff.active else None


def _target(req: Request) -> str:
    return f"support:{req.n}" + (f":{req.lookup_code}" if req.lookup_code else "")


def _route_one(
    conn: sqlite3.Connection, n: int, *, now: datetime, settings: SupportSettings
) -> str | None:
    ts = now.timestamp()
    with transaction(conn):
        req = get_request(conn, n)
        if req.status != "pending":  # someone else routed or assigned it meanwhile
            return None
        check_transition("route", req.status)
        office = req.office or office_of_kiosk(conn, req.kiosk)
        if office != req.office:
            conn.execute("UPDATE support_requests SET office = ? WHERE n = ?", (office, n))
        coming = _already_coming(conn, req, ts, settings)
        if coming is not None:
            # Someone is already on the way to this kiosk: they take this one too,
            # and are not notified again (a flood of presses is one notification).
            _set_assigned(
                conn,
                ROUTER,
                req,
                coming,
                now=ts,
                settings=settings,
                action="route",
                notify=False,
            )
            return "assigned"
        staff = roster.on_duty(conn, office, now, timezone=settings.timezone) if office else []
        if staff:
            _set_assigned(conn, ROUTER, req, staff[0], now=ts, settings=settings, action="route")
            return "assigned"
        conn.execute(
            "UPDATE support_requests SET status = 'no-one-on-duty', office = ?, routed_at = ?"
            " WHERE n = ?",
            (office, ts, n),
        )
        cursor = _reply(
            conn,
            req,
            "no-one-on-duty",
            _hotline_message(settings.hotline),
            hotline=settings.hotline,
            channel="hotline" if settings.hotline else None,
            now=ts,
            settings=settings,
        )
        audit.record(
            conn,
            ROUTER,
            "support.route",
            _target(req),
            {"status": "no-one-on-duty", "office": office, "reply_cursor": cursor},
            now=ts,
        )
        return "no-one-on-duty"


@dataclass(frozen=True, kw_only=True)
class RouteReport:
    projected: int
    assigned: int
    no_one_on_duty: int
    notified: int
    notify_failures: int
    gave_up: int


def route_pending(
    conn: sqlite3.Connection,
    notifier: Notifier | None,
    now: datetime | None = None,
    *,
    settings: SupportSettings | None = None,
) -> RouteReport:
    """One round of the router: project, route new help requests, send due notifications.

    ``notifier`` None: nobody is notified (``notify_state`` not-configured);
    staff see the requests in the list. Run by one thread of ``aps-central
    run`` (:class:`central.support_router.SupportRouter`), never two at once.
    """
    settings = settings or SupportSettings()
    now = now or datetime.now(UTC)
    dossiers.project(conn)  # a kiosk's office may be known from its dossiers only
    projected = project(conn)
    counts = {"assigned": 0, "no-one-on-duty": 0}
    pending = [
        r[0]
        for r in conn.execute(
            "SELECT n FROM support_requests WHERE status = 'pending' ORDER BY n LIMIT 500"
        )
    ]
    for n in pending:
        try:
            result = _route_one(conn, n, now=now, settings=settings)
        except sqlite3.OperationalError:
            raise  # locked or broken database: the whole round waits for the next
        except Exception:  # one bad request must not hold up every other one
            log.exception("support request %d could not be routed (tried again next round)", n)
            continue
        if result is not None:
            counts[result] += 1
    notified, failures, gave_up = _send_due(conn, notifier, now=now, settings=settings)
    return RouteReport(
        projected=projected,
        assigned=counts["assigned"],
        no_one_on_duty=counts["no-one-on-duty"],
        notified=notified,
        notify_failures=failures,
        gave_up=gave_up,
    )


def _send_due(
    conn: sqlite3.Connection,
    notifier: Notifier | None,
    *,
    now: datetime,
    settings: SupportSettings,
) -> tuple[int, int, int]:
    ts = now.timestamp()
    due = [
        _row(r)
        for r in conn.execute(
            _SELECT + " WHERE notify_state = 'pending' AND notify_next_at <= ?"
            " ORDER BY notify_next_at, n LIMIT ?",
            (ts, NOTIFY_BATCH),
        )
    ]
    notified = failures = gave_up = 0
    for req in due:
        if notifier is None:
            with transaction(conn):
                conn.execute(
                    "UPDATE support_requests SET notify_state = 'not-configured'"
                    " WHERE n = ? AND notify_state = 'pending'",
                    (req.n,),
                )
            continue
        staff = _staff_or_none(conn, req.staff_id)
        if (staff is None or not staff.active) and req.status == "assigned":
            _unassign(conn, req, now=ts)  # removed before being told: route it again
            continue
        note = Notification(
            id=f"{req.n}:{req.staff_id}:{req.routed_at}",
            event=req.type,
            request=req.n,
            lookup_code=req.lookup_code,
            office=req.office,
            kiosk=req.kiosk,
            staff_id=req.staff_id,
            staff_name=None if staff is None else staff.name,
            staff_email=None if staff is None else staff.email,
            message=req.message,
            full_name=req.full_name,
            phone=req.phone,
            address=req.address,
            reason=req.reason,
            received_at=iso(req.received_at, settings.timezone),
            sent_at=iso(time.time(), settings.timezone),
        )
        try:
            notifier.send(note)
        except NotifyError as exc:
            failures += 1
            gave_up += _record_failure(conn, req, str(exc), now=ts, settings=settings)
            break  # the relay is likely down: one timeout per round, routing goes on
        except Exception as exc:  # a notifier bug must not stop the router either
            log.exception("notifier %s raised", notifier.describe())
            failures += 1
            gave_up += _record_failure(
                conn, req, f"internal error: {exc!r}", now=ts, settings=settings
            )
            break
        notified += 1
        with transaction(conn):
            conn.execute(
                "UPDATE support_requests SET notify_state = 'sent', notified_at = ?,"
                " notify_attempts = notify_attempts + 1, notify_error = NULL"
                " WHERE n = ? AND notify_state = 'pending'" + _SAME_ROUTING,
                (time.time(), req.n, req.routed_at),
            )
            audit.record(
                conn,
                ROUTER,
                "support.notify",
                _target(req),
                {"staff": req.staff_id, "via": notifier.describe()},
            )
    return notified, failures, gave_up


def _unassign(conn: sqlite3.Connection, req: Request, *, now: float) -> None:
    check_transition("unassign", req.status)
    back = "queued" if req.type == "home-visit" else "pending"
    with transaction(conn):
        cur = conn.execute(
            "UPDATE support_requests SET status = ?, staff_id = NULL, notify_state = 'none',"
            " notify_next_at = NULL WHERE n = ? AND notify_state = 'pending'" + _SAME_ROUTING,
            (back, req.n, req.routed_at),
        )
        if cur.rowcount:
            audit.record(
                conn,
                ROUTER,
                "support.unassign",
                _target(req),
                {"staff": req.staff_id, "reason": "removed from the roster", "status": back},
                now=now,
            )
    log.warning(
        "support request %d: %s left the roster before being told; %s again",
        req.n,
        req.staff_id,
        back,
    )


def backoff_s(attempts: int, settings: SupportSettings) -> float:
    """Wait after the ``attempts``-th failed attempt: base * 2^(attempts-1), capped."""
    return float(
        min(settings.notify_backoff_max_s, settings.notify_backoff_s * 2 ** max(0, attempts - 1))
    )


def _record_failure(
    conn: sqlite3.Connection, req: Request, error: str, *, now: float, settings: SupportSettings
) -> int:
    attempts = req.notify_attempts + 1
    final = attempts >= settings.notify_max_attempts
    with transaction(conn):
        cur = conn.execute(
            "UPDATE support_requests SET notify_attempts = ?, notify_error = ?,"
            " notify_state = ?, notify_next_at = ?"
            " WHERE n = ? AND notify_state = 'pending'" + _SAME_ROUTING,
            (
                attempts,
                error[:500],
                "failed" if final else "pending",
                None if final else now + backoff_s(attempts, settings),
                req.n,
                req.routed_at,
            ),
        )
        if cur.rowcount == 0:  # re-assigned or resolved meanwhile
            return 0
        if not final:
            log.warning(
                "support request %d: notifying %s failed (attempt %d of %d): %s",
                req.n,
                req.staff_id,
                attempts,
                settings.notify_max_attempts,
                error,
            )
            return 0
        log.error(
            "ALERT support request %d (%s at kiosk %s): %s was never notified after %d "
            "attempts: %s",
            req.n,
            req.lookup_code,
            req.kiosk,
            req.staff_id,
            attempts,
            error,
        )
        cursor = None
        if req.type == "help" and req.status == "assigned":
            # This request and those that were given to the same person because
            # they were already coming: the kiosk shows the hotline instead.
            siblings = [
                _row(r)
                for r in conn.execute(
                    _SELECT + " WHERE kiosk = ? AND staff_id = ? AND status = 'assigned'"
                    " AND notify_state = 'coalesced'",
                    (req.kiosk, req.staff_id),
                )
            ]
            conn.execute(
                "UPDATE support_requests SET notify_state = 'failed', notify_error = ?"
                " WHERE kiosk = ? AND staff_id = ? AND status = 'assigned'"
                " AND notify_state = 'coalesced'",
                (f"request {req.n}'s notification failed", req.kiosk, req.staff_id),
            )
            for one in [req, *siblings]:
                cursor = _reply(
                    conn,
                    one,
                    "no-one-on-duty",
                    _hotline_message(settings.hotline, failed=True),
                    hotline=settings.hotline,
                    channel="hotline" if settings.hotline else None,
                    now=now,
                    settings=settings,
                )
        audit.record(
            conn,
            ROUTER,
            "support.notify.failed",
            _target(req),
            {"attempts": attempts, "error": error[:500], "reply_cursor": cursor},
            now=now,
        )
        return 1


def _staff_or_none(conn: sqlite3.Connection, staff_id: str | None) -> roster.Staff | None:
    if staff_id is None:
        return None
    try:
        return roster.get_staff(conn, staff_id)
    except roster.NotFound:
        return None


def assign(
    conn: sqlite3.Connection,
    actor: str,
    n: int,
    staff_id: str,
    *,
    now: float | None = None,
    settings: SupportSettings | None = None,
) -> Request:
    """Give a request (a queued home visit, or any open one) to a staff member."""
    settings = settings or SupportSettings()
    ts = time.time() if now is None else now
    roster.check_staff_id(staff_id, "staff")
    project(conn)
    with transaction(conn):
        req = get_request(conn, n)
        check_transition("assign", req.status)
        staff = roster.get_staff(conn, staff_id)
        if not staff.active:
            raise SupportError("staff", f"{staff_id} was removed from the roster")
        _set_assigned(conn, actor, req, staff, now=ts, settings=settings, action="assign")
    return get_request(conn, n)


def acknowledge(
    conn: sqlite3.Connection,
    actor: str,
    n: int,
    *,
    staff_id: str | None = None,
    now: float | None = None,
) -> Request:
    """A staff member has seen the request and is on it (``staff_id``: who, if not the assignee)."""
    ts = time.time() if now is None else now
    project(conn)
    with transaction(conn):
        req = get_request(conn, n)
        check_transition("acknowledge", req.status)
        who = staff_id or req.staff_id
        if who is None:
            raise SupportError(
                "staff", "nobody was assigned this request: say who acknowledges it (staff id)"
            )
        roster.get_staff(conn, roster.check_staff_id(who, "staff"))
        conn.execute(
            "UPDATE support_requests SET status = 'acknowledged', staff_id = ?,"
            " acknowledged_at = ?, acknowledged_by = ?, notify_state = CASE notify_state"
            " WHEN 'pending' THEN 'cancelled' ELSE notify_state END WHERE n = ?",
            (who, ts, actor, n),
        )
        audit.record(conn, actor, "support.acknowledge", _target(req), {"staff": who}, now=ts)
    return get_request(conn, n)


def resolve(
    conn: sqlite3.Connection,
    actor: str,
    n: int,
    *,
    note: str | None = None,
    now: float | None = None,
    settings: SupportSettings | None = None,
) -> Request:
    """Close a request; the kiosk is told (``note``: staff-only, what was done)."""
    settings = settings or SupportSettings()
    ts = time.time() if now is None else now
    if note is not None and len(note) > RESOLUTION_CHARS:
        raise SupportError("note", f"at most {RESOLUTION_CHARS} characters, got {len(note)}")
    project(conn)
    with transaction(conn):
        req = get_request(conn, n)
        check_transition("resolve", req.status)
        conn.execute(
            "UPDATE support_requests SET status = 'resolved', resolved_at = ?, resolved_by = ?,"
            " resolution = ?, notify_state = CASE notify_state WHEN 'pending' THEN 'cancelled'"
            " ELSE notify_state END WHERE n = ?",
            (ts, actor, note, n),
        )
        staff = _staff_or_none(conn, req.staff_id)
        cursor = _reply(
            conn,
            req,
            "resolved",
            "Yêu cầu hỗ trợ của bạn đã được giải quyết. Cảm ơn bạn đã sử dụng dịch vụ.",
            staff=staff,
            now=ts,
            settings=settings,
        )
        audit.record(
            conn,
            actor,
            "support.resolve",
            _target(req),
            {"note": note, "reply_cursor": cursor},
            now=ts,
        )
    return get_request(conn, n)
