"""Console sessions, the CSRF token and the Origin check.

Theory of operation
-------------------
- **Session**: a 256-bit random id in the ``aps_console`` cookie (HttpOnly,
  SameSite=Strict, path ``/console``; Secure as ``[console] cookie_secure`` says, by
  default when the request came over HTTPS, see :func:`secure_cookies`). Central stores only
  the SHA-256 of the id, so a copy of the database does not hold live sessions. A session
  ends when it has been idle longer than ``idle_timeout_s``, when it is older than
  ``absolute_timeout_s`` whatever its use, at logout (the row is deleted), and when the
  account is disabled or its password changed.
- **CSRF**: each session has its own random synchronizer token, put in a hidden field of
  every form; a state-changing request must send it back, compared in constant time.
  The login form, before any session, uses a double-submit token (a short-lived cookie
  and the same value in the form).
- **Origin**: every POST must carry an ``Origin`` (or, failing that, a ``Referer``) of
  this very scheme, host and port; browsers send it on form posts, and a page of another
  site cannot forge it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from central.web.console.settings import ConsoleSettings
from central.web.console.users import User, get_user

COOKIE = "aps_console"
LOGIN_COOKIE = "aps_console_login"
COOKIE_PATH = "/console"
LOGIN_TOKEN_S = 600  # the login form's double-submit cookie lives this long


@dataclass(frozen=True, kw_only=True)
class Session:
    user: User
    csrf: str
    id_hash: bytes


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def create_session(conn: sqlite3.Connection, user: User, settings: ConsoleSettings) -> str:
    """A new session for ``user``; returns the id for the cookie (never stored)."""
    session_id = new_token()
    now = settings.clock()
    conn.execute(
        'INSERT INTO console_sessions (id_hash, "user", csrf, created_at, seen_at)'
        " VALUES (?, ?, ?, ?, ?)",
        (_digest(session_id), user.name, new_token(), now, now),
    )
    return session_id


def load_session(
    conn: sqlite3.Connection, session_id: str | None, settings: ConsoleSettings
) -> Session | None:
    """The live session with this id (its last use moved to now), or None.

    An expired session is deleted here; a disabled account has no session.
    """
    if not session_id or len(session_id) > 100:
        return None
    key = _digest(session_id)
    row = conn.execute(
        'SELECT "user", csrf, created_at, seen_at FROM console_sessions WHERE id_hash = ?', (key,)
    ).fetchone()
    if row is None:
        return None
    name, csrf, created_at, seen_at = row
    now = settings.clock()
    user = get_user(conn, name)
    expired = (
        now - seen_at > settings.idle_timeout_s
        or now - created_at > settings.absolute_timeout_s
        or user is None
        or user.disabled
    )
    if expired:
        conn.execute("DELETE FROM console_sessions WHERE id_hash = ?", (key,))
        return None
    assert user is not None
    conn.execute("UPDATE console_sessions SET seen_at = ? WHERE id_hash = ?", (now, key))
    return Session(user=user, csrf=csrf, id_hash=key)


def delete_session(conn: sqlite3.Connection, session: Session) -> None:
    conn.execute("DELETE FROM console_sessions WHERE id_hash = ?", (session.id_hash,))


def purge_expired(conn: sqlite3.Connection, settings: ConsoleSettings) -> int:
    now = settings.clock()
    cur = conn.execute(
        "DELETE FROM console_sessions WHERE seen_at < ? OR created_at < ?",
        (now - settings.idle_timeout_s, now - settings.absolute_timeout_s),
    )
    return cur.rowcount


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}".lower()


def origin_ok(request: Request) -> bool:
    """The POST came from a page of this console (Origin, or Referer when no Origin)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = request.headers.get("referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return hmac.compare_digest(origin.lower().encode(), own_origin(request).encode())


def secure_cookies(request: Request, settings: ConsoleSettings) -> bool:
    """``[console] cookie_secure``; when "auto", whether this request came over HTTPS.

    The scheme is as uvicorn saw it: HTTPS served by central itself, or a proxy that says
    ``X-Forwarded-Proto: https`` from an address uvicorn trusts (by default 127.0.0.1 and
    ::1, a TLS proxy on the same machine). A proxy on another machine needs ``true``.
    """
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    return request.url.scheme == "https"


def set_cookie(
    response: Response,
    request: Request,
    settings: ConsoleSettings,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
) -> None:
    """One of the console's cookies: HttpOnly, SameSite=Strict, path ``/console``, and
    Secure as :func:`secure_cookies` says; ``max_age`` None: until the browser closes."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request, settings),
    )


def forget_cookie(
    response: Response, request: Request, settings: ConsoleSettings, name: str
) -> None:
    """Tell the browser to drop a cookie set by :func:`set_cookie` (same attributes)."""
    response.delete_cookie(
        name,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request, settings),
    )


def client_of(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"
