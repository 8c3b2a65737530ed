"""The FastAPI application: error handling, body limits, the route modules.

Request bodies are buffered by :class:`BodyLimit` (a plain ASGI middleware)
up to ``max_body_bytes``: a larger ``Content-Length`` is refused before a
byte is read, and a chunked body is cut off as soon as it passes the limit,
both with 413. The OpenAPI document is served at ``/openapi.json`` (no
browser UI: it would load scripts from a CDN).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central import backoffice_db, staff_text
from central.api_tokens import TokenError
from central.catalogue_publish import CatalogueRefused
from central.config import CentralConfig
from central.payments import PaymentError, PaymentNotice, Recorder
from central.roster import NotFound, RosterError
from central.support import IllegalTransition, RequestNotFound, SupportError
from central.web import (
    console,
    routes_backoffice,
    routes_enrol,
    routes_metrics,
    routes_releases,
    routes_support,
)
from central.web.common import ApiError, ApiSettings, Databases, error_response

if TYPE_CHECKING:
    from central.fleet.enrolment import Enrolment

API_VERSION = "1"
log = logging.getLogger("aps.central.api")


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whatever their framing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "too-large",
            "body",
            f"request body over {self.max_bytes} bytes ([api] max_body_kb); send less",
        )
        await response(scope, receive, send)


_FIELD_RE = re.compile(r"\A([a-z_][a-z0-9_.]{0,40}):")


def _field_of(message: str) -> str | None:
    """The field a back-office message starts with (``limit: ...``), if it does."""
    match = _FIELD_RE.match(message)
    return None if match is None else match.group(1)


def _first_error(exc: RequestValidationError) -> tuple[str, str]:
    errors = exc.errors()
    if not errors:
        return "body", "malformed request"
    err = errors[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    return loc or "body", str(err.get("msg", "invalid"))


def settings_from_config(cfg: CentralConfig, recorder: Recorder | None = None) -> ApiSettings:
    """The API's settings from central's configuration."""
    secret = cfg.api.payment_secret
    return ApiSettings(
        database=backoffice_db.target_of(cfg.central),
        support=cfg.support_settings(),
        payment_secret=None if secret is None else secret.get_secret_value().encode(),
        payment_recorder=recorder if recorder is not None else default_recorder(),
        max_body_bytes=cfg.api.max_body_kb * 1024,
        page_max=cfg.api.page_max,
        portal_codes=cfg.dossiers.portal_codes(),
        duplicate_window_s=cfg.dossiers.duplicate_window_s,
        metrics_token=None
        if cfg.api.metrics_token is None
        else cfg.api.metrics_token.get_secret_value().encode(),
        console=cfg.console.settings(cfg.fleet.thresholds()),
        thresholds=cfg.fleet.thresholds(),
        releases_dir=cfg.updates.releases_dir,
    )


def default_recorder() -> Recorder:
    """A payment callback records the payment with :func:`central.dossiers.record_payment`."""
    from central import dossiers

    def record(conn: sqlite3.Connection, actor: str, notice: PaymentNotice) -> dict[str, Any]:
        out = dossiers.record_payment(
            conn,
            notice.dossier_code,
            amount_vnd=notice.amount_vnd,
            reference=notice.reference,
            paid_at=notice.paid_at,
            actor=actor,
            source="bank",
        )
        return {
            "code": out["code"],
            "paid": out["paid"],
            "paid_amount_vnd": out.get("paid_amount"),
            "held": out.get("held"),
            "replayed": out.get("replayed"),
        }

    return record


def create_app(settings: ApiSettings, *, enrolment: Enrolment | None = None) -> FastAPI:
    """The API; with ``enrolment``, also the kiosks' ``/v1/enrol`` routes (docs/enrolment.md)."""
    databases = Databases(settings.database)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        databases.close()

    app = FastAPI(
        title="APS central API",
        version=API_VERSION,
        description="Staff and back-office API of APS central (docs/api.md). Every request "
        "but the payment callback needs `Authorization: Bearer <token>`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.databases = databases
    app.state.enrolment = enrolment

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.field, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = _first_error(exc)
        return error_response(422, "invalid", field, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http", None, str(exc.detail))

    @app.exception_handler(NotFound)
    @app.exception_handler(RequestNotFound)
    async def _not_found(request: Request, exc: Any) -> JSONResponse:
        return error_response(404, "not-found", exc.field, exc.message)

    @app.exception_handler(IllegalTransition)
    async def _conflict(request: Request, exc: IllegalTransition) -> JSONResponse:
        return error_response(409, "illegal-transition", exc.field, exc.message)

    @app.exception_handler(RosterError)
    @app.exception_handler(SupportError)
    @app.exception_handler(TokenError)
    async def _bad(request: Request, exc: Any) -> JSONResponse:
        return error_response(400, "invalid", exc.field, exc.message)

    @app.exception_handler(PaymentError)
    async def _payment(request: Request, exc: PaymentError) -> JSONResponse:
        status = {"signature": 401, "conflict": 409, "unknown-dossier": 404}.get(exc.code, 400)
        return error_response(status, exc.code, exc.field, exc.message)

    @app.exception_handler(staff_text.NotFound)
    async def _bo_not_found(request: Request, exc: staff_text.NotFound) -> JSONResponse:
        return error_response(404, "not-found", _field_of(str(exc)), str(exc))

    @app.exception_handler(staff_text.Conflict)
    async def _bo_conflict(request: Request, exc: staff_text.Conflict) -> JSONResponse:
        return error_response(409, "conflict", _field_of(str(exc)), str(exc))

    @app.exception_handler(staff_text.BackofficeError)
    async def _bo_bad(request: Request, exc: staff_text.BackofficeError) -> JSONResponse:
        return error_response(400, "invalid", _field_of(str(exc)), str(exc))

    @app.exception_handler(CatalogueRefused)
    async def _catalogue(request: Request, exc: CatalogueRefused) -> JSONResponse:
        return error_response(400, "refused", None, str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(
            500, "internal", None, "central could not do this; the error is in central's log"
        )

    app.include_router(routes_support.router)
    app.include_router(routes_backoffice.router)
    app.include_router(routes_enrol.router)
    app.include_router(routes_metrics.router)  # GET /metrics (docs/alerts.md)
    console.install(app, settings.console)
    app.include_router(routes_releases.router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_config(cfg: CentralConfig) -> tuple[FastAPI, tuple[Path, Path] | None]:
    """The API from central.toml, and the HTTPS (certificate, key) it is served with.

    With ``[enrolment] enabled``, the enrolment routes are served and the API goes HTTPS
    with a certificate from the fleet CA (made on first use).
    """
    if not cfg.enrolment.enabled:
        return create_app(settings_from_config(cfg)), None
    from central.fleet.enrolment import from_config

    enrolment, tls = from_config(cfg)
    return create_app(settings_from_config(cfg), enrolment=enrolment), tls
