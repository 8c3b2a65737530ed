"""Routes for the back office: dossiers, inquiries and answers, FAQ and news, reports,
the catalogue.

Thin, like :mod:`central.web.routes_support`: shape checks here (bounded
pydantic models), the rules in the library (:mod:`central.dossiers`,
:mod:`central.answers`, :mod:`central.content`, :mod:`central.reports`,
:mod:`central.catalogue_publish`), which audits each change with the token's
name as the actor and appends the downlink item in the same transaction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from central import answers, catalogue_publish, content, dossiers, reports
from central.web.common import Actor, Conn, Settings, page_limit

router = APIRouter(prefix="/api/v1")

Office = Annotated[str | None, Query(max_length=40, description="agency identifier")]
Day = Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StatusIn(Strict):
    state: Annotated[str, Field(max_length=32, examples=["received"])]
    note: Annotated[str | None, Field(max_length=dossiers.NOTE_CHARS)] = None
    portal_code: Annotated[str | int | None, Field(description="the portal's status code")] = None


class PaymentIn(Strict):
    amount_vnd: int
    reference: Annotated[str, Field(max_length=dossiers.REFERENCE_CHARS)]
    paid_at: Annotated[str, Field(max_length=40, examples=["2026-12-01T10:00:00+07:00"])]
    source: Annotated[str, Field(max_length=32)] = "api"


class AnswerIn(Strict):
    answer: Annotated[str, Field(min_length=1, max_length=20_000)]
    answered_by: Annotated[str | None, Field(max_length=200)] = None
    office: Annotated[str | None, Field(max_length=40)] = None


class ContentIn(Strict):
    items: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=500)]


# -- dossiers ------------------------------------------------------------------------


@router.get("/dossiers", tags=["dossiers"])
def search_dossiers(
    conn: Conn,
    who: Actor,
    settings: Settings,
    code: Annotated[str | None, Query(max_length=64, description="whole code or its start")] = (
        None
    ),
    office: Office = None,
    day: Day = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    limit: int | None = None,
) -> dict[str, Any]:
    found = dossiers.search_dossiers(
        conn,
        code=code,
        office=office,
        day=day,
        state=status,
        limit=page_limit(limit, settings),
    )
    return {"dossiers": found}


@router.get("/dossiers/duplicates", tags=["dossiers"])
def duplicate_dossiers(
    conn: Conn,
    who: Actor,
    settings: Settings,
    office: Office = None,
    day: Day = None,
    limit: int | None = None,
) -> dict[str, Any]:
    return dossiers.duplicates(
        conn,
        window_s=settings.duplicate_window_s,
        office=office,
        day=day,
        limit=page_limit(limit, settings),
    )


@router.get("/dossiers/{code}", tags=["dossiers"])
def get_dossier(code: str, conn: Conn, who: Actor) -> dict[str, Any]:
    return dossiers.get_dossier(conn, code)


@router.post("/dossiers/{code}/status", tags=["dossiers"])
def set_status(
    code: str, body: StatusIn, conn: Conn, who: Actor, settings: Settings
) -> dict[str, Any]:
    return dossiers.set_status(
        conn,
        code,
        body.state,
        actor=who,
        note=body.note,
        portal_code=body.portal_code,
        portal_codes=settings.portal_codes,
    )


@router.post("/dossiers/{code}/payments", tags=["dossiers"])
def record_payment(code: str, body: PaymentIn, conn: Conn, who: Actor) -> dict[str, Any]:
    return dossiers.record_payment(
        conn,
        code,
        amount_vnd=body.amount_vnd,
        reference=body.reference,
        paid_at=body.paid_at,
        actor=who,
        source=body.source,
    )


# -- inquiries (questions, feedback, petitions) --------------------------------------


@router.get("/inquiries", tags=["inquiries"])
def list_inquiries(
    conn: Conn,
    who: Actor,
    settings: Settings,
    office: Office = None,
    category: Annotated[str | None, Query(max_length=16)] = None,
    unanswered: bool = False,
    lookup_code: Annotated[str | None, Query(max_length=14)] = None,
    limit: int | None = None,
) -> dict[str, Any]:
    found = answers.list_inquiries(
        conn,
        office=office,
        category=category,
        unanswered=unanswered,
        lookup_code=lookup_code,
        limit=page_limit(limit, settings),
    )
    return {"inquiries": found}


@router.get("/inquiries/{lookup_code}", tags=["inquiries"])
def get_inquiry(lookup_code: str, conn: Conn, who: Actor, office: Office = None) -> dict[str, Any]:
    return answers.get_inquiry(conn, lookup_code, office=office)


@router.post("/inquiries/{lookup_code}/answer", tags=["inquiries"])
def answer_inquiry(lookup_code: str, body: AnswerIn, conn: Conn, who: Actor) -> dict[str, Any]:
    return answers.answer(
        conn, lookup_code, body.answer, actor=who, answered_by=body.answered_by, office=body.office
    )


# -- FAQ and news --------------------------------------------------------------------


@router.get("/faq", tags=["content"])
def list_faq(conn: Conn, who: Actor, include_withdrawn: bool = False) -> dict[str, Any]:
    return {"faq": content.list_content(conn, "faq", include_withdrawn=include_withdrawn)}


@router.post("/faq", tags=["content"])
def publish_faq(body: ContentIn, conn: Conn, who: Actor) -> dict[str, Any]:
    return {"published": content.publish_faq(conn, body.items, who)}


@router.delete("/faq/{item_id}", tags=["content"])
def withdraw_faq(item_id: str, conn: Conn, who: Actor) -> dict[str, Any]:
    return content.withdraw_faq(conn, item_id, who)


@router.get("/news", tags=["content"])
def list_news(conn: Conn, who: Actor, include_withdrawn: bool = False) -> dict[str, Any]:
    return {"news": content.list_content(conn, "news", include_withdrawn=include_withdrawn)}


@router.post("/news", tags=["content"])
def publish_news(body: ContentIn, conn: Conn, who: Actor) -> dict[str, Any]:
    return {"published": content.publish_news(conn, body.items, who)}


@router.delete("/news/{item_id}", tags=["content"])
def withdraw_news(item_id: str, conn: Conn, who: Actor) -> dict[str, Any]:
    return content.withdraw_news(conn, item_id, who)


# -- reports -------------------------------------------------------------------------


@router.get("/reports/ratings", tags=["reports"])
def ratings_report(
    conn: Conn,
    who: Actor,
    office: Office = None,
    day: Day = None,
    since: Day = None,
    until: Day = None,
) -> dict[str, Any]:
    rows = reports.ratings(conn, day=day, office=office, since=since, until=until)
    return {"ratings": rows}


@router.get("/reports/dossiers", tags=["reports"])
def dossiers_report(
    conn: Conn,
    who: Actor,
    office: Office = None,
    day: Day = None,
    since: Day = None,
    until: Day = None,
) -> dict[str, Any]:
    rows = reports.dossier_counts(conn, day=day, office=office, since=since, until=until)
    return {"dossiers": rows}


# -- the catalogue -------------------------------------------------------------------


@router.get("/catalogue", tags=["catalogue"])
def current_catalogue(conn: Conn, who: Actor) -> dict[str, Any]:
    doc = catalogue_publish.current_catalogue(conn)
    return {"catalogue": doc}


@router.post("/catalogue", tags=["catalogue"])
def publish_catalogue(doc: dict[str, Any], conn: Conn, who: Actor) -> dict[str, Any]:
    """Publish a whole catalogue document (docs/catalogue.md); its version must be newer."""
    return {"version": catalogue_publish.publish_catalogue(conn, doc, who)}
