"""Routes for the support team: roster, support requests, payment callbacks.

Thin: each endpoint validates its input shape (pydantic models, bounded),
calls one library function with the token's name as the actor, and returns
the result as JSON. The library writes the audit row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from central import audit, payments, roster, support
from central.notify import SIGNATURE_HEADER
from central.web.common import Actor, ApiError, Conn, Settings, page_limit

router = APIRouter(prefix="/api/v1")

RowId = Annotated[int, Path(ge=1, le=2**62, description="the number listed")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaffIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=roster.NAME_CHARS)]
    phone: Annotated[str, Field(max_length=20)]
    channels: Annotated[list[Literal["desk", "hotline", "zalo"]], Field(min_length=1, max_length=3)]
    email: Annotated[str | None, Field(max_length=254)] = None


class ShiftIn(Strict):
    staff: Annotated[str, Field(max_length=40)]
    office: Annotated[str, Field(max_length=40)]
    start: Annotated[str, Field(max_length=5, examples=["07:30"])]
    end: Annotated[str, Field(max_length=5, examples=["11:30"])]
    weekday: Annotated[int | None, Field(ge=0, le=6, description="0 Monday .. 6 Sunday")] = None
    day: Annotated[str | None, Field(max_length=10, examples=["2026-12-24"])] = None


class AcknowledgeIn(Strict):
    staff: Annotated[str | None, Field(max_length=40)] = None


class ResolveIn(Strict):
    note: Annotated[str | None, Field(max_length=support.RESOLUTION_CHARS)] = None


class AssignIn(Strict):
    staff: Annotated[str, Field(max_length=40)]


# -- roster --------------------------------------------------------------------------


@router.get("/roster/staff", tags=["roster"])
def list_staff(conn: Conn, who: Actor, include_removed: bool = False) -> dict[str, Any]:
    staff = roster.list_staff(conn, include_inactive=include_removed)
    return {"staff": [s.as_dict() for s in staff]}


@router.get("/roster/staff/{staff_id}", tags=["roster"])
def get_staff(staff_id: str, conn: Conn, who: Actor) -> dict[str, Any]:
    return roster.get_staff(conn, staff_id).as_dict()


@router.put("/roster/staff/{staff_id}", tags=["roster"])
def put_staff(staff_id: str, body: StaffIn, conn: Conn, who: Actor) -> dict[str, Any]:
    staff = roster.add_staff(
        conn,
        who,
        staff_id=staff_id,
        name=body.name,
        phone=body.phone,
        channels=list(body.channels),
        email=body.email,
    )
    return staff.as_dict()


@router.delete("/roster/staff/{staff_id}", tags=["roster"])
def delete_staff(staff_id: str, conn: Conn, who: Actor) -> dict[str, Any]:
    roster.remove_staff(conn, who, staff_id)
    return {"removed": staff_id}


@router.get("/roster/shifts", tags=["roster"])
def list_shifts(
    conn: Conn, who: Actor, office: str | None = None, staff: str | None = None
) -> dict[str, Any]:
    shifts = roster.list_shifts(conn, office=office, staff_id=staff)
    return {"shifts": [s.as_dict() for s in shifts]}


@router.post("/roster/shifts", tags=["roster"], status_code=201)
def add_shift(body: ShiftIn, conn: Conn, who: Actor) -> dict[str, Any]:
    shift = roster.add_shift(
        conn,
        who,
        staff_id=body.staff,
        office=body.office,
        start=body.start,
        end=body.end,
        weekday=body.weekday,
        day=body.day,
    )
    return shift.as_dict()


@router.delete("/roster/shifts/{n}", tags=["roster"])
def delete_shift(n: RowId, conn: Conn, who: Actor) -> dict[str, Any]:
    roster.remove_shift(conn, who, n)
    return {"removed": n}


@router.get("/roster/on-duty", tags=["roster"])
def on_duty(
    conn: Conn,
    who: Actor,
    settings: Settings,
    office: Annotated[str, Query(max_length=40)],
    at: Annotated[str | None, Query(max_length=40, description="ISO 8601; default now")] = None,
) -> dict[str, Any]:
    roster.check_office(office)
    when = datetime.now(UTC)
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise ApiError(400, "invalid", "at", "expected ISO 8601 with an offset") from None
        if when.tzinfo is None:
            raise ApiError(400, "invalid", "at", "expected ISO 8601 with an offset")
    try:
        staff = roster.on_duty(conn, office, when, timezone=settings.support.timezone)
    except OverflowError:
        raise ApiError(400, "range", "at", "outside the years central can handle") from None
    return {"office": office, "at": when.isoformat(), "staff": [s.as_dict() for s in staff]}


# -- support requests ----------------------------------------------------------------


@router.get("/support", tags=["support"])
def list_support(
    conn: Conn,
    who: Actor,
    settings: Settings,
    status: Annotated[
        Literal["pending", "queued", "assigned", "no-one-on-duty", "acknowledged", "resolved"]
        | None,
        Query(),
    ] = None,
    type: Annotated[Literal["help", "home-visit"] | None, Query()] = None,
    office: Annotated[str | None, Query(max_length=40)] = None,
    staff: Annotated[str | None, Query(max_length=40)] = None,
    lookup_code: Annotated[str | None, Query(max_length=14)] = None,
    open: bool = False,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: int | None = None,
) -> dict[str, Any]:
    limit = page_limit(limit, settings)
    rows = support.list_requests(
        conn,
        status=status,
        type=type,
        office=office,
        staff_id=staff,
        lookup_code=lookup_code,
        open_only=open,
        before=before,
        limit=limit,
    )
    return {
        "requests": [r.as_dict() for r in rows],
        "next_before": rows[-1].n if len(rows) == limit else None,
    }


@router.get("/support/{n}", tags=["support"])
def get_support(n: RowId, conn: Conn, who: Actor) -> dict[str, Any]:
    support.project(conn)
    return support.get_request(conn, n).as_dict()


@router.post("/support/{n}/acknowledge", tags=["support"])
def acknowledge_support(
    n: RowId, conn: Conn, who: Actor, body: AcknowledgeIn | None = None
) -> dict[str, Any]:
    staff = None if body is None else body.staff
    return support.acknowledge(conn, who, n, staff_id=staff).as_dict()


@router.post("/support/{n}/resolve", tags=["support"])
def resolve_support(
    n: RowId, conn: Conn, who: Actor, settings: Settings, body: ResolveIn | None = None
) -> dict[str, Any]:
    note = None if body is None else body.note
    return support.resolve(conn, who, n, note=note, settings=settings.support).as_dict()


@router.post("/support/{n}/assign", tags=["support"])
def assign_support(
    n: RowId, body: AssignIn, conn: Conn, who: Actor, settings: Settings
) -> dict[str, Any]:
    return support.assign(conn, who, n, body.staff, settings=settings.support).as_dict()


@router.get("/reports/support", tags=["reports", "support"])
def support_report(
    conn: Conn,
    who: Actor,
    settings: Settings,
    office: Annotated[str | None, Query(max_length=40)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
) -> dict[str, Any]:
    """Support requests per office and day, with response times (p50, p90 seconds)."""
    rows = support.response_report(
        conn, office=office, since=since, until=until, timezone=settings.support.timezone
    )
    return {"support": rows}


@router.get("/audit", tags=["audit"])
def audit_entries(
    conn: Conn,
    who: Actor,
    settings: Settings,
    target: Annotated[str | None, Query(max_length=200)] = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Who changed what, newest first (``target``: a dossier code, ``support:<n>:...``)."""
    return {"entries": audit.entries(conn, target=target, limit=page_limit(limit, settings))}


# -- payments ------------------------------------------------------------------------


@router.post("/payments/callback", tags=["payments"])
async def payment_callback(request: Request, settings: Settings) -> dict[str, Any]:
    """A bank's or the payment portal's notice; authenticated by X-APS-Signature."""
    raw = await request.body()
    recorder = settings.payment_recorder
    if recorder is None:
        raise ApiError(
            503, "unavailable", None, "payments cannot be recorded by this central (no recorder)"
        )
    databases = request.app.state.databases
    signature = request.headers.get(SIGNATURE_HEADER)

    def apply() -> tuple[dict[str, Any], bool]:
        with databases.checkout() as conn:
            return payments.receive_callback(
                conn, raw, signature, settings.payment_secret or b"", recorder
            )

    result, duplicate = await run_in_threadpool(apply)
    return {"duplicate": duplicate, "result": result}
