"""One-time enrolment tokens: issued for one office slot, redeemed once by one box.

Theory of operation
-------------------
``aps-central enroll create --office OFFICE --slot N`` issues a token for that slot; a box
redeems it with ``aps-agent provision``. The printed token is three parts joined by dots::

    <token id>.<secret>.<CA pin>      e.g.  k3x9qa.4f0s...r2.sha256:9b1c...

- the **token id** (6 characters a-z0-9) names it in ``enroll list`` and ``enroll revoke``;
- the **secret** (20 characters a-z0-9, about 103 bits) is what proves the box was given the
  token. Central stores only its SHA-256 (:func:`secret_hash`) and compares in constant time;
- the **CA pin** (``sha256:<hex>``, :func:`central.fleet.ca.ca_pin`) lets the box trust
  central's HTTPS before it holds anything else (kubeadm's discovery-token-ca-cert-hash).

A token's states and transitions are :data:`central.fleet.lifecycle.TOKEN_TRANSITIONS`.
A slot is **held** while a pending or active kiosk has it, or an issued token whose time is
not up: :func:`create` refuses a held slot, naming who holds it. :func:`redeem` runs inside
the caller's registry transaction (the enrolment also adds the kiosk there), so a token is
used at most once whatever the concurrency: the row is read and moved to ``used`` under
``BEGIN IMMEDIATE``. A redemption after the expiry moves the token to ``expired`` (committed
even though the enrolment is refused) and refuses with that reason.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from central.fleet.lifecycle import TokenState, next_token_state, redeem_event
from central.fleet.registry import Registry, RegistryError, SlotHeld, check_slot, check_text

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "IssuedToken",
    "TokenEntry",
    "TokenRefused",
    "bind_kiosk",
    "create",
    "list_tokens",
    "parse_token",
    "redeem",
    "revoke",
]

DEFAULT_LIFETIME = timedelta(hours=24)
MAX_LIFETIME = timedelta(days=7)
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_CHARS, SECRET_CHARS = 6, 20
TOKEN_ID_RE = re.compile(rf"\A[a-z0-9]{{{ID_CHARS}}}\Z")
TOKEN_RE = re.compile(
    rf"\A(?P<id>[a-z0-9]{{{ID_CHARS}}})\.(?P<secret>[a-z0-9]{{{SECRET_CHARS}}})"
    r"(?:\.(?P<pin>sha256:[0-9a-f]{64}))?\Z"
)


class TokenRefused(RegistryError):
    """A token cannot be redeemed; ``reason`` is ``unknown``, ``used``, ``expired``, ``revoked``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class TokenEntry:
    token_id: str
    office: str
    slot: int
    agency: str
    location: str
    state: TokenState
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    kiosk: str | None

    def live(self, now: datetime) -> bool:
        return self.state is TokenState.ISSUED and now < self.expires_at


@dataclass(frozen=True, kw_only=True)
class IssuedToken:
    entry: TokenEntry
    token: str  # id.secret.pin: shown once, never stored


def _now() -> datetime:
    return datetime.now(UTC)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def parse_token(token: str) -> tuple[str, str, str | None]:
    """``(token id, secret, pin or None)``; a malformed token raises :class:`TokenRefused`."""
    match = TOKEN_RE.match(token.strip()) if isinstance(token, str) else None
    if match is None:
        raise TokenRefused(
            "malformed",
            "token: expected <id>.<secret>.<pin> as `aps-central enroll create` printed it "
            f"({ID_CHARS} and {SECRET_CHARS} letters or digits, then sha256:<64 hex>)",
        )
    return match["id"], match["secret"], match["pin"]


def _entry(row: sqlite3.Row) -> TokenEntry:
    return TokenEntry(
        token_id=row["token_id"],
        office=row["office"],
        slot=row["slot"],
        agency=row["agency"],
        location=row["location"],
        state=TokenState(row["state"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]),
        used_at=None if row["used_at"] is None else datetime.fromisoformat(row["used_at"]),
        kiosk=row["kiosk"],
    )


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def slot_holder(conn: sqlite3.Connection, office: str, slot: int, now: datetime) -> str | None:
    """Who holds ``office``'s ``slot`` (a kiosk, or a live token), in words; None if free."""
    row = conn.execute(
        "SELECT kiosk, state FROM fleet_kiosks WHERE office = ? AND slot = ?"
        " AND state IN ('pending', 'active')",
        (office, slot),
    ).fetchone()
    if row is not None:
        return f"kiosk {row['kiosk']} ({row['state']})"
    for tok in conn.execute(
        "SELECT token_id, expires_at FROM fleet_tokens WHERE office = ? AND slot = ?"
        " AND state = 'issued'",
        (office, slot),
    ):
        if now < datetime.fromisoformat(tok["expires_at"]):
            return f"unused token {tok['token_id']} (expires {tok['expires_at']})"
    return None


def create(
    registry: Registry,
    *,
    office: str,
    slot: int,
    agency: str,
    pin: str,
    lifetime: timedelta = DEFAULT_LIFETIME,
    location: str = "",
    now: datetime | None = None,
) -> IssuedToken:
    """Issue a token for ``office``'s ``slot``; refuses a held slot naming its holder."""
    check_text("office", office)
    check_slot(slot)
    check_text("agency", agency)
    check_text("location", location, required=False)
    if not timedelta(minutes=1) <= lifetime <= MAX_LIFETIME:
        raise RegistryError(
            f"expires: {lifetime} is outside 1 minute .. {MAX_LIFETIME.days} days; a token "
            "should live only until the technician is at the box (e.g. --expires 24h)"
        )
    now = now or _now()
    token_id, secret = _random(ID_CHARS), _random(SECRET_CHARS)
    with registry.transaction() as conn:
        holder = slot_holder(conn, office, slot, now)
        if holder is not None:
            raise SlotHeld(
                f"slot {slot} of office {office} is held by {holder}; revoke that first "
                "(`aps-central kiosk revoke` or `aps-central enroll revoke`) or use another slot"
            )
        conn.execute(
            "INSERT INTO fleet_tokens (token_id, secret_hash, office, slot, agency, location,"
            " state, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 'issued', ?, ?)",
            (
                token_id,
                secret_hash(secret),
                office,
                slot,
                agency,
                location,
                _iso(now),
                _iso(now + lifetime),
            ),
        )
        row = conn.execute("SELECT * FROM fleet_tokens WHERE token_id = ?", (token_id,)).fetchone()
    return IssuedToken(entry=_entry(row), token=f"{token_id}.{secret}.{pin}")


def list_tokens(registry: Registry, *, office: str | None = None) -> list[TokenEntry]:
    with registry.transaction() as conn:
        sql, args = "SELECT * FROM fleet_tokens", []
        if office is not None:
            sql, args = sql + " WHERE office = ?", [office]
        return [_entry(r) for r in conn.execute(sql + " ORDER BY created_at, token_id", args)]


def get(registry: Registry, token_id: str) -> TokenEntry | None:
    with registry.transaction() as conn:
        row = conn.execute("SELECT * FROM fleet_tokens WHERE token_id = ?", (token_id,)).fetchone()
        return None if row is None else _entry(row)


def revoke(registry: Registry, token_id: str) -> TokenEntry:
    """Withdraw an unused token (its slot is free again)."""
    with registry.transaction() as conn:
        row = conn.execute("SELECT * FROM fleet_tokens WHERE token_id = ?", (token_id,)).fetchone()
        if row is None:
            raise RegistryError(
                f"token {token_id!r} is unknown; `aps-central enroll list` shows the tokens"
            )
        state = next_token_state(TokenState(row["state"]), "revoke")
        conn.execute(
            "UPDATE fleet_tokens SET state = ? WHERE token_id = ?", (state.value, token_id)
        )
        row = conn.execute("SELECT * FROM fleet_tokens WHERE token_id = ?", (token_id,)).fetchone()
        return _entry(row)


def redeem(conn: sqlite3.Connection, token: str, *, now: datetime | None = None) -> TokenEntry:
    """Use the token, inside the caller's transaction (see the module doc).

    Raises :class:`TokenRefused` (unknown, used, expired, revoked); an expiry found here is
    written (``issued -> expired``) before the refusal, and the caller must commit it.
    """
    now = now or _now()
    token_id, secret, _pin = parse_token(token)
    row = conn.execute("SELECT * FROM fleet_tokens WHERE token_id = ?", (token_id,)).fetchone()
    if row is None or not hmac.compare_digest(row["secret_hash"], secret_hash(secret)):
        raise TokenRefused(
            "unknown",
            "token: central issued no such token; ask the admin for a new one "
            "(`aps-central enroll create`)",
        )
    entry = _entry(row)
    if entry.state is TokenState.USED:
        raise TokenRefused(
            "used",
            f"token {token_id} was already used (by kiosk {entry.kiosk} at "
            f"{_iso(entry.used_at or now)}); a token enrols one box once: ask for a new one",
        )
    if entry.state is not TokenState.ISSUED:
        raise TokenRefused(
            entry.state.value,
            f"token {token_id} is {entry.state.value}; ask the admin for a new one",
        )
    event = redeem_event(now, entry.expires_at)
    state = next_token_state(entry.state, event)
    if state is TokenState.EXPIRED:
        conn.execute("UPDATE fleet_tokens SET state = 'expired' WHERE token_id = ?", (token_id,))
        raise TokenRefused(
            "expired",
            f"token {token_id} expired at {_iso(entry.expires_at)}; ask the admin for a new one",
        )
    conn.execute(
        "UPDATE fleet_tokens SET state = ?, used_at = ? WHERE token_id = ?",
        (state.value, _iso(now), token_id),
    )
    return entry


def bind_kiosk(conn: sqlite3.Connection, token_id: str, kiosk: str) -> None:
    """Name the kiosk a used token enrolled (same transaction as :func:`redeem`)."""
    conn.execute("UPDATE fleet_tokens SET kiosk = ? WHERE token_id = ?", (kiosk, token_id))
