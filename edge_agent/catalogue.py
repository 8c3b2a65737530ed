"""The procedure catalogue on the kiosk: procedures, papers, fees, limits, form schema.

Theory of operation
-------------------
The document format is :mod:`sync.catalogue` (shared with central). This
module turns a validated document into domain objects the application uses
(:class:`Catalogue`, :class:`Procedure`) and keeps the kiosk's active copy in
its SQLite database (:class:`CatalogueStore`).

Central publishes a new catalogue as one downlink item (kind ``catalogue``).
The kiosk's inbox calls :meth:`CatalogueStore.apply` inside the transaction
that applies the page of downlink items and stores the new cursor, so the
catalogue row, the cursor and the item commit together or not at all:

- a valid document whose version is newer than the active one replaces the
  single ``catalogue_active`` row (one UPDATE: a reader sees the old document
  or the new one, never a mix);
- a bad document (schema, size, an older version) leaves the active one in
  place and records the refusal (version, error) in ``catalogue_refusal``;
  ``apply`` does not raise for it, so the cursor still advances and the same
  bad item is not retried forever; the heartbeat reports
  :meth:`CatalogueStore.catalogue_status` until a good one arrives.

With no row at all (a new kiosk that has not yet heard from central) the
copy shipped with the agent (``edge_agent/data/catalogue.json``) is active.
:meth:`CatalogueStore.current` re-reads only the version on each call and
parses the document again only when it changed, so readers in other threads
or connections see a swap as soon as it commits.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time as clock
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from edge_agent import CitizenError
from sync.catalogue import (
    CatalogueDocument,
    CatalogueInvalid,
    FeeInputError,
    FeeQuote,
    FlatFee,
    FormFieldSpec,
    FreeFee,
    Paper,
    PerCaseFee,
    PerCopyFee,
    PerPageFee,
    compute_fee,
    describe_fee_vi,
    is_newer,
    parse_catalogue_document,
)
from sync.schemas import ID_NUMBER_RE, PHONE_RE, bounded_reason

log = logging.getLogger("aps.catalogue")

__all__ = [
    "ApplyResult",
    "Catalogue",
    "CatalogueStore",
    "FormError",
    "FormField",
    "Procedure",
    "bundled_catalogue",
    "bundled_document",
    "parse_catalogue",
]


class FormError(CitizenError):
    """A form field is missing or breaks its rule; names the field and the limit."""

    def __init__(self, field: str, message: str, message_vi: str) -> None:
        super().__init__(f"form.{field}: {message}", message_vi)
        self.field = field


@dataclass(frozen=True, kw_only=True)
class FormField:
    name: str
    label: str
    type: str
    required: bool = False
    max_len: int | None = None
    choices: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None
    from_card: str | None = None
    help: str | None = None

    @classmethod
    def from_spec(cls, f: FormFieldSpec) -> FormField:
        return cls(
            name=f.name,
            label=f.label,
            type=f.type,
            required=f.required,
            max_len=f.max_len,
            choices=tuple(f.choices),
            min=f.min,
            max=f.max,
            from_card=f.from_card,
            help=f.help,
        )


# The card's sex codes (ICAO 9303) as the catalogue's choices say them.
_SEX_VI = {"M": "Nam", "F": "Nữ"}


@dataclass(frozen=True, kw_only=True)
class Procedure:
    code: str
    name: str
    field: str
    working_days: int
    extended_working_days: int | None
    cutoff: time | None
    fee_rule: FreeFee | FlatFee | PerPageFee | PerCopyFee | PerCaseFee
    papers: tuple[Paper, ...]
    form: tuple[FormField, ...]
    guidance: str
    keywords: tuple[str, ...]
    no_wait_day: bool
    thursday: bool
    basis: str
    verified: bool

    @property
    def same_day(self) -> bool:
        """True when the legal limit is the same day (0 working days)."""
        return self.working_days == 0

    @property
    def time_limit_days(self) -> int:
        return self.working_days

    @property
    def fee_vnd(self) -> int:
        """The fee of the smallest request (one page, one copy): what the list shows."""
        return compute_fee(self.fee_rule, pages=1, copies=1).amount_vnd

    @property
    def fee_text_vi(self) -> str:
        return describe_fee_vi(self.fee_rule)

    def quote(self, form: dict[str, Any]) -> FeeQuote:
        """The fee for a (validated) form: pages and copies from the fields the rule names."""
        pages = form.get(self.fee_rule.pages_field) if self.fee_rule.pages_field else None
        copies = form.get(self.fee_rule.copies_field) if self.fee_rule.copies_field else None
        if isinstance(self.fee_rule, PerPageFee) and pages is None:
            pages = 1
        try:
            return compute_fee(self.fee_rule, pages=pages, copies=copies)
        except FeeInputError as exc:
            name = {"pages": self.fee_rule.pages_field, "copies": self.fee_rule.copies_field}
            field = name.get(exc.field) or exc.field
            raise FormError(
                field, exc.rule, f"Số {'trang' if exc.field == 'pages' else 'bản'} không hợp lệ."
            ) from None

    def prefill(self, identity: dict[str, Any]) -> dict[str, Any]:
        """Form values the identity record gives (fields with ``from_card``).

        ``identity`` holds ``drivers.identity.Identity`` fields (dates as ``date``
        or ISO text, ``sex`` as M/F/X). A value that would not pass the field's
        own rule is left out: the citizen types it.
        """
        out: dict[str, Any] = {}
        for f in self.form:
            if f.from_card is None:
                continue
            value = identity.get(f.from_card)
            if value is None or value == "":
                continue
            if isinstance(value, date | datetime):
                value = value.isoformat()[:10]
            if f.from_card == "sex" and f.type == "choice":
                value = _SEX_VI.get(str(value), str(value))
            try:
                out[f.name] = _check(f, value)
            except FormError:
                continue
        return out

    def validate(self, form: dict[str, Any]) -> dict[str, Any]:
        """Return the cleaned form, or raise FormError naming the field."""
        clean: dict[str, Any] = {}
        known = {f.name for f in self.form}
        for name in form:
            if name not in known:
                raise FormError(name, "unknown field", f"Trường '{name}' không thuộc mẫu đơn này.")
        for f in self.form:
            value = form.get(f.name)
            if value is None or (isinstance(value, str) and not value.strip()):
                if f.required:
                    raise FormError(f.name, "required", f"Vui lòng nhập «{f.label}».")
                continue
            clean[f.name] = _check(f, value)
        return clean

    @classmethod
    def from_spec(cls, p: Any) -> Procedure:
        return cls(
            code=p.code,
            name=p.name,
            field=p.field,
            working_days=p.time_limit.working_days,
            extended_working_days=p.time_limit.extended_working_days,
            cutoff=(
                time.fromisoformat(p.time_limit.same_day_cutoff)
                if p.time_limit.same_day_cutoff
                else None
            ),
            fee_rule=p.fee,
            papers=tuple(p.papers),
            form=tuple(FormField.from_spec(f) for f in p.form),
            guidance=p.guidance,
            keywords=tuple(p.keywords),
            no_wait_day=p.no_wait_day,
            thursday=p.thursday,
            basis=p.basis,
            verified=p.verified,
        )


_PHONE_SPACES = re.compile(r"[ .()-]")


def _check(f: FormField, value: Any) -> Any:
    if f.type in ("text", "phone", "id_number"):
        if not isinstance(value, str):
            raise FormError(f.name, "expected text", f"«{f.label}» phải là chữ.")
        value = " ".join(value.split())
        if f.type == "phone":
            if not PHONE_RE.match(value):
                raise FormError(
                    f.name,
                    "expected a phone number",
                    f"«{f.label}» không phải số điện thoại hợp lệ (ví dụ 0912 345 678).",
                )
            return value
        if f.type == "id_number":
            value = value.replace(" ", "")
            if not ID_NUMBER_RE.match(value):
                raise FormError(
                    f.name,
                    "expected 12 digits (CCCD) or 9 digits (old CMND)",
                    f"«{f.label}» phải gồm 12 chữ số (CCCD) hoặc 9 chữ số (CMND).",
                )
            return value
        if f.max_len is not None and len(value) > f.max_len:
            raise FormError(
                f.name,
                f"longer than {f.max_len} characters",
                f"«{f.label}» dài quá {f.max_len} ký tự.",
            )
        return value
    if f.type == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise FormError(
                f.name, "expected a date YYYY-MM-DD", f"«{f.label}» không phải ngày hợp lệ."
            ) from None
    if f.type == "choice":
        if value not in f.choices:
            raise FormError(
                f.name,
                f"expected one of {list(f.choices)}",
                f"Vui lòng chọn «{f.label}» trong danh sách.",
            )
        return value
    if f.type == "bool":
        if not isinstance(value, bool):
            raise FormError(
                f.name, "expected true or false", f"Vui lòng chọn Có hoặc Không cho «{f.label}»."
            )
        return value
    if f.type == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise FormError(f.name, "expected a whole number", f"«{f.label}» phải là số.")
        if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
            raise FormError(
                f.name,
                f"must be between {f.min} and {f.max}",
                f"«{f.label}» phải từ {f.min} đến {f.max}.",
            )
        return value
    raise FormError(f.name, f"unknown field type {f.type!r}", "Mẫu đơn bị lỗi.")


@dataclass(frozen=True, kw_only=True)
class Catalogue:
    version: str
    procedures: dict[str, Procedure]
    document: CatalogueDocument | None = None

    def get(self, code: str) -> Procedure:
        try:
            return self.procedures[code]
        except KeyError:
            raise CitizenError(
                f"unknown procedure {code!r} (catalogue {self.version})",
                "Không tìm thấy thủ tục này. Vui lòng hỏi cán bộ tại quầy.",
            ) from None

    def listing(self) -> list[dict[str, Any]]:
        """What ``aps-agent catalogue --json`` prints: one object per procedure."""
        return [
            {
                "code": p.code,
                "name": p.name,
                "field": p.field,
                "time_limit_days": p.working_days,
                "fee_vnd": p.fee_vnd,
                "fee": {
                    **p.fee_rule.model_dump(mode="json", exclude_none=True),
                    "text_vi": p.fee_text_vi,
                },
                "no_wait_day": p.no_wait_day,
                "thursday": p.thursday,
                "verified": p.verified,
            }
            for p in self.procedures.values()
        ]


def catalogue_from_document(doc: CatalogueDocument) -> Catalogue:
    return Catalogue(
        version=doc.version,
        procedures={p.code: Procedure.from_spec(p) for p in doc.procedures},
        document=doc,
    )


def parse_catalogue(data: dict[str, Any]) -> Catalogue:
    """Validate (sync.catalogue) and build the domain object; CatalogueInvalid if bad."""
    return catalogue_from_document(parse_catalogue_document(data))


def bundled_document() -> dict[str, Any]:
    """The catalogue shipped with the agent, as JSON data."""
    text = resources.files("edge_agent").joinpath("data/catalogue.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@lru_cache(maxsize=1)
def bundled_catalogue() -> Catalogue:
    return parse_catalogue(bundled_document())


# -- the kiosk's active catalogue ----------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS catalogue_active (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version TEXT NOT NULL,
    body TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS catalogue_refusal (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version TEXT,
    error TEXT NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True, kw_only=True)
class ApplyResult:
    """What :meth:`CatalogueStore.apply` did: ``applied``, ``unchanged`` or ``refused``."""

    outcome: str
    version: str | None
    error: str | None = None


class CatalogueStore:
    """The kiosk's active catalogue, in its SQLite database (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, *, fallback: Catalogue | None = None) -> None:
        self.conn = conn
        self.fallback = fallback or bundled_catalogue()
        self._lock = threading.Lock()
        self._cached: Catalogue | None = None
        ensure_schema(conn)

    def apply(
        self, conn: sqlite3.Connection, body: Any, *, now: float | None = None
    ) -> ApplyResult:
        """Validate ``body`` and make it active, inside the caller's transaction.

        Never raises for a bad document: the refusal is recorded instead (see
        the module docstring). SQLite errors propagate (the caller rolls back).
        """
        at = clock.time() if now is None else now
        claimed = body.get("version") if isinstance(body, dict) else None
        claimed_text = claimed if isinstance(claimed, str) else None
        try:
            doc = parse_catalogue_document(body)
        except CatalogueInvalid as exc:
            return self._refuse(conn, claimed_text, str(exc), at)
        stored = _active_version(conn)
        if doc.version == stored:
            return ApplyResult(outcome="unchanged", version=doc.version)
        active = _newest(stored, self.fallback.version)
        if not is_newer(doc.version, active) and not (stored is None and doc.version == active):
            return self._refuse(
                conn,
                doc.version,
                f"catalogue version {doc.version} is not newer than the active {active}",
                at,
            )
        text = json.dumps(doc.to_json(), ensure_ascii=False, separators=(",", ":"))
        conn.execute(
            "INSERT INTO catalogue_active (id, version, body, applied_at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, body = excluded.body,"
            " applied_at = excluded.applied_at",
            (doc.version, text, at),
        )
        conn.execute("DELETE FROM catalogue_refusal")
        log.info("catalogue %s applied (was %s)", doc.version, active)
        return ApplyResult(outcome="applied", version=doc.version)

    def _refuse(
        self, conn: sqlite3.Connection, version: str | None, error: str, at: float
    ) -> ApplyResult:
        shown = version[:64] if version is not None else None
        error = bounded_reason(error)
        conn.execute(
            "INSERT INTO catalogue_refusal (id, version, error, at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
            " error = excluded.error, at = excluded.at",
            (shown, error, at),
        )
        log.warning("catalogue %s refused, keeping the active one: %s", shown, error)
        return ApplyResult(outcome="refused", version=shown, error=error)

    def current(self) -> Catalogue:
        """The active catalogue (the bundled one until central sends one)."""
        with self._lock:
            version = _active_version(self.conn)
            if version is None or _newest(version, self.fallback.version) != version:
                return self.fallback  # none yet, or the agent's release ships a newer one
            cached = self._cached
            if cached is not None and cached.version == version:
                return cached
            row = self.conn.execute("SELECT body FROM catalogue_active WHERE id = 1").fetchone()
            if row is None:  # deleted between the two reads
                return self.fallback
            try:
                cat = parse_catalogue(json.loads(row[0]))
            except (CatalogueInvalid, ValueError) as exc:
                # Only a newer agent release could have stored it: use the bundled copy.
                log.error(
                    "stored catalogue %s unreadable (%s): using the bundled one", version, exc
                )
                return self.fallback
            self._cached = cat
            return cat

    def catalogue_status(self) -> dict[str, Any]:
        """For the heartbeat: the active version and the last refusal, if any."""
        with self._lock:
            return read_status(self.conn, self.fallback)

    # -- the kiosk inbox's hooks (edge_agent/inbox.py) ----------------------------------

    def inbox_handler(self, conn: sqlite3.Connection, item: Any) -> None:
        """``Inbox.register("catalogue", store.inbox_handler)``: apply ``item.body``."""
        self.apply(conn, item.body)

    def install(self, inbox: Any) -> None:
        """Register with the kiosk's inbox: a validator that lets every catalogue item
        through to :meth:`inbox_handler`, which validates it fully and records a refusal.

        (A strict validator at the inbox would skip a bad document before the store saw
        it, and the refusal would never reach the heartbeat.)
        """
        inbox.register_validator(KIND, accept_for_store)
        inbox.register(KIND, self.inbox_handler)


KIND = "catalogue"


def accept_for_store(body: dict[str, Any]) -> None:
    """The inbox's validator for ``catalogue`` items: any object; the store judges it."""
    if not isinstance(body, dict):
        raise CatalogueInvalid("document", "expected a JSON object")


def read_status(conn: sqlite3.Connection, fallback: Catalogue | None = None) -> dict[str, Any]:
    """``{"version", "rejected_version", "error"}`` of a kiosk database (read-only is fine)."""
    bundled = (fallback or bundled_catalogue()).version
    try:
        version = _newest(_active_version(conn), bundled)
        row = conn.execute("SELECT version, error FROM catalogue_refusal WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # no tables yet: nothing received
        return {"version": bundled, "rejected_version": None, "error": None}
    return {
        "version": version,
        "rejected_version": None if row is None else row[0],
        "error": None if row is None else row[1],
    }


def status_of_database(database: Path) -> dict[str, Any]:
    """:func:`read_status` over a read-only connection of its own (the heartbeat thread)."""
    if not database.exists():
        return read_status_fallback()
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2)
    try:
        return read_status(conn)
    finally:
        conn.close()


def read_status_fallback() -> dict[str, Any]:
    return {"version": bundled_catalogue().version, "rejected_version": None, "error": None}


def ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _newest(stored: str | None, bundled: str) -> str:
    if stored is None:
        return bundled
    try:
        return bundled if is_newer(bundled, stored) else stored
    except CatalogueInvalid:
        return bundled


def _active_version(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT version FROM catalogue_active WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


def read_active(conn: sqlite3.Connection) -> Catalogue | None:
    """The stored active catalogue of a (possibly read-only) connection, or None.

    None when the database has no catalogue table or row yet.
    """
    try:
        row = conn.execute("SELECT body FROM catalogue_active WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # no such table: an agent that never applied one
        return None
    if row is None:
        return None
    return parse_catalogue(json.loads(row[0]))
