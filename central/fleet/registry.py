"""The fleet registry: every enrolled kiosk, its office slot, its signing keys and its state.

Theory of operation
-------------------
The registry lives in central's SQLite file (``[central] database``) in tables of its own
(``fleet_kiosks``, ``fleet_kiosk_keys``, ``fleet_certificates``: every certificate issued,
``fleet_tokens``), opened in WAL mode so the
collector, the HTTP service and ``aps-central kiosk revoke`` (another process) share it.
On PostgreSQL (``Registry(backoffice_db.target_of(cfg.central))``) the same tables are in
central's database, made by the back office's migrations (``backoffice_db.pg_migrations``);
the connection is a :class:`central.pg_dialect.SqliteDialectConn`, whose ``BEGIN
IMMEDIATE`` takes the back office's write lock, so the transactions below mean the same.

- A kiosk row is made *pending* at enrolment (:meth:`Registry.add_kiosk`), becomes *active*
  on its first authenticated connection (:meth:`Registry.mark_connected`) and *revoked* by an
  admin (:meth:`Registry.revoke`). Every state change goes through
  :func:`central.fleet.lifecycle.next_kiosk_state`, inside one ``BEGIN IMMEDIATE``
  transaction that reads the state and writes the next one, so two processes cannot race a
  transition past the table.
- One office slot has at most one live (pending or active) kiosk: checked with a clear
  message before the insert, and enforced by a partial unique index
  (``fleet_kiosks_live_slot``) whatever any caller does. Two kiosks on one slot would issue
  the same dossier codes (issue 9).
- A kiosk holds one or more record-signing keys (Ed25519, by key id). Rotation adds the new
  key first (:meth:`Registry.add_signing_key`); both are accepted until the old one is
  retired (:meth:`Registry.retire_signing_key`). The last accepted key cannot be retired.
- :meth:`Registry.sender` answers :class:`central.fleet.keys.KeyDirectory` for the
  collector's hot path: an indexed read, cached per kiosk for at most ``cache_s`` seconds
  (never more than :data:`central.fleet.keys.MAX_STALENESS_S`); this process's own writes
  drop the cached entry at once, another process's are seen when the entry ages out.

One connection guarded by one lock serves every thread. Kiosk ids are checked with
:func:`sync.envelope.check_kiosk_id`; how an id is chosen is the enrolment's business.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central import backoffice_db
from central.backoffice_db import PgTarget
from central.fleet.keys import MAX_STALENESS_S, SenderKeys
from central.fleet.lifecycle import KioskState, next_kiosk_state
from central.pg_dialect import SqliteDialectConn
from sync.envelope import EnvelopeError, check_kiosk_id
from sync.envelope_signing import key_id
from sync.files import create_private_file
from sync.identity_files import public_key_from_text, public_key_text

__all__ = [
    "KioskEntry",
    "NotRegistered",
    "Registry",
    "RegistryError",
    "SigningKey",
    "SlotHeld",
]

log = logging.getLogger("aps.central.fleet")

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_kiosks (
    kiosk TEXT PRIMARY KEY,
    office TEXT NOT NULL,
    slot INTEGER NOT NULL,
    agency TEXT NOT NULL,
    location TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'revoked')),
    enrolled_at TEXT NOT NULL,
    connected_at TEXT,
    cert_serial TEXT,
    cert_not_after TEXT,
    revoked_at TEXT,
    revoke_reason TEXT,
    hostname TEXT NOT NULL DEFAULT '',
    machine_id TEXT NOT NULL DEFAULT '',
    tls_key_pin TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS fleet_kiosks_live_slot
    ON fleet_kiosks (office, slot) WHERE state IN ('pending', 'active');
CREATE INDEX IF NOT EXISTS fleet_kiosks_office ON fleet_kiosks (office, slot);
CREATE TABLE IF NOT EXISTS fleet_kiosk_keys (
    kiosk TEXT NOT NULL REFERENCES fleet_kiosks (kiosk),
    kid TEXT NOT NULL,
    public_key TEXT NOT NULL,
    added_at TEXT NOT NULL,
    retired_at TEXT,
    PRIMARY KEY (kiosk, kid)
);
CREATE TABLE IF NOT EXISTS fleet_certificates (
    serial TEXT PRIMARY KEY,
    kiosk TEXT NOT NULL REFERENCES fleet_kiosks (kiosk),
    not_after TEXT NOT NULL,
    issued_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fleet_certificates_kiosk ON fleet_certificates (kiosk);
CREATE TABLE IF NOT EXISTS fleet_tokens (
    token_id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    office TEXT NOT NULL,
    slot INTEGER NOT NULL,
    agency TEXT NOT NULL,
    location TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('issued', 'used', 'expired', 'revoked')),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    kiosk TEXT
);
CREATE INDEX IF NOT EXISTS fleet_tokens_slot ON fleet_tokens (office, slot, state);
"""

#: A kiosk's slot is its digit among the office's kiosks (dossier codes are slot*1000 + n).
MIN_SLOT, MAX_SLOT = 0, 9
MAX_FIELD_CHARS = 200


class RegistryError(ValueError):
    """A registry change was refused; the message names the kiosk or field and the fix."""


class NotRegistered(RegistryError):
    """No kiosk of that id is in the registry."""


class SlotHeld(RegistryError):
    """The office slot already belongs to a live kiosk (or an outstanding token)."""


@dataclass(frozen=True, kw_only=True)
class SigningKey:
    kid: str
    public_key: Ed25519PublicKey
    added_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class KioskEntry:
    """One registered kiosk as the registry holds it."""

    kiosk: str
    office: str
    slot: int
    agency: str
    location: str
    state: KioskState
    enrolled_at: datetime
    connected_at: datetime | None
    cert_serial: str | None
    cert_not_after: datetime | None
    revoked_at: datetime | None
    revoke_reason: str | None
    keys: tuple[SigningKey, ...]
    hostname: str = ""
    machine_id: str = ""
    tls_key_pin: str = ""  # sha256:<hex> of the certificate's key (a retried enrolment)

    @property
    def accepted_keys(self) -> dict[str, Ed25519PublicKey]:
        return {k.kid: k.public_key for k in self.keys if k.retired_at is None}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat(timespec="seconds")


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def check_slot(slot: int) -> int:
    if isinstance(slot, bool) or not isinstance(slot, int) or not MIN_SLOT <= slot <= MAX_SLOT:
        raise RegistryError(
            f"slot: {slot!r} is not a whole number from {MIN_SLOT} to {MAX_SLOT}; give the "
            "kiosk's digit among its office's kiosks (its dossier codes start with it)"
        )
    return slot


def check_text(field: str, value: str, *, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise RegistryError(f"{field}: must be a non-empty text; give the {field}")
    if len(value) > MAX_FIELD_CHARS or any(ord(c) < 32 for c in value):
        raise RegistryError(
            f"{field}: {value[:40]!r}... is longer than {MAX_FIELD_CHARS} characters or holds "
            "control characters; shorten it to one plain line"
        )
    return value


class Registry:
    """Central's registry of kiosks (and its enrolment tokens' table).

    ``database`` is central's SQLite file, or a :class:`central.backoffice_db.PgTarget`
    (``backoffice_db.target_of(cfg.central)``): the same tables in central's PostgreSQL.
    """

    def __init__(
        self,
        database: Path | PgTarget,
        *,
        cache_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= cache_s <= MAX_STALENESS_S:
            raise RegistryError(
                f"cache_s: {cache_s} is outside 0..{MAX_STALENESS_S} seconds (a revocation "
                "must be seen within MAX_STALENESS_S); pass a smaller value"
            )
        self._lock = threading.RLock()
        self.database: Path | PgTarget
        if isinstance(database, PgTarget):
            # PostgreSQL: the tables come from the back office's migrations (version 101);
            # the connection answers as sqlite3's, BEGIN IMMEDIATE takes the write lock.
            self.database = database
            self._conn = backoffice_db.connect(database)
        else:
            self.database = Path(database)
            create_private_file(self.database)
            self._conn = sqlite3.connect(
                str(self.database), timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._enable_wal()
            self._conn.execute("PRAGMA synchronous=FULL")
        self._create_schema()
        self._depth = 0  # transaction() nesting: the outermost one commits
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, SenderKeys | None]] = {}

    # -- plumbing --------------------------------------------------------------------------

    def _enable_wal(self) -> None:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _create_schema(self) -> None:
        with self._lock:
            if isinstance(self.database, PgTarget):
                self._conn.executescript(SCHEMA)  # checks the migrated tables are there
            else:
                self._conn.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction, committed on success, rolled back on error.

        For the enrolment tokens (:mod:`central.fleet.tokens`): redeeming a token and adding
        its kiosk are one transaction. Nested use joins the outer transaction.
        """
        with self._lock:
            if self._depth:
                yield self._conn
                return
            self._reopen_if_lost()
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                self._cache.clear()
                # no transaction left, or no connection: nothing to undo
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            self._conn.execute("COMMIT")
            self._cache.clear()

    def _reopen_if_lost(self) -> None:
        """PostgreSQL: a connection the server dropped (a restart, a failover) is opened
        again at the next call outside a transaction; the call that met the loss failed.
        SQLite's file connection is never lost."""
        if self._depth or not isinstance(self.database, PgTarget):
            return
        if cast(SqliteDialectConn, self._conn).raw.closed:
            log.warning("registry: PostgreSQL connection lost; opening it again")
            self._conn = backoffice_db.connect(self.database)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- reads ---------------------------------------------------------------------------

    def _row(self, kiosk: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            "SELECT * FROM fleet_kiosks WHERE kiosk = ?", (kiosk,)
        ).fetchone()
        return row

    def _keys(self, kiosk: str) -> tuple[SigningKey, ...]:
        rows = self._conn.execute(
            "SELECT kid, public_key, added_at, retired_at FROM fleet_kiosk_keys"
            " WHERE kiosk = ? ORDER BY added_at, kid",
            (kiosk,),
        ).fetchall()
        return tuple(
            SigningKey(
                kid=r["kid"],
                public_key=public_key_from_text(r["public_key"]),
                added_at=datetime.fromisoformat(r["added_at"]),
                retired_at=_parse(r["retired_at"]),
            )
            for r in rows
        )

    def _entry(self, row: sqlite3.Row) -> KioskEntry:
        return KioskEntry(
            kiosk=row["kiosk"],
            office=row["office"],
            slot=row["slot"],
            agency=row["agency"],
            location=row["location"],
            state=KioskState(row["state"]),
            enrolled_at=datetime.fromisoformat(row["enrolled_at"]),
            connected_at=_parse(row["connected_at"]),
            cert_serial=row["cert_serial"],
            cert_not_after=_parse(row["cert_not_after"]),
            revoked_at=_parse(row["revoked_at"]),
            revoke_reason=row["revoke_reason"],
            keys=self._keys(row["kiosk"]),
            hostname=row["hostname"],
            machine_id=row["machine_id"],
            tls_key_pin=row["tls_key_pin"],
        )

    def get(self, kiosk: str) -> KioskEntry | None:
        with self._lock:
            self._reopen_if_lost()
            row = self._row(kiosk)
            return None if row is None else self._entry(row)

    def list(self, office: str | None = None) -> list[KioskEntry]:
        with self._lock:
            self._reopen_if_lost()
            if office is None:
                rows = self._conn.execute(
                    "SELECT * FROM fleet_kiosks ORDER BY office, slot, enrolled_at"
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT * FROM fleet_kiosks WHERE office = ? ORDER BY slot, enrolled_at",
                    (office,),
                ).fetchall()
            return [self._entry(r) for r in rows]

    def live_kiosk_on(self, office: str, slot: int) -> str | None:
        """The pending or active kiosk holding ``office``'s ``slot``, if any."""
        with self._lock:
            self._reopen_if_lost()
            row = self._conn.execute(
                "SELECT kiosk FROM fleet_kiosks WHERE office = ? AND slot = ?"
                " AND state IN ('pending', 'active')",
                (office, slot),
            ).fetchone()
            return None if row is None else str(row["kiosk"])

    def sender(self, kiosk: str) -> SenderKeys | None:
        """The kiosk's state and accepted keys (KeyDirectory), cached at most ``cache_s``."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(kiosk)
            if hit is not None and now - hit[0] < self._cache_s:
                return hit[1]
            self._reopen_if_lost()
            row = self._conn.execute(
                "SELECT state FROM fleet_kiosks WHERE kiosk = ?", (kiosk,)
            ).fetchone()
            answer: SenderKeys | None = None
            if row is not None:
                keys = self._conn.execute(
                    "SELECT kid, public_key FROM fleet_kiosk_keys"
                    " WHERE kiosk = ? AND retired_at IS NULL",
                    (kiosk,),
                ).fetchall()
                answer = SenderKeys(
                    kiosk=kiosk,
                    state=KioskState(row["state"]),
                    keys={k["kid"]: public_key_from_text(k["public_key"]) for k in keys},
                )
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[kiosk] = (now, answer)
            return answer

    # -- writes --------------------------------------------------------------------------

    def _must(self, kiosk: str) -> sqlite3.Row:
        row = self._row(kiosk)
        if row is None:
            raise NotRegistered(
                f"kiosk {kiosk!r} is not in the registry; `aps-central kiosk list` shows "
                "the enrolled kiosks"
            )
        return row

    def add_kiosk(
        self,
        kiosk: str,
        *,
        office: str,
        slot: int,
        agency: str,
        signing_key: Ed25519PublicKey,
        location: str = "",
        cert_serial: str | None = None,
        cert_not_after: datetime | None = None,
        hostname: str = "",
        machine_id: str = "",
        tls_key_pin: str = "",
        now: datetime | None = None,
    ) -> None:
        """Register ``kiosk`` as pending on ``office``'s ``slot``; refuses a held slot."""
        try:
            check_kiosk_id(kiosk)
        except EnvelopeError as exc:
            raise RegistryError(f"kiosk id: {exc}") from None
        check_text("office", office)
        check_slot(slot)
        check_text("agency", agency)
        check_text("location", location, required=False)
        check_text("hostname", hostname, required=False)
        check_text("machine_id", machine_id, required=False)
        at = _iso(now or _now())
        with self.transaction() as conn:
            if self._row(kiosk) is not None:
                raise RegistryError(
                    f"kiosk {kiosk!r} is already in the registry (kiosk ids are never "
                    "reused, even after a revocation); choose another id"
                )
            holder = self.live_kiosk_on(office, slot)
            if holder is not None:
                raise SlotHeld(
                    f"slot {slot} of office {office} is held by kiosk {holder}; revoke it "
                    f"first (`aps-central kiosk revoke {holder} --reason ...`) or use "
                    "another slot"
                )
            conn.execute(
                "INSERT INTO fleet_kiosks (kiosk, office, slot, agency, location, state,"
                " enrolled_at, cert_serial, cert_not_after, hostname, machine_id, tls_key_pin)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    kiosk,
                    office,
                    slot,
                    agency,
                    location,
                    KioskState.PENDING.value,
                    at,
                    cert_serial,
                    _iso(cert_not_after),
                    hostname,
                    machine_id,
                    tls_key_pin,
                ),
            )
            self._insert_key(kiosk, signing_key, at)
            if cert_serial is not None and cert_not_after is not None:
                self._insert_certificate(kiosk, cert_serial, cert_not_after, at)

    def _insert_certificate(
        self, kiosk: str, serial: str, not_after: datetime, at: str | None
    ) -> None:
        self._conn.execute(
            "INSERT INTO fleet_certificates (serial, kiosk, not_after, issued_at)"
            " VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (serial, kiosk, _iso(not_after), at or _iso(_now())),
        )

    def revoked_certificates(self) -> builtins.list[tuple[str, datetime]]:
        """``(serial, revoked at)`` of every certificate ever issued to a revoked kiosk."""
        with self._lock:
            self._reopen_if_lost()
            rows = self._conn.execute(
                "SELECT c.serial, k.revoked_at FROM fleet_certificates c"
                " JOIN fleet_kiosks k ON k.kiosk = c.kiosk WHERE k.state = 'revoked'"
                " ORDER BY c.serial"
            ).fetchall()
        return [(r["serial"], _parse(r["revoked_at"]) or _now()) for r in rows]

    def _insert_key(self, kiosk: str, key: Ed25519PublicKey, at: str | None) -> str:
        kid = key_id(key)
        self._conn.execute(
            "INSERT INTO fleet_kiosk_keys (kiosk, kid, public_key, added_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (kiosk, kid) DO UPDATE SET retired_at = NULL",
            (kiosk, kid, public_key_text(key), at),
        )
        return kid

    def _set_state(self, kiosk: str, state: KioskState, **columns: str | None) -> None:
        sets = ", ".join(f"{name} = ?" for name in ("state", *columns))
        self._conn.execute(
            f"UPDATE fleet_kiosks SET {sets} WHERE kiosk = ?",  # column names are ours
            (state.value, *columns.values(), kiosk),
        )

    def mark_connected(self, kiosk: str, *, now: datetime | None = None) -> None:
        """First (or any) authenticated connection: pending -> active; revoked refuses."""
        with self.transaction():
            row = self._must(kiosk)
            state = next_kiosk_state(KioskState(row["state"]), "connect")
            if row["connected_at"] is None:
                self._set_state(kiosk, state, connected_at=_iso(now or _now()))
            else:
                self._set_state(kiosk, state)

    def _refuse_if_revoked(self, row: sqlite3.Row) -> None:
        state = KioskState(row["state"])
        if state is KioskState.REVOKED:
            next_kiosk_state(state, "renew")  # raises IllegalTransition: revoked is final

    def add_signing_key(
        self, kiosk: str, key: Ed25519PublicKey, *, now: datetime | None = None
    ) -> str:
        """Accept a further signing key for ``kiosk`` (rotation); returns its key id."""
        with self.transaction():
            row = self._must(kiosk)
            self._refuse_if_revoked(row)
            return self._insert_key(kiosk, key, _iso(now or _now()))

    def retire_signing_key(self, kiosk: str, kid: str, *, now: datetime | None = None) -> None:
        """Stop accepting the key ``kid``; the kiosk's last accepted key cannot be retired."""
        with self.transaction() as conn:
            self._must(kiosk)
            live = [
                r["kid"]
                for r in conn.execute(
                    "SELECT kid FROM fleet_kiosk_keys WHERE kiosk = ? AND retired_at IS NULL",
                    (kiosk,),
                )
            ]
            if kid not in live:
                raise RegistryError(
                    f"kiosk {kiosk!r} has no accepted signing key {kid!r}; "
                    f"its accepted keys are {', '.join(live) or 'none'}"
                )
            if live == [kid]:
                raise RegistryError(
                    f"key {kid!r} is kiosk {kiosk!r}'s only accepted signing key; add the new "
                    "key first (renewal), then retire the old one"
                )
            conn.execute(
                "UPDATE fleet_kiosk_keys SET retired_at = ? WHERE kiosk = ? AND kid = ?",
                (_iso(now or _now()), kiosk, kid),
            )

    def record_certificate(
        self,
        kiosk: str,
        *,
        serial: str,
        not_after: datetime,
        tls_key_pin: str,
        renewal: bool = False,
    ) -> None:
        """The kiosk's current client certificate (a renewal keeps an active kiosk active)."""
        with self.transaction():
            row = self._must(kiosk)
            state = KioskState(row["state"])
            self._refuse_if_revoked(row)
            if renewal and state is KioskState.ACTIVE:
                state = next_kiosk_state(state, "renew")
            self._set_state(
                kiosk,
                state,
                cert_serial=serial,
                cert_not_after=_iso(not_after),
                tls_key_pin=tls_key_pin,
            )
            self._insert_certificate(kiosk, serial, not_after, None)

    def revoke(self, kiosk: str, *, reason: str, now: datetime | None = None) -> None:
        """Revoke ``kiosk`` for good: its slot is free, nothing it sends is accepted."""
        check_text("reason", reason)
        with self.transaction():
            row = self._must(kiosk)
            state = next_kiosk_state(KioskState(row["state"]), "revoke")
            self._set_state(
                kiosk, state, revoked_at=_iso(now or _now()), revoke_reason=reason.strip()
            )


def registry_rows(conn: sqlite3.Connection) -> dict[str, dict[str, object]]:
    """kiosk -> office, slot, location and registry state, read on any connection.

    For reports (``aps-central fleet``) that hold the store's connection; empty when
    central has never enrolled a kiosk (no table yet), never creating anything.
    """
    try:
        rows = conn.execute(
            "SELECT kiosk, office, slot, location, state, enrolled_at FROM fleet_kiosks"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    return {
        kiosk: {
            "office": office,
            "slot": slot,
            "location": location,
            "registry": state,
            "enrolled_at": enrolled_at,
        }
        for kiosk, office, slot, location, state, enrolled_at in rows
    }
