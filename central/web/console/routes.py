"""The console's pages: thin handlers over the library modules the HTTP API calls.

Every route is on :data:`router`, whose :func:`guard` runs first on every request: it
finds the route's policy (:data:`~central.web.console.policy.ROUTE_POLICIES`; none means
refused), loads the session, checks the Origin of every POST and the CSRF token of every
POST made in a session, and checks the role. Handlers then read or change data through
the same functions as ``central/web/routes_*.py`` with the actor ``console:<user>`` and
hide what lies outside the user's office scope (404, as for an unknown id).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from central import answers, dossiers, reports, staff_text, support
from central.backoffice_db import transaction
from central.fleet import alerts, jobs
from central.fleet.health import OverallState
from central.roster import NotFound as RosterNotFound
from central.roster import RosterError
from central.web.common import Conn, Databases
from central.web.console import auth, job_form, labels, users, views
from central.web.console.charts import bar_chart
from central.web.console.policy import ROUTE_POLICIES, Policy, Scope, allows, may_work, scope_of
from central.web.console.settings import ConsoleSettings
from sync.jobs import JobError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["labels"] = labels
templates.env.globals["label"] = labels.label
templates.env.globals["when"] = views.when

#: No script at all, styles from our own stylesheet only, nothing framed or framing.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

LOGIN_FAILED = (
    "Tên đăng nhập hoặc mật khẩu không đúng, hoặc tài khoản đang bị khoá tạm thời do nhập "
    "sai nhiều lần. Hãy thử lại hoặc liên hệ quản trị viên."
)


class ConsoleError(Exception):
    """Answered with an HTML page (not the API's JSON)."""

    def __init__(self, status: int, message: str, *, location: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.location = location


def not_found() -> ConsoleError:
    return ConsoleError(404, "Không tìm thấy trang hoặc dữ liệu này.")


def settings_of(request: Request) -> ConsoleSettings:
    settings: ConsoleSettings = request.app.state.console_settings
    return settings


def session_of(request: Request) -> auth.Session | None:
    session: auth.Session | None = getattr(request.state, "console_session", None)
    return session


def user_of(request: Request) -> users.User:
    session = session_of(request)
    if session is None:  # the guard let an anonymous request through to a signed-in page
        raise ConsoleError(401, "Hãy đăng nhập.", location="/console/login")
    return session.user


def actor_of(request: Request) -> str:
    return f"console:{user_of(request).name}"


async def guard(request: Request, conn: Conn) -> None:
    """Policy, session, Origin, CSRF and role, before any console handler runs."""
    route = request.scope.get("route")
    policy = ROUTE_POLICIES.get(getattr(route, "name", ""))
    if policy is None:
        raise ConsoleError(403, "Trang này chưa được khai báo quyền truy cập (policy).")
    settings = settings_of(request)
    # SQLite may wait for the collector (busy_timeout): never on the event loop.
    session = await run_in_threadpool(
        auth.load_session, conn, request.cookies.get(auth.COOKIE), settings
    )
    request.state.console_session = session
    posting = request.method not in ("GET", "HEAD")
    if posting and not auth.origin_ok(request):
        raise ConsoleError(403, "Yêu cầu bị từ chối: không đến từ trang của hệ thống (Origin).")
    if policy is Policy.PUBLIC:
        return
    if session is None:
        back = request.url.path if not posting else "/console/"
        raise ConsoleError(401, "Hãy đăng nhập.", location=f"/console/login?next={quote(back)}")
    if posting:
        form = await request.form()
        given = form.get("csrf")
        if not auth.tokens_match(session.csrf, given if isinstance(given, str) else None):
            raise ConsoleError(
                403, "Phiên làm việc không hợp lệ (mã CSRF). Hãy tải lại trang và thử lại."
            )
    if not allows(policy, session.user):
        raise ConsoleError(403, "Tài khoản của bạn không có quyền làm việc này.")


router = APIRouter(prefix="/console", dependencies=[Depends(guard)], include_in_schema=False)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = session_of(request)
    context.setdefault("error", None)
    context.setdefault("notice", None)
    user = None if session is None else session.user
    context.update(
        user=user,
        csrf="" if session is None else session.csrf,
        may_work=user is not None and may_work(user),
        scope=None if user is None else scope_of(user),
        path=request.url.path,
    )
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def redirect(location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def _office_filter(scope: Scope, office: str | None) -> str | None:
    """The office to list: a staff member's own, or the filter an admin/viewer chose."""
    return scope.office if scope.office is not None else (office or None)


Office = Annotated[str | None, Query(max_length=40)]


# -- static, login, logout ----------------------------------------------------------------


@router.get("/static/console.css", name="console_css")
def css() -> Response:
    body = (HERE / "static" / "console.css").read_bytes()
    return Response(
        body,
        media_type="text/css",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return "/console/"


@router.get("/login", name="console_login_form")
def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=200)] = None
) -> Response:
    token = auth.new_token()
    response = page(request, "login.html", next=_safe_next(next), login_token=token)
    auth.set_cookie(
        response,
        request,
        settings_of(request),
        auth.LOGIN_COOKIE,
        token,
        max_age=auth.LOGIN_TOKEN_S,
    )
    return response


@router.post("/login", name="console_login")
def login(
    request: Request,
    conn: Conn,
    name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=users.MAX_PASSWORD_CHARS)] = "",
    login_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=200)] = "/console/",
) -> Response:
    settings = settings_of(request)
    target = _safe_next(next)
    if not auth.tokens_match(request.cookies.get(auth.LOGIN_COOKIE), login_token):
        raise ConsoleError(
            403, "Biểu mẫu đăng nhập đã hết hạn. Hãy tải lại trang đăng nhập và thử lại."
        )
    client = auth.client_of(request)
    wait = users.client_wait_s(conn, client, settings)
    fresh = auth.new_token()
    if wait > 0:
        response = page(
            request,
            "login.html",
            429,
            next=target,
            login_token=fresh,
            error=f"Quá nhiều lần đăng nhập sai từ máy này. Hãy thử lại sau {wait:.0f} giây.",
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
    else:
        user = users.check_login(conn, name.strip(), password, client=client, settings=settings)
        if user is not None:
            with transaction(conn):
                # A new id at every login (no fixation), the old session and every expired
                # one gone.
                old = session_of(request)
                if old is not None:
                    auth.delete_session(conn, old)
                auth.purge_expired(conn, settings)
                session_id = auth.create_session(conn, user, settings)
            done = redirect(target)
            auth.set_cookie(done, request, settings, auth.COOKIE, session_id)
            auth.forget_cookie(done, request, settings, auth.LOGIN_COOKIE)
            return done
        response = page(
            request, "login.html", 401, next=target, login_token=fresh, error=LOGIN_FAILED
        )
    auth.set_cookie(
        response, request, settings, auth.LOGIN_COOKIE, fresh, max_age=auth.LOGIN_TOKEN_S
    )
    return response


@router.post("/logout", name="console_logout")
def logout(request: Request, conn: Conn) -> Response:
    session = session_of(request)
    if session is not None:
        with transaction(conn):
            auth.delete_session(conn, session)
    response = redirect("/console/login")
    auth.forget_cookie(response, request, settings_of(request), auth.COOKIE)
    return response


# -- the fleet ----------------------------------------------------------------------------


@router.get("/", name="console_fleet")
def fleet(
    request: Request,
    conn: Conn,
    office: Office = None,
    state: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    settings = settings_of(request)
    scope = scope_of(user_of(request))
    wanted_state = state if state in {s.value for s in OverallState} else None
    kiosks = views.fleet_rows(conn, scope, settings.clock(), settings.thresholds)
    offices_all = sorted({k.office or "" for k in kiosks})
    chosen = _office_filter(scope, office)
    shown = [
        k
        for k in kiosks
        if (chosen is None or k.office == chosen)
        and (wanted_state is None or k.state.value == wanted_state)
    ]
    return page(
        request,
        "fleet.html",
        offices=views.by_office(shown),
        office_names=offices_all,
        counts=views.state_counts(shown),
        states=list(OverallState),
        chosen_office=chosen,
        chosen_state=wanted_state,
        total=len(shown),
    )


def _kiosk_page(
    request: Request,
    conn: Conn,
    row: views.KioskView,
    status: int = 200,
    error: str | None = None,
    job_form_values: dict[str, str] | None = None,
) -> Response:
    settings = settings_of(request)
    kiosk = row.kiosk
    requests_ = [r for r in support.list_requests(conn, limit=50) if r.kiosk == kiosk][:10]
    return page(
        request,
        "kiosk.html",
        status,
        k=row,
        history=views.health_history_rows(conn, row, settings.thresholds),
        alerts=views.list_alerts(conn, scope_of(user_of(request)), kiosk=kiosk, limit=20),
        jobs=views.jobs_of_kiosk(conn, row),
        support_requests=requests_,
        job_kinds=job_form.OFFERED,
        job_form=job_form_values or {"kind": "", "deadline": job_form.DEFAULT_DEADLINE},
        error=error,
    )


def _kiosk_row(request: Request, conn: Conn, kiosk: str) -> views.KioskView:
    """The kiosk when the user may see it; else an HTML 404 (unknown, or another office)."""
    settings = settings_of(request)
    scope = scope_of(user_of(request))
    row = views.kiosk_row(conn, kiosk, scope, settings.clock(), settings.thresholds)
    if row is None:
        raise not_found()
    return row


# A page of one thing takes the rest of the path as its id (":path"), so an id with a
# slash in it (``%2F`` is decoded before routing) is looked up, not found and answered
# 404. With a plain parameter the path matched no route and Starlette's redirect_slashes
# answered 307 to the path with its trailing slashes cut off (another page, or the list).
# No id has a slash; a POST action under a page (``/kiosks/<id>/jobs``) still gets its
# own route (only a full match, path and method, is taken).
@router.get("/kiosks/{kiosk:path}", name="console_kiosk")
def kiosk_page(request: Request, conn: Conn, kiosk: str) -> Response:
    return _kiosk_page(request, conn, _kiosk_row(request, conn, kiosk))


@router.post("/kiosks/{kiosk}/jobs", name="console_kiosk_job_create")
def kiosk_job_create(
    request: Request,
    conn: Conn,
    kiosk: str,
    kind: Annotated[str, Form(max_length=32)] = "",
    deadline: Annotated[str, Form(max_length=20)] = job_form.DEFAULT_DEADLINE,
    older_than_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Queue one job on this kiosk (admin), audited as the console user."""
    row = _kiosk_row(request, conn, kiosk)
    values = {"kind": kind, "deadline": deadline, "older_than_days": older_than_days}
    if row.state is OverallState.REVOKED:
        return _kiosk_page(
            request,
            conn,
            row,
            409,
            "Ki-ốt này đã bị thu hồi: nó không còn nhận việc từ xa.",
            values,
        )
    try:
        wanted = job_form.read(kind, deadline, older_than_days)
        jobs.create(
            conn,
            wanted.kind,
            kiosks=[row.kiosk],
            args=wanted.args,
            deadline_s=wanted.deadline_s,
            actor=actor_of(request),
            now=settings_of(request).clock(),
        )
    except (job_form.JobFormError, JobError) as exc:
        return _kiosk_page(request, conn, row, 400, views.error_text(exc), values)
    return redirect(f"/console/kiosks/{quote(row.kiosk)}")


@router.post("/jobs/{job_id}/cancel", name="console_job_cancel")
def job_cancel(request: Request, conn: Conn, job_id: str) -> Response:
    """Cancel a job still queued (admin); any other state is answered with why not."""
    now = settings_of(request).clock()
    found = jobs.get_job(conn, job_id, now=now) if job_id.isalnum() and len(job_id) == 26 else None
    if found is None or not scope_of(user_of(request)).sees(found.office):
        raise not_found()
    row = _kiosk_row(request, conn, found.kiosk)
    try:
        jobs.cancel_job(conn, found.id, actor=actor_of(request), now=now)
    except JobError as exc:
        message = f"Không huỷ được việc này: chỉ huỷ được việc đang chờ. Chi tiết: {exc}"
        return _kiosk_page(request, conn, row, 409, message)
    return redirect(f"/console/kiosks/{quote(row.kiosk)}")


# -- alerts -------------------------------------------------------------------------------


@router.get("/alerts", name="console_alerts")
def alerts_page(
    request: Request,
    conn: Conn,
    office: Office = None,
    state: Annotated[str | None, Query(max_length=20)] = None,
    severity: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    scope = scope_of(user_of(request))
    state = state if state in views.ALERT_STATES else None
    severity = severity if severity in views.SEVERITIES else None
    listed = views.list_alerts(
        conn, scope, office=_office_filter(scope, office), state=state, severity=severity
    )
    return page(
        request,
        "alerts.html",
        alerts=listed,
        office_names=views.office_names(conn, scope),
        chosen_office=_office_filter(scope, office),
        chosen_state=state,
        chosen_severity=severity,
        alert_states=views.ALERT_STATES,
        severities=views.SEVERITIES,
    )


def _alert_page(
    request: Request, conn: Conn, alert_id: str, status: int = 200, error: str | None = None
) -> Response:
    found = views.get_alert(conn, scope_of(user_of(request)), alert_id)
    if found is None:
        raise not_found()
    events = views.alert_history(conn, found.id)
    return page(request, "alert.html", status, alert=found, events=events, error=error)


@router.get("/alerts/{alert_id:path}", name="console_alert")
def alert_page(request: Request, conn: Conn, alert_id: str) -> Response:
    return _alert_page(request, conn, alert_id)


@router.post("/alerts/{alert_id}/acknowledge", name="console_alert_acknowledge")
def alert_acknowledge(
    request: Request,
    conn: Conn,
    alert_id: str,
    comment: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    found = views.get_alert(conn, scope_of(user_of(request)), alert_id)
    if found is None:
        raise not_found()
    try:
        alerts.acknowledge(
            conn,
            found.id,
            actor=actor_of(request),
            comment=comment,
            now=settings_of(request).clock(),
        )
    except alerts.AlertError as exc:
        status = 400 if exc.field == "comment" else 409
        return _alert_page(request, conn, alert_id, status, views.error_text(exc))
    return redirect(f"/console/alerts/{found.id}")


# -- charts -------------------------------------------------------------------------------


@router.get("/charts", name="console_charts")
def charts_page(request: Request, conn: Conn, office: Office = None) -> Response:
    scope = scope_of(user_of(request))
    chosen = _office_filter(scope, office)
    timezone = request.app.state.settings.support.timezone
    counts = reports.dossier_counts(conn, office=chosen)
    per_day: dict[str, int] = {}
    per_office_day: dict[tuple[str, str], int] = {}
    for r in counts:
        per_day[r["day"]] = per_day.get(r["day"], 0) + r["count"]
        key = (r["office"], r["day"])
        per_office_day[key] = per_office_day.get(key, 0) + r["count"]
    days = sorted(per_day)[-14:]
    rating_rows = reports.ratings(conn, office=chosen)
    levels = dict.fromkeys(labels.RATING_LEVELS, 0)
    for r in rating_rows:
        for level, n in r["counts"].items():
            levels[level] = levels.get(level, 0) + n
    support_rows = support.response_report(conn, office=chosen, timezone=timezone)
    ack = [(r["day"], float(r["acknowledged_s"]["p50"] or 0)) for r in support_rows][-14:]
    return page(
        request,
        "charts.html",
        dossier_chart=bar_chart("Hồ sơ mỗi ngày", "hồ sơ", [(d, per_day[d]) for d in days]),
        dossier_table=sorted(per_office_day.items(), key=lambda kv: (kv[0][1], kv[0][0])),
        rating_chart=bar_chart(
            "Mức độ hài lòng",
            "lượt",
            [(labels.RATING_LEVELS[k], v) for k, v in levels.items()],
        ),
        rating_rows=rating_rows,
        support_chart=bar_chart("Thời gian tiếp nhận hỗ trợ (trung vị)", "giây", ack),
        support_rows=support_rows,
        office_names=views.office_names(conn, scope),
        chosen_office=chosen,
    )


# -- support requests ---------------------------------------------------------------------


def _number(text: str) -> int:
    """A row number from the URL; anything else is simply not found (an HTML 404)."""
    if not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise not_found()
    return int(text)


def _support_request(conn: Conn, scope: Scope, n: int) -> support.Request:
    try:
        req = support.get_request(conn, n)
    except support.RequestNotFound:
        raise not_found() from None
    if not scope.sees(req.office):
        raise not_found()
    return req


@router.get("/support", name="console_support")
def support_queue(
    request: Request,
    conn: Conn,
    office: Office = None,
    all: bool = False,
) -> Response:
    scope = scope_of(user_of(request))
    chosen = _office_filter(scope, office)
    rows = support.list_requests(conn, office=chosen, open_only=not all, limit=200)
    return page(
        request,
        "support.html",
        requests=rows,
        show_all=all,
        chosen_office=chosen,
        office_names=views.office_names(conn, scope),
    )


@router.get("/support/{n:path}", name="console_support_request")
def support_request(request: Request, conn: Conn, n: str) -> Response:
    scope = scope_of(user_of(request))
    return page(request, "support_request.html", req=_support_request(conn, scope, _number(n)))


def _support_action(request: Request, conn: Conn, num: str, action: str, text: str) -> Response:
    n = _number(num)
    scope = scope_of(user_of(request))
    req = _support_request(conn, scope, n)
    settings = request.app.state.settings
    try:
        if action == "take":
            # "Take": give it to the named staff member (when it is not theirs yet), and
            # acknowledge it; the same two steps as the API's assign + acknowledge.
            staff = text.strip() or None
            if staff is not None and (req.staff_id != staff or req.status in ("pending", "queued")):
                support.assign(conn, actor_of(request), n, staff, settings=settings.support)
            support.acknowledge(conn, actor_of(request), n, staff_id=staff)
        else:
            support.resolve(
                conn, actor_of(request), n, note=text.strip() or None, settings=settings.support
            )
    except (support.SupportError, RosterError, RosterNotFound) as exc:
        status = 409 if isinstance(exc, support.IllegalTransition) else 400
        return page(request, "support_request.html", status, req=req, error=views.error_text(exc))
    return redirect(f"/console/support/{n}")


@router.post("/support/{n}/take", name="console_support_take")
def support_take(
    request: Request, conn: Conn, n: str, staff: Annotated[str, Form(max_length=40)] = ""
) -> Response:
    return _support_action(request, conn, n, "take", staff)


@router.post("/support/{n}/resolve", name="console_support_resolve")
def support_resolve(
    request: Request,
    conn: Conn,
    n: str,
    note: Annotated[str, Form(max_length=support.RESOLUTION_CHARS)] = "",
) -> Response:
    return _support_action(request, conn, n, "resolve", note)


# -- questions and petitions --------------------------------------------------------------


def _inquiry(conn: Conn, scope: Scope, code: str, office: str | None) -> dict[str, Any]:
    try:
        return answers.get_inquiry(conn, code, office=_office_filter(scope, office))
    except staff_text.NotFound:
        raise not_found() from None
    except staff_text.BackofficeError as exc:
        raise ConsoleError(400, views.error_text(exc)) from None


@router.get("/inquiries", name="console_inquiries")
def inquiries_page(
    request: Request,
    conn: Conn,
    office: Office = None,
    all: bool = False,
) -> Response:
    scope = scope_of(user_of(request))
    rows = answers.list_inquiries(
        conn, office=_office_filter(scope, office), unanswered=not all, limit=200
    )
    return page(
        request,
        "inquiries.html",
        inquiries=rows,
        show_all=all,
        office_names=views.office_names(conn, scope),
        chosen_office=_office_filter(scope, office),
    )


@router.get("/inquiries/{code:path}", name="console_inquiry")
def inquiry_page(request: Request, conn: Conn, code: str, office: Office = None) -> Response:
    scope = scope_of(user_of(request))
    return page(request, "inquiry.html", item=_inquiry(conn, scope, code, office))


@router.post("/inquiries/{code}/answer", name="console_inquiry_answer")
def inquiry_answer(
    request: Request,
    conn: Conn,
    code: str,
    answer: Annotated[str, Form(max_length=4000)] = "",
    answered_by: Annotated[str, Form(max_length=200)] = "",
    office: Annotated[str | None, Form(max_length=40)] = None,
) -> Response:
    scope = scope_of(user_of(request))
    item = _inquiry(conn, scope, code, office)
    try:
        answers.answer(
            conn,
            code,
            answer,
            actor=actor_of(request),
            answered_by=answered_by.strip() or None,
            office=item["office"],
        )
    except staff_text.BackofficeError as exc:
        return page(request, "inquiry.html", 400, item=item, error=views.error_text(exc))
    suffix = f"?office={quote(item['office'])}" if item.get("office") else ""
    return redirect(f"/console/inquiries/{quote(code)}{suffix}")


# -- dossiers -----------------------------------------------------------------------------


def _dossier(conn: Conn, scope: Scope, code: str) -> dict[str, Any]:
    try:
        found = dossiers.get_dossier(conn, code)
    except staff_text.BackofficeError:  # NotFound, or not a dossier code at all
        raise not_found() from None
    if not scope.sees(found.get("office")):
        raise not_found()
    return found


@router.get("/dossiers", name="console_dossiers")
def dossiers_page(
    request: Request,
    conn: Conn,
    office: Office = None,
    code: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    scope = scope_of(user_of(request))
    error = None
    try:
        rows = dossiers.search_dossiers(
            conn,
            code=code or None,
            office=_office_filter(scope, office),
            state=status or None,
            limit=200,
        )
    except staff_text.BackofficeError as exc:
        rows, error = [], views.error_text(exc)
    return page(
        request,
        "dossiers.html",
        400 if error else 200,
        dossiers=rows,
        error=error,
        code=code or "",
        chosen_status=status or "",
        office_names=views.office_names(conn, scope),
        chosen_office=_office_filter(scope, office),
        states=views.dossier_states(),
    )


@router.get("/dossiers/{code:path}", name="console_dossier")
def dossier_page(request: Request, conn: Conn, code: str) -> Response:
    scope = scope_of(user_of(request))
    return page(request, "dossier.html", d=_dossier(conn, scope, code))


@router.post("/dossiers/{code}/status", name="console_dossier_status")
def dossier_status(
    request: Request,
    conn: Conn,
    code: str,
    state: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=dossiers.NOTE_CHARS)] = "",
) -> Response:
    scope = scope_of(user_of(request))
    found = _dossier(conn, scope, code)
    try:
        dossiers.set_status(
            conn,
            code,
            state,
            actor=actor_of(request),
            note=note.strip() or None,
            portal_codes=request.app.state.settings.portal_codes,
        )
    except staff_text.BackofficeError as exc:
        status = 409 if isinstance(exc, staff_text.Conflict) else 400
        return page(request, "dossier.html", status, d=found, error=views.error_text(exc))
    return redirect(f"/console/dossiers/{quote(code)}")


# -- accounts (admin) ---------------------------------------------------------------------


@router.get("/users", name="console_users")
def users_page(request: Request, conn: Conn) -> Response:
    now = settings_of(request).clock()
    rows = [u.as_dict(now) for u in users.list_users(conn)]
    return page(request, "users.html", accounts=rows)


@router.post("/users/{name}/unlock", name="console_user_unlock")
def user_unlock(request: Request, conn: Conn, name: str) -> Response:
    try:
        users.unlock(conn, actor_of(request), name)
    except users.UnknownUser:
        raise not_found() from None
    return redirect("/console/users")


# -- mounting -----------------------------------------------------------------------------


def install(app: FastAPI, settings: ConsoleSettings | None = None) -> None:
    """The console's routes, its error pages and its tables, on ``app``."""
    app.state.console_settings = settings or ConsoleSettings()
    databases: Databases = app.state.databases
    with databases.checkout() as conn:
        users.ensure_schema(conn)

    @app.exception_handler(ConsoleError)
    async def _console_error(request: Request, exc: ConsoleError) -> Response:
        if exc.location is not None and request.method in ("GET", "HEAD"):
            return redirect(exc.location)
        if exc.location is not None:
            return redirect(exc.location)
        return page(request, "error.html", exc.status, message=exc.message)

    previous = app.exception_handlers.get(RequestValidationError)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        """A console form or address that fails its bounds: an HTML page naming the field
        (the API's own requests keep the JSON answer)."""
        if not request.url.path.startswith("/console"):
            if previous is None:
                raise exc
            answer = previous(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        errors = exc.errors()
        field = ".".join(str(p) for p in errors[0].get("loc", ())[1:]) if errors else "?"
        message = str(errors[0].get("msg", "")) if errors else ""
        return page(
            request,
            "error.html",
            400,
            message=f"Dữ liệu không hợp lệ ở trường «{field}»: {message}. Hãy sửa và gửi lại.",
        )

    app.include_router(router)
