"""Console accounts: argon2 password hashes, roles, lock-out; the console's tables.

Theory of operation
-------------------
A password is kept only as an argon2id hash (argon2-cffi's ``PasswordHasher`` with the
parameters in :class:`~central.web.console.settings.ConsoleSettings`). When a login
succeeds and the stored hash was made with other parameters, it is rehashed in the
same transaction, so raising the cost takes effect user by user at their next login.

:func:`check_login` answers only "this user" or ``None``, whatever went wrong, and does
the same work for an unknown name as for a known one (it verifies against a dummy hash),
so neither the answer nor its time tells whether an account exists. Two brakes:

- per account: ``max_failures`` wrong passwords in a row lock it for ``lockout_s``
  (``locked_until``); a success resets the count; an admin unlocks it at once;
- per client address: after ``client_free_failures`` failures within
  ``client_window_s``, each further try must wait twice as long as the one before
  (capped at ``client_max_wait_s``) after the latest failure: :func:`client_wait_s`.
  This slows guessing over many names from one address without locking anyone out.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from central import audit
from central.backoffice_db import transaction
from central.web.console.settings import ConsoleSettings

SCHEMA = """
CREATE TABLE IF NOT EXISTS console_users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('admin', 'staff', 'viewer')),
    office TEXT,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    password_changed_at REAL NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL
);
CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash BLOB PRIMARY KEY,
    "user" TEXT NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,  -- "user": reserved
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_user ON console_sessions ("user");
CREATE TABLE IF NOT EXISTS console_login_failures (
    client TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS console_login_failures_client ON console_login_failures (client, at);
"""

NAME_RE = re.compile(r"\A[a-z][a-z0-9._-]{1,39}\Z")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
OFFICE_CHARS = 40


class Role(StrEnum):
    ADMIN = "admin"
    STAFF = "staff"
    VIEWER = "viewer"


class UserError(ValueError):
    """A bad account name, role, office or password; the message names the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownUser(UserError):
    pass


@dataclass(frozen=True, kw_only=True)
class User:
    name: str
    role: Role
    office: str | None
    disabled: bool
    failures: int
    locked_until: float | None

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role.value,
            "office": self.office,
            "disabled": self.disabled,
            "failures": self.failures,
            "locked": self.locked(now),
            "locked_until": self.locked_until,
        }


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def hasher(settings: ConsoleSettings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def check_name(name: str) -> str:
    if not isinstance(name, str) or NAME_RE.match(name) is None:
        raise UserError(
            "name",
            f"{name!r}: 2-40 characters, lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter (such as lan.nguyen)",
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(
            "password",
            f"at least {MIN_PASSWORD_CHARS} characters, got {len(password)}; "
            "use a passphrase of several words",
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError("password", f"at most {MAX_PASSWORD_CHARS} characters")
    return password


def _check_role_office(role: str, office: str | None) -> tuple[Role, str | None]:
    try:
        r = Role(role)
    except ValueError:
        raise UserError("role", f"{role!r}: expected admin, staff or viewer") from None
    if r is Role.STAFF:
        if not office or len(office) > OFFICE_CHARS:
            raise UserError(
                "office",
                f"a staff account needs its office (--office, at most {OFFICE_CHARS} "
                "characters, such as 000.00.14.H56)",
            )
        return r, office
    if office:
        raise UserError("office", f"only staff accounts belong to an office, not {r.value}")
    return r, None


_COLUMNS = "name, role, office, disabled, failures, locked_until"


def _user(row: tuple[Any, ...]) -> User:
    name, role, office, disabled, failures, locked_until = row
    return User(
        name=name,
        role=Role(role),
        office=office,
        disabled=bool(disabled),
        failures=failures,
        locked_until=locked_until,
    )


def get_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM console_users WHERE name = ?", (name,)).fetchone()
    return None if row is None else _user(row)


def require_user(conn: sqlite3.Connection, name: str) -> User:
    user = get_user(conn, name)
    if user is None:
        raise UnknownUser("name", f"no console user {name!r}; see: aps-central console user list")
    return user


def list_users(conn: sqlite3.Connection) -> list[User]:
    return [_user(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM console_users ORDER BY name")]


def add_user(
    conn: sqlite3.Connection,
    actor: str,
    name: str,
    password: str,
    *,
    role: str,
    office: str | None,
    settings: ConsoleSettings,
) -> User:
    check_name(name)
    r, office = _check_role_office(role, office)
    digest = hasher(settings).hash(check_password(password))
    now = settings.clock()
    with transaction(conn):
        if get_user(conn, name) is not None:
            raise UserError("name", f"console user {name!r} exists; choose another name")
        conn.execute(
            "INSERT INTO console_users (name, role, office, password_hash, created_at,"
            " password_changed_at) VALUES (?, ?, ?, ?, ?, ?)",
            (name, r.value, office, digest, now, now),
        )
        audit.record(
            conn, actor, "console.user.add", f"console:{name}", {"role": r.value, "office": office}
        )
    return require_user(conn, name)


def set_password(
    conn: sqlite3.Connection, actor: str, name: str, password: str, *, settings: ConsoleSettings
) -> None:
    """A new password; every session of the user ends."""
    digest = hasher(settings).hash(check_password(password))
    with transaction(conn):
        require_user(conn, name)
        conn.execute(
            "UPDATE console_users SET password_hash = ?, password_changed_at = ?, failures = 0,"
            " locked_until = NULL WHERE name = ?",
            (digest, settings.clock(), name),
        )
        conn.execute('DELETE FROM console_sessions WHERE "user" = ?', (name,))
        audit.record(conn, actor, "console.user.passwd", f"console:{name}")


def set_disabled(conn: sqlite3.Connection, actor: str, name: str, disabled: bool = True) -> None:
    """Disable (or enable) an account; disabling ends its sessions."""
    with transaction(conn):
        require_user(conn, name)
        conn.execute("UPDATE console_users SET disabled = ? WHERE name = ?", (int(disabled), name))
        if disabled:
            conn.execute('DELETE FROM console_sessions WHERE "user" = ?', (name,))
        audit.record(
            conn,
            actor,
            "console.user.disable" if disabled else "console.user.enable",
            f"console:{name}",
        )


def unlock(conn: sqlite3.Connection, actor: str, name: str) -> None:
    """Lift a lock-out now (and forget the failures counted so far)."""
    with transaction(conn):
        require_user(conn, name)
        conn.execute(
            "UPDATE console_users SET failures = 0, locked_until = NULL WHERE name = ?", (name,)
        )
        audit.record(conn, actor, "console.user.unlock", f"console:{name}")


# -- logging in ----------------------------------------------------------------------------

_dummy_hashes: dict[tuple[int, int, int], str] = {}


def _dummy_hash(settings: ConsoleSettings) -> str:
    """A hash of a random password with the current parameters (verified for unknown names)."""
    key = (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
    if key not in _dummy_hashes:
        import secrets

        _dummy_hashes[key] = hasher(settings).hash(secrets.token_urlsafe(24))
    return _dummy_hashes[key]


def client_wait_s(conn: sqlite3.Connection, client: str, settings: ConsoleSettings) -> float:
    """Seconds this client address must still wait before its next login attempt (0: none)."""
    now = settings.clock()
    count, latest = conn.execute(
        "SELECT count(*), max(at) FROM console_login_failures WHERE client = ? AND at > ?",
        (client, now - settings.client_window_s),
    ).fetchone()
    over = count - settings.client_free_failures
    if over < 0 or latest is None:
        return 0.0
    wait = min(settings.client_max_wait_s, 2.0**over)
    left: float = float(latest) + wait - now
    return max(0.0, left)


def check_login(
    conn: sqlite3.Connection, name: str, password: str, *, client: str, settings: ConsoleSettings
) -> User | None:
    """The user when ``name`` and ``password`` match an enabled, unlocked account; else None.

    Counts a failure against the account (when it exists) and the client address.
    """
    now = settings.clock()
    ph = hasher(settings)
    row = None
    if NAME_RE.match(name or ""):
        row = conn.execute(
            f"SELECT {_COLUMNS}, password_hash FROM console_users WHERE name = ?", (name,)
        ).fetchone()
    stored = row[-1] if row is not None else _dummy_hash(settings)
    ok: bool
    try:
        # An over-long password is verified cut (the same work) but never matches.
        ok = ph.verify(stored, password[:MAX_PASSWORD_CHARS])
        ok = ok and len(password) <= MAX_PASSWORD_CHARS
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    user = None if row is None else _user(row[:-1])
    good = ok and user is not None and not user.disabled and not user.locked(now)
    with transaction(conn):
        if good and user is not None:
            changes = "failures = 0, locked_until = NULL"
            args: list[Any] = []
            if ph.check_needs_rehash(stored):
                changes += ", password_hash = ?"
                args.append(ph.hash(password))
            conn.execute(f"UPDATE console_users SET {changes} WHERE name = ?", (*args, name))
            conn.execute(
                "DELETE FROM console_login_failures WHERE at <= ?",
                (now - settings.client_window_s,),
            )
            audit.record(conn, name, "console.login", f"console:{name}", {"client": client})
            return require_user(conn, name)
        conn.execute("INSERT INTO console_login_failures (client, at) VALUES (?, ?)", (client, now))
        if user is not None and not user.locked(now):
            failures = user.failures + 1
            locked_until = now + settings.lockout_s if failures >= settings.max_failures else None
            conn.execute(
                "UPDATE console_users SET failures = ?, locked_until = ? WHERE name = ?",
                (0 if locked_until else failures, locked_until, name),
            )
            if locked_until is not None:
                audit.record(
                    conn,
                    "console",
                    "console.user.locked",
                    f"console:{name}",
                    {"client": client, "until": locked_until},
                )
    return None
