"""API tokens: who may call central's HTTP API, and the name its audit rows carry.

A token is 32 random bytes (``aps_`` + URL-safe base64), printed once by
``aps-central api-token add NAME``; central stores only its SHA-256, so a
copy of the database does not hand out access. The token's **name** is the
audit actor of every change made with it. A revoked token stays listed (who
had access, until when) and its name cannot be reused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any

from central import audit
from central.backoffice_db import transaction

TOKEN_PREFIX = "aps_"
NAME_RE = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,39}\Z")
USED_RESOLUTION_S = 60.0  # last_used_at is written at most this often per token


class TokenError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class TokenInfo:
    name: str
    created_at: float
    created_by: str
    revoked_at: float | None
    last_used_at: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add(conn: sqlite3.Connection, actor: str, name: str) -> str:
    """Create a token called ``name``; returns the token (shown once, never stored)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TokenError("name", "expected 1-40 characters of a-z, 0-9, '.', '_' or '-'")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction(conn):
        if conn.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
            raise TokenError(
                "name", f"a token named {name!r} exists (or existed); choose another name"
            )
        conn.execute(
            "INSERT INTO api_tokens (name, hash, created_at, created_by) VALUES (?, ?, ?, ?)",
            (name, token_hash(token), time.time(), actor),
        )
        audit.record(conn, actor, "api-token.add", f"api-token:{name}")
    return token


def list_tokens(conn: sqlite3.Connection) -> list[TokenInfo]:
    rows = conn.execute(
        "SELECT name, created_at, created_by, revoked_at, last_used_at FROM api_tokens"
        " ORDER BY name"
    ).fetchall()
    return [
        TokenInfo(name=n, created_at=c, created_by=b, revoked_at=r, last_used_at=u)
        for n, c, b, r, u in rows
    ]


def revoke(conn: sqlite3.Connection, actor: str, name: str) -> None:
    with transaction(conn):
        row = conn.execute("SELECT revoked_at FROM api_tokens WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise TokenError("name", f"no token named {name!r}; see: aps-central api-token list")
        if row[0] is not None:
            return
        conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ?", (time.time(), name))
        audit.record(conn, actor, "api-token.revoke", f"api-token:{name}")


def authenticate(conn: sqlite3.Connection, token: str) -> str | None:
    """The name of the live token ``token``, else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = conn.execute(
        "SELECT name, last_used_at FROM api_tokens WHERE hash = ? AND revoked_at IS NULL",
        (token_hash(token),),
    ).fetchone()
    if row is None:
        return None
    name, used = row
    now = time.time()
    if used is None or now - used >= USED_RESOLUTION_S:
        conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", (now, name))
    return str(name)
