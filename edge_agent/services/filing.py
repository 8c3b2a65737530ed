"""Filing a dossier from the screen: prefill, check, fee, sign, commit, then the receipt.

Theory of operation
-------------------
Three calls, as the screen goes:

1. :meth:`FilingService.prefill` - what the card gave (name, ID number, date
   of birth, address) and what the citizen still has to type (phone, the
   procedure's form fields), with the fee rule.
2. :meth:`FilingService.prepare` - the applicant (from the session's card, or
   typed: ``identity_source`` "typed") and the form are normalised and checked
   (Vietnamese messages naming the field, nothing written), the fee computed
   (:func:`edge_agent.fees.compute_fee`) and the hash the citizen signs
   (:func:`edge_agent.signature.document_sha256`). The result,
   :class:`PreparedFiling`, is immutable: what is signed is what is filed.
3. :meth:`FilingService.file` - with the signature (handwritten strokes, or a
   :class:`edge_agent.signature.RemoteSignatureResult`) the dossier is
   committed (dossier row, outbox record, signature attachments and a
   ``filing_confirmations`` row, one transaction, ``synchronous=FULL``); only
   then is the receipt printed. Nothing is promised before the commit.

Confirmation. A filing can be committed and then lost to a crash before the
citizen saw its code. ``filing_confirmations`` records when the code was
SHOWN (:meth:`confirm_shown`, called by the screen once the code is on it)
and when the slip was PRINTED. :meth:`last_unconfirmed` gives the newest
filing never shown (the kiosk shows it after a restart). When the same
citizen (same ID number) files the same procedure again while an earlier
filing of theirs is unconfirmed, the new dossier carries
``unconfirmed_before`` = the earlier code, for central to flag as a likely
duplicate, and the earlier row is marked superseded. The citizen is matched
by a salted hash of the ID number (the kiosk's stream id is the salt), never
by the number itself.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from drivers.identity import Identity, mask_id
from drivers.printer import ReceiptPrinter
from edge_agent import CitizenError
from edge_agent.catalogue import Catalogue
from edge_agent.config import AgentConfig
from edge_agent.dossiers import APPLICANT_LABELS, Applicant, DossierDesk, Filed
from edge_agent.fees import compute_fee
from edge_agent.receipts import (
    SCREEN_NOT_PRINTED,
    ReceiptOutcome,
    build_receipt,
    print_after_filing,
)
from edge_agent.session import CitizenSession, IdentitySource
from edge_agent.signature import (
    HandwrittenSignature,
    RemoteSignatureResult,
    Signature,
    document_sha256,
)
from sync.attachments import AttachmentIn
from sync.outbox import Outbox, Transaction

log = logging.getLogger("aps.filing")

SCHEMA = """
CREATE TABLE IF NOT EXISTS filing_confirmations (
    code TEXT PRIMARY KEY,
    record_id TEXT NOT NULL,
    procedure TEXT NOT NULL,
    applicant_key TEXT NOT NULL,
    applicant_name TEXT NOT NULL,
    filed_at TEXT NOT NULL,
    shown_at TEXT,
    printed_at TEXT,
    print_state TEXT,
    superseded_by TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS filing_confirmations_open
    ON filing_confirmations (applicant_key, procedure) WHERE shown_at IS NULL;
-- Invariant 8: goes with the dossier's record when the outbox purges it.
CREATE TRIGGER IF NOT EXISTS filing_confirmations_purge AFTER DELETE ON outbox
WHEN old.kind = 'dossier' BEGIN
    DELETE FROM filing_confirmations WHERE record_id = old.id;
END;
"""

SIGNATURE_STROKES_NAME = "chu-ky.json"
SIGNATURE_IMAGE_NAME = "chu-ky.png"


@dataclass(frozen=True, kw_only=True)
class PreparedFiling:
    """A checked filing waiting for the citizen's signature (nothing written yet)."""

    procedure: str
    procedure_name: str
    procedure_version: str
    applicant: Applicant
    identity_source: IdentitySource
    form: dict[str, Any]
    fee: dict[str, Any]
    document_sha256: str

    def to_json_dict(self) -> dict[str, Any]:
        """For the screen: the ID number masked."""
        return {
            "procedure": self.procedure,
            "procedure_name": self.procedure_name,
            "procedure_version": self.procedure_version,
            "applicant": {
                "full_name": self.applicant.full_name,
                "id_masked": mask_id(self.applicant.id_number),
                "date_of_birth": self.applicant.date_of_birth,
                "phone": self.applicant.phone,
                "address": self.applicant.address,
            },
            "identity_source": self.identity_source,
            "form": self.form,
            "fee": self.fee,
            "document_sha256": self.document_sha256,
        }


@dataclass(frozen=True, kw_only=True)
class FilingResult:
    """A committed filing and what became of its slip."""

    filed: Filed
    receipt: ReceiptOutcome
    #: The slip's VietQR payload (EMVCo) for the fee, or None (no fee, no account set).
    payment_qr: str | None = None
    #: Staff were called to hand-write or reprint the slip (the printer failed).
    staff_called: bool = False

    @property
    def code(self) -> str:
        return self.filed.code

    def to_json_dict(self) -> dict[str, Any]:
        f = self.filed
        return {
            "code": f.code,
            "procedure": f.procedure,
            "procedure_name": f.procedure_name,
            "filed_at": f.filed_at.isoformat(timespec="seconds"),
            "due": None if f.same_day else f.due.isoformat(timespec="minutes"),
            "same_day": f.same_day,
            "fee": f.fee,
            "fee_vnd": f.fee_vnd,
            "signed": f.signature is not None,
            "unconfirmed_before": f.unconfirmed_before,
            "printed": self.receipt.printed,
            "reprintable": self.receipt.reprintable,
            "screen_text": self.receipt.screen_text,
            "staff_called": self.staff_called,
            "payment": None
            if self.payment_qr is None
            else {"amount_vnd": f.fee_vnd, "vietqr": self.payment_qr},
        }


@dataclass(frozen=True, kw_only=True)
class UnconfirmedFiling:
    """A filing committed but never confirmed as shown to its citizen."""

    code: str
    procedure: str
    applicant_name: str
    filed_at: str
    printed: bool

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "procedure": self.procedure,
            "applicant_name": self.applicant_name,
            "filed_at": self.filed_at,
            "printed": self.printed,
        }


#: The applicant fields a card can give; the citizen types the rest.
CARD_FIELDS = ("full_name", "id_number", "date_of_birth", "address")


def applicant_from_identity(identity: Identity, *, phone: str | None = None) -> Applicant:
    return Applicant(
        full_name=identity.full_name,
        id_number=identity.id_number,
        date_of_birth=identity.date_of_birth.isoformat(),
        address=identity.address,
        phone=phone,
    )


@dataclass
class FilingService:
    """Filing at this kiosk; thread-safe (the outbox is the one writer)."""

    outbox: Outbox
    desk: DossierDesk
    cfg: AgentConfig
    session: CitizenSession
    catalogue: Callable[[], Catalogue]
    printer: Callable[[], ReceiptPrinter | None]
    tz: tzinfo
    now: Callable[[], datetime] | None = None
    #: Told of every slip printed or not; True: staff were called (``PrinterHelp``).
    after_print: Callable[[ReceiptOutcome], bool] | None = None
    _salt: str = field(init=False, default="")
    _print_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        with self.outbox.lock:
            self.outbox.conn.executescript(SCHEMA)
        self._salt = self.outbox.stream

    # -- 1. prefill ------------------------------------------------------------------
    def prefill(self, procedure_code: str) -> dict[str, Any]:
        """What the card gives and what is left to type, for ``procedure_code``."""
        self.session.touch()
        proc = self.catalogue().get(procedure_code)
        current = self.session.identity()
        applicant: dict[str, Any] = {}
        source: str | None = None
        if current is not None:
            identity, source = current
            a = applicant_from_identity(identity)
            applicant = {
                "full_name": a.full_name,
                "id_masked": mask_id(a.id_number),
                "date_of_birth": a.date_of_birth,
                "address": a.address,
            }
        given = {k for k, v in applicant.items() if v}
        to_type = [
            {
                "field": f"applicant.{name}",
                "label": APPLICANT_LABELS[name],
                "required": name in ("full_name", "id_number"),
            }
            for name in CARD_FIELDS
            if name not in given and not (name == "id_number" and "id_masked" in given)
        ]
        to_type.append(
            {"field": "applicant.phone", "label": APPLICANT_LABELS["phone"], "required": False}
        )
        to_type += [
            {
                "field": f"form.{f.name}",
                "label": f.label,
                "required": f.required,
                "type": f.type,
                "choices": list(f.choices),
                "max_len": f.max_len,
                "min": f.min,
                "max": f.max,
            }
            for f in proc.form
        ]
        return {
            "procedure": proc.code,
            "procedure_name": proc.name,
            "papers": list(proc.papers),
            "identity_source": source,
            "applicant": applicant,
            "to_type": to_type,
        }

    # -- 2. prepare --------------------------------------------------------------------
    def prepare(
        self,
        procedure_code: str,
        form: dict[str, Any],
        *,
        phone: str | None = None,
        address: str | None = None,
        applicant: Applicant | None = None,
    ) -> PreparedFiling:
        """Check everything, compute the fee and the hash to sign; writes nothing.

        The applicant is the session's card identity plus what the card cannot
        give (``phone``; ``address`` when the card has none, as the MRZ), or,
        with no card read, ``applicant`` as typed (what the card gives always
        wins over typing). :class:`edge_agent.CitizenError`
        (a Vietnamese message naming the field) when something is wrong.
        """
        self.session.touch()
        catalogue = self.catalogue()
        proc = catalogue.get(procedure_code)
        current = self.session.identity()
        source: IdentitySource
        if current is not None:
            identity, source = current
            who = applicant_from_identity(identity, phone=phone)
            if who.address is None and address is not None:
                who = Applicant(**{**_applicant_dict(who), "address": address})
        elif applicant is not None:
            who, source = applicant, "typed"
            extra = {k: v for k, v in (("phone", phone), ("address", address)) if v is not None}
            if extra:
                who = Applicant(**{**_applicant_dict(who), **extra})
        else:
            raise CitizenError(
                "applicant: no card read and no details typed",
                "Xin mời Ông/Bà quét mã QR trên thẻ căn cước hoặc nhập họ tên, "
                "số định danh cá nhân.",
            )
        who = who.normalized()
        clean = self.desk.check(proc, who, form)
        fee = compute_fee(proc, clean)
        digest = document_sha256(
            agency=self.desk.agency,
            procedure=proc.code,
            procedure_version=catalogue.version,
            applicant=_applicant_dict(who),
            form=clean,
            fee=fee,
        )
        return PreparedFiling(
            procedure=proc.code,
            procedure_name=proc.name,
            procedure_version=catalogue.version,
            applicant=who,
            identity_source=source,
            form=clean,
            fee=fee,
            document_sha256=digest,
        )

    # -- 3. file -------------------------------------------------------------------------
    def file(
        self,
        prepared: PreparedFiling,
        *,
        signature: Signature | None = None,
        attachments: Sequence[AttachmentIn] = (),
        now: datetime | None = None,
    ) -> FilingResult:
        """Commit the dossier durably, then print its slip; see the module docstring."""
        self.session.touch()
        sig_body: dict[str, Any] | None = None
        sig_files: list[tuple[str, AttachmentIn]] = []
        received = now or (self.now() if self.now is not None else None)
        if isinstance(signature, HandwrittenSignature):
            sig_body = {
                "method": "handwritten",
                "document_sha256": prepared.document_sha256,
                "signed_at": (received or datetime.now(self.tz)).isoformat(timespec="seconds"),
            }
            sig_files = [
                (
                    "strokes",
                    AttachmentIn(
                        name=SIGNATURE_STROKES_NAME,
                        mime="application/json",
                        data=signature.strokes_json(),
                    ),
                ),
                (
                    "image",
                    AttachmentIn(
                        name=SIGNATURE_IMAGE_NAME, mime="image/png", data=signature.render_png()
                    ),
                ),
            ]
        elif isinstance(signature, RemoteSignatureResult):
            sig_body = signature.signature_body(prepared.document_sha256)
        key = self._applicant_key(prepared.applicant.id_number)
        earlier = self._open_unconfirmed(key, prepared.procedure)

        def own_rows(tx: Transaction, code: str, record_id: str) -> None:
            tx.conn.execute(
                "INSERT INTO filing_confirmations (code, record_id, procedure, applicant_key,"
                " applicant_name, filed_at) VALUES (?, ?, ?, ?, ?, datetime('now'))",
                (code, record_id, prepared.procedure, key, prepared.applicant.full_name),
            )
            if earlier is not None:
                tx.conn.execute(
                    "UPDATE filing_confirmations SET superseded_by = ? WHERE code = ?",
                    (code, earlier),
                )

        filed = self.desk.file(
            prepared.procedure,
            prepared.applicant,
            prepared.form,
            now=received,
            attachments=attachments,
            fee=prepared.fee,
            signature=sig_body,
            signature_files=sig_files,
            identity_source=prepared.identity_source,
            unconfirmed_before=earlier,
            in_transaction=own_rows,
            expected_version=prepared.procedure_version,
        )
        if earlier is not None:
            log.warning(
                "dossier %s filed by the citizen of the unconfirmed %s (same procedure)",
                filed.code,
                earlier,
            )
        outcome, payment_qr = self._print(filed)
        staff_called = False
        if self.after_print is not None:
            try:
                staff_called = self.after_print(outcome)
            except Exception:  # the dossier is filed whatever happens to the call for help
                log.exception("after-print hook failed for %s", filed.code)
        return FilingResult(
            filed=filed, receipt=outcome, payment_qr=payment_qr, staff_called=staff_called
        )

    def _print(self, filed: Filed) -> tuple[ReceiptOutcome, str | None]:
        """Print the slip; also gives its payment code (the same VietQR, for the screen)."""
        printer = self.printer()
        try:
            data = build_receipt(
                filed,
                self.cfg.kiosk,
                self.cfg.payment,
                paper_width_mm=self.cfg.devices.paper_width_mm,
            )
        except Exception as exc:  # a config the layout refuses: the dossier is safe
            log.error("receipt %s cannot be built: %s: %s", filed.code, type(exc).__name__, exc)
            outcome = ReceiptOutcome(
                dossier_code=filed.code,
                printed=False,
                reprintable=False,
                screen_text=SCREEN_NOT_PRINTED.format(code=filed.code),
                printer_state=None,
            )
            payment_qr = None
        else:
            payment_qr = data.payment
            with self._print_lock:  # one slip at a time out of one printer
                outcome = print_after_filing(filed, data, printer)
        self._local_write(
            "UPDATE filing_confirmations SET printed_at = CASE WHEN ? THEN datetime('now') END,"
            " print_state = ? WHERE code = ?",
            (outcome.printed, outcome.printer_state or "none", filed.code),
        )
        return outcome, payment_qr

    # -- confirmation --------------------------------------------------------------------
    def confirm_shown(self, code: str) -> bool:
        """The screen showed ``code`` to its citizen; False if no such filing here."""
        changed = self._local_write(
            "UPDATE filing_confirmations SET shown_at = datetime('now')"
            " WHERE code = ? AND shown_at IS NULL",
            (code,),
        )
        return changed > 0

    def last_unconfirmed(self) -> UnconfirmedFiling | None:
        """The newest filing never shown and not superseded (show it after a restart)."""
        with self.outbox.reading() as conn:
            row = conn.execute(
                "SELECT code, procedure, applicant_name, filed_at, printed_at"
                " FROM filing_confirmations WHERE shown_at IS NULL AND superseded_by IS NULL"
                " ORDER BY filed_at DESC, code DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return UnconfirmedFiling(
            code=row[0],
            procedure=row[1],
            applicant_name=row[2],
            filed_at=row[3],
            printed=row[4] is not None,
        )

    def filed_here(self, code: str) -> bool:
        """True if this kiosk filed ``code`` (and has not purged it yet)."""
        with self.outbox.reading() as conn:
            row = conn.execute(
                "SELECT 1 FROM filing_confirmations WHERE code = ?", (code,)
            ).fetchone()
        return row is not None

    def reprint(self, code: str) -> bool:
        """Print a spooled slip again (a citizen who lost theirs, a jam); True if printed."""
        printer = self.printer()
        if printer is None:
            return False
        try:
            with self._print_lock:
                printer.reprint(code)
        except Exception as exc:
            log.warning("reprint %s failed: %s", code, exc)
            return False
        self._local_write(
            "UPDATE filing_confirmations SET printed_at = datetime('now'), print_state = 'ok'"
            " WHERE code = ?",
            (code,),
        )
        return True

    # -- helpers -------------------------------------------------------------------------
    def _applicant_key(self, id_number: str) -> str:
        return hashlib.sha256(f"{self._salt}:{id_number}".encode()).hexdigest()

    def _open_unconfirmed(self, key: str, procedure: str) -> str | None:
        with self.outbox.reading() as conn:
            row = conn.execute(
                "SELECT code FROM filing_confirmations WHERE applicant_key = ? AND procedure = ?"
                " AND shown_at IS NULL AND superseded_by IS NULL"
                " ORDER BY filed_at DESC, code DESC LIMIT 1",
                (key, procedure),
            ).fetchone()
        return None if row is None else str(row[0])

    def _local_write(self, sql: str, params: tuple[Any, ...]) -> int:
        """A write to the kiosk's own table (no record); logged, never raised."""
        try:
            with self.outbox.local_write() as conn:
                return conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            log.error("filing_confirmations not updated (%s): %s", sql.split()[0], exc)
            return 0


def _applicant_dict(a: Applicant) -> dict[str, Any]:
    return {
        "full_name": a.full_name,
        "id_number": a.id_number,
        "date_of_birth": a.date_of_birth,
        "phone": a.phone,
        "address": a.address,
    }
