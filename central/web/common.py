"""What every route module shares: settings, the database per thread, errors, auth.

- **Database**: a pool of back-office connections, one held by each request
  for its whole life (:class:`Databases`); SQLite's WAL and busy timeout let
  them and the collector write in turn.
- **Errors** are JSON ``{"error": {"code", "field", "message"}}`` with the
  HTTP status that says whose fault it is: 400 bad field, 401 no or bad
  credentials, 404 unknown thing, 409 not allowed in the current state or a
  replay conflict, 413 body too large, 422 malformed request.
- **Authentication**: ``Authorization: Bearer <token>``; the token's name is
  the actor written to the audit trail by every change.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from central import api_tokens, backoffice_db
from central.dossiers import DEFAULT_DUPLICATE_WINDOW_S
from central.fleet.health import Thresholds
from central.payments import Recorder
from central.support import SupportSettings
from central.web.console.settings import ConsoleSettings
from sync.dossier_status import PortalCodes

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_PAGE_MAX = 500


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    database: backoffice_db.Target
    support: SupportSettings = field(default_factory=SupportSettings)
    payment_secret: bytes | None = None
    payment_recorder: Recorder | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    page_max: int = DEFAULT_PAGE_MAX
    portal_codes: PortalCodes | None = None  # None: the bundled table
    duplicate_window_s: float = DEFAULT_DUPLICATE_WINDOW_S
    metrics_token: bytes | None = None  # [api] metrics_token: GET /metrics needs it
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    thresholds: Thresholds = field(default_factory=Thresholds)  # [fleet]: for GET /metrics
    releases_dir: Path | None = None  # [updates] releases_dir: GET /v1/releases/...


class ApiError(HTTPException):
    """An error answered as JSON naming the field, the limit and the fix."""

    def __init__(self, status: int, code: str, field: str | None, message: str) -> None:
        super().__init__(status_code=status, detail=message)
        self.code = code
        self.field = field
        self.message = message


def error_response(status: int, code: str, field: str | None, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "field": field, "message": message}},
        status_code=status,
        headers=headers,
    )


class Databases:
    """A pool of back-office connections to one database; each request holds one alone.

    FastAPI may run a request's dependencies and its endpoint on different
    worker threads, so a connection is checked out for the whole request (a
    ``yield`` dependency) rather than tied to a thread: no two requests ever
    share a connection, or a transaction.

    SQLite: connections to the file, opened as requests need them and kept.
    PostgreSQL: a psycopg-pool ``ConnectionPool`` (``pool_min``..``pool_max``
    connections, ``pool_timeout_s`` to wait for one), each connection checked out
    as a :class:`central.pg_dialect.SqliteDialectConn`; the pool replaces a
    connection the server dropped, and rolls back one returned mid-transaction.
    """

    def __init__(
        self,
        target: backoffice_db.Target,
        *,
        pool_min: int = 1,
        pool_max: int = 8,
        pool_timeout_s: float = 10.0,
    ) -> None:
        self.path = target
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        self._pool: Any = None
        if isinstance(target, backoffice_db.PgTarget):
            from psycopg_pool import ConnectionPool  # only when PostgreSQL is used

            backoffice_db.connect(target).close()  # the migrations, once, up front
            self._pool = ConnectionPool(
                target.dsn,
                min_size=pool_min,
                max_size=pool_max,
                timeout=pool_timeout_s,
                kwargs={"autocommit": True},
                check=ConnectionPool.check_connection,
                open=True,
                name="aps-backoffice",
            )
            return
        # Create the schema once, up front (connect() is idempotent but not free).
        with self.checkout():
            pass

    @contextmanager
    def checkout(self) -> Iterator[sqlite3.Connection]:
        if self._pool is not None:
            from central.pg_dialect import SqliteDialectConn

            with self._pool.connection() as raw:
                # Typed as what it answers as (central.backoffice_db.connect_pg says why).
                yield cast(sqlite3.Connection, SqliteDialectConn(raw))
            return
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = backoffice_db.connect(self.path)
            with self._lock:
                self._all.append(conn)
        try:
            yield conn
        finally:
            if conn.in_transaction:  # never hand on an open transaction
                conn.execute("ROLLBACK")
            with self._lock:
                self._idle.append(conn)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
            self._idle.clear()


def settings_of(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def db(request: Request) -> Iterator[sqlite3.Connection]:
    databases: Databases = request.app.state.databases
    with databases.checkout() as conn:
        yield conn


def actor(request: Request, conn: Annotated[sqlite3.Connection, Depends(db)]) -> str:
    """The authenticated token's name (the audit actor), or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthenticated",
            "Authorization",
            "send Authorization: Bearer <token>; create a token with: "
            "aps-central api-token add NAME",
        )
    name = api_tokens.authenticate(conn, token.strip())
    if name is None:
        raise ApiError(401, "unauthenticated", "Authorization", "unknown or revoked API token")
    return name


Conn = Annotated[sqlite3.Connection, Depends(db)]
Actor = Annotated[str, Depends(actor)]
Settings = Annotated[ApiSettings, Depends(settings_of)]


DEFAULT_PAGE = 100


def page_limit(limit: int | None, settings: ApiSettings) -> int:
    """``limit`` checked against ``[api] page_max`` (None: 100, or page_max if lower)."""
    if limit is None:
        return min(DEFAULT_PAGE, settings.page_max)
    if limit < 1 or limit > settings.page_max:
        raise ApiError(
            400, "range", "limit", f"expected 1..{settings.page_max} items per page, got {limit}"
        )
    return limit
