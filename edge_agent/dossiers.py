"""Filing a dossier: validate, number, commit durably, then (only then) promise.

``DossierDesk.file()`` normalises what the citizen or the card gave (NFC,
whitespace), validates the form against the procedure's schema, gives the
dossier its national code (``<agency>-<YYMMDD>-<slot*1000+n>``,
docs/protocol.md), computes the due date, and commits the kiosk's dossier row
and the outbox record in ONE transaction with ``synchronous=FULL``. It returns
only after that commit, so whatever it returns (the code on screen, the
receipt) is backed by a durable record (invariant 1). The outbox holds the
body to the shared record schema (sync/schemas.py) before queueing it, so a
dossier central would refuse (a 250-character name from a card QR, an ID
number that is not 9 or 12 digits, a bidi override) is refused here, with a
Vietnamese message naming the field, before anything is printed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from drivers.identity import mask_id
from edge_agent import CitizenError
from edge_agent.catalogue import Catalogue, Procedure
from edge_agent.due_date import WorkCalendar, due_for
from sync.attachments import AttachmentIn, AttachmentTooLarge, add_chunks, describe
from sync.outbox import Outbox, OutboxFull, RecordTooLarge, Transaction
from sync.schemas import FieldProblem, SchemaError, check_body, normalize_text

log = logging.getLogger("aps.dossiers")

MAX_PER_DAY = 999

SCHEMA = """
CREATE TABLE IF NOT EXISTS dossiers (
    code TEXT PRIMARY KEY,
    record_id TEXT NOT NULL,
    procedure TEXT NOT NULL,
    applicant_name TEXT NOT NULL,
    id_masked TEXT NOT NULL,
    filed_at TEXT NOT NULL,
    due TEXT NOT NULL,
    fee_vnd INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'filed'
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily_counter (day TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
-- Invariant 8: when the outbox purges a synced dossier record, the kiosk's own
-- row about it (name, masked id) goes with it.
CREATE TRIGGER IF NOT EXISTS dossiers_purge AFTER DELETE ON outbox
WHEN old.kind = 'dossier' BEGIN
    DELETE FROM dossiers
    WHERE code = json_extract(CAST(old.payload AS TEXT), '$.body.code') AND record_id = old.id;
END;
"""


@dataclass(frozen=True, kw_only=True)
class Applicant:
    full_name: str
    id_number: str
    date_of_birth: str | None = None
    phone: str | None = None
    address: str | None = None

    def __repr__(self) -> str:
        return f"Applicant(full_name={self.full_name!r}, id_number={mask_id(self.id_number)!r})"

    def normalized(self) -> Applicant:
        """NFC, whitespace collapsed and trimmed; an empty optional field is left out.

        What the card or the citizen gave is not otherwise changed: control and
        format characters stay, for the schema to refuse with a clear message.
        """

        def opt(value: str | None) -> str | None:
            return None if value is None else (normalize_text(value) or None)

        return Applicant(
            full_name=normalize_text(self.full_name),
            id_number="".join(normalize_text(self.id_number).split()),
            date_of_birth=opt(self.date_of_birth),
            phone=opt(self.phone),
            address=opt(self.address),
        )


class DossierRefused(CitizenError):
    """A dossier breaks the shared record schema; ``field`` is its dotted path."""

    def __init__(self, problem: FieldProblem, message_vi: str) -> None:
        super().__init__(problem.describe(root=""), message_vi)
        self.field = problem.where(root="")
        self.problem = problem


APPLICANT_LABELS = {
    "full_name": "Họ và tên",
    "id_number": "Số định danh cá nhân",
    "date_of_birth": "Ngày sinh",
    "phone": "Số điện thoại",
    "address": "Địa chỉ",
}
TO_COUNTER = " Xin mời Ông/Bà kiểm tra lại hoặc đến quầy Một cửa để được hỗ trợ."


def _label(problem: FieldProblem, proc: Procedure, kind: str) -> str:
    path = problem.path
    if kind == "chunk":
        return "Ảnh giấy tờ"
    if len(path) >= 2 and path[0] == "applicant" and isinstance(path[1], str):
        return APPLICANT_LABELS.get(path[1], "Thông tin người nộp")
    if len(path) >= 2 and path[0] == "form":
        labels = {f.name: f.label for f in proc.form}
        return labels.get(str(path[1]), "Thông tin trong mẫu đơn")
    if path and path[0] == "attachments":
        return "Ảnh giấy tờ"
    if path and path[0] == "signature":
        return "Chữ ký"
    if path and path[0] in ("fee", "fee_vnd"):
        return "Lệ phí"
    return "Hồ sơ"


def refusal_message_vi(problem: FieldProblem, proc: Procedure, kind: str = "dossier") -> str:
    """The citizen-facing sentence for a schema failure: the field in plain words, the rule."""
    label = _label(problem, proc, kind)
    code, limit = problem.code, problem.limit
    if code in ("missing", "too-short"):
        text = f"Vui lòng nhập «{label}»."
    elif problem.path == ("applicant", "id_number"):
        text = f"«{label}» phải gồm 12 chữ số (CCCD) hoặc 9 chữ số (CMND)."
    elif code == "too-long" and limit is not None:
        text = f"«{label}» dài quá {limit} ký tự."
    elif problem.path == ("applicant", "phone"):
        text = f"«{label}» chỉ gồm chữ số, có thể bắt đầu bằng dấu +."
    elif code in ("control-char", "not-nfc"):
        text = f"«{label}» có ký tự ẩn hoặc ký tự điều khiển không hợp lệ."
    elif code in ("date", "datetime"):
        text = f"«{label}» không phải ngày hợp lệ."
    elif code == "too-many" and limit is not None:
        text = f"«{label}» có quá {limit} mục."
    else:
        text = f"«{label}» không hợp lệ."
    return text + TO_COUNTER


@dataclass(frozen=True, kw_only=True)
class Filed:
    code: str
    record_id: str
    seq: int
    procedure: str
    procedure_name: str
    applicant: Applicant
    filed_at: datetime
    due: datetime
    same_day: bool
    due_rule: str
    fee_vnd: int
    due_reason_vi: str = ""
    fee_explanation_vi: str = ""
    #: The dossier's ``fee`` (FeeDetail), when filing computed one.
    fee: dict[str, Any] | None = None
    #: The dossier's ``signature``, when the citizen signed.
    signature: dict[str, Any] | None = None
    unconfirmed_before: str | None = None


#: A file that becomes part of the signature: (role, file); role "strokes" or "image"
#: sets ``signature["<role>_att"]`` to the attachment id given to the file.
SignatureFile = tuple[str, AttachmentIn]


class DossierDesk:
    def __init__(
        self,
        outbox: Outbox,
        catalogue: Catalogue | Callable[[], Catalogue],
        calendar: WorkCalendar,
        *,
        agency: str,
        slot: int,
        tz: tzinfo | None = None,
    ) -> None:
        self.tz = tz
        self.outbox = outbox
        self._catalogue = catalogue
        self.calendar = calendar
        self.agency = agency
        self.slot = slot
        with outbox.lock:
            outbox.conn.executescript(SCHEMA)

    @property
    def catalogue(self) -> Catalogue:
        """The catalogue in force (a provider is asked at each filing: it can be swapped)."""
        c = self._catalogue
        return c if isinstance(c, Catalogue) else c()

    def check(self, proc: Procedure, applicant: Applicant, form: dict[str, Any]) -> dict[str, Any]:
        """Check a filing without writing anything; returns the cleaned form.

        The same checks as :meth:`file` (the form against the procedure, the
        applicant against the shared record schema), so the citizen learns of a
        problem before signing. Raises :class:`edge_agent.CitizenError`.
        """
        applicant = applicant.normalized()
        clean = proc.validate(
            {k: normalize_text(v) if isinstance(v, str) else v for k, v in form.items()}
        )
        if not applicant.full_name:
            raise CitizenError("applicant.full_name: empty", "Thiếu họ tên người nộp.")
        probe = {
            "code": f"{self.agency}-000000-0000",
            "procedure": proc.code,
            "form": clean,
            "applicant": {k: v for k, v in dataclasses.asdict(applicant).items() if v is not None},
        }
        try:
            check_body("dossier", probe)
        except SchemaError as exc:
            raise DossierRefused(exc.first, refusal_message_vi(exc.first, proc)) from exc
        return clean

    def file(
        self,
        procedure_code: str,
        applicant: Applicant,
        form: dict[str, Any],
        *,
        now: datetime | None = None,
        attachments: Sequence[AttachmentIn] = (),
        fee: dict[str, Any] | None = None,
        signature: dict[str, Any] | None = None,
        signature_files: Sequence[SignatureFile] = (),
        identity_source: str | None = None,
        unconfirmed_before: str | None = None,
        in_transaction: Callable[[Transaction, str, str], None] | None = None,
        expected_version: str | None = None,
    ) -> Filed:
        """File a dossier; returns only once it is committed durably.

        ``fee`` (FeeDetail) sets ``fee_vnd`` to its amount; without it the
        procedure's flat fee is used. ``signature`` goes into the body, with
        ``<role>_att`` set for each of ``signature_files`` (stored as
        attachments after ``attachments``). ``in_transaction(tx, code,
        record_id)`` writes the caller's own rows in the same transaction.
        ``expected_version``: the catalogue version the citizen saw and signed;
        refused if the catalogue changed since.
        """
        catalogue = self.catalogue
        if expected_version is not None and catalogue.version != expected_version:
            raise CitizenError(
                f"catalogue changed from {expected_version} to {catalogue.version} since the "
                "filing was prepared",
                "Danh mục thủ tục vừa được cập nhật. Xin mời Ông/Bà kiểm tra lại hồ sơ và ký lại.",
            )
        proc = catalogue.get(procedure_code)
        # The data boundary: NFC for everything the citizen or the card gave.
        applicant = applicant.normalized()
        clean = proc.validate(
            {k: normalize_text(v) if isinstance(v, str) else v for k, v in form.items()}
        )
        attachments = [
            dataclasses.replace(a, name=normalize_text(a.name), mime=a.mime.strip())
            for a in [*attachments, *(f for _, f in signature_files)]
        ]
        # The fee comes from the procedure's rule and the form (pages, copies); a fee the
        # caller showed the citizen must be the one filed.
        quote = proc.quote(clean)
        if fee is not None and int(fee["amount_vnd"]) != quote.amount_vnd:
            raise CitizenError(
                f"fee shown ({fee['amount_vnd']}) differs from the catalogue's "
                f"({quote.amount_vnd}) for {proc.code}",
                "Lệ phí vừa được cập nhật. Xin mời Ông/Bà kiểm tra lại hồ sơ và ký lại.",
            )
        fee_detail = quote.detail()
        fee_vnd = quote.amount_vnd
        if not applicant.full_name:
            raise CitizenError("applicant.full_name: empty", "Thiếu họ tên người nộp.")
        received = now or datetime.now(self.tz).astimezone(self.tz)
        due = due_for(received, proc, self.calendar)
        day = received.strftime("%y%m%d")
        try:
            described = describe(list(attachments))
        except AttachmentTooLarge as exc:
            raise CitizenError(
                str(exc), "Ảnh giấy tờ quá lớn. Xin mời Ông/Bà chụp ít trang hơn hoặc đến quầy."
            ) from exc
        try:
            with self.outbox.transaction() as tx:
                n = tx.conn.execute(
                    "INSERT INTO daily_counter (day, n) VALUES (?, 1)"
                    " ON CONFLICT (day) DO UPDATE SET n = n + 1 RETURNING n",
                    (day,),
                ).fetchone()[0]
                if n > MAX_PER_DAY:
                    raise CitizenError(
                        f"daily limit of {MAX_PER_DAY} dossiers for slot {self.slot} reached",
                        "Máy đã nhận đủ số hồ sơ tối đa trong ngày. "
                        "Xin mời Ông/Bà đến quầy Một cửa để được hỗ trợ.",
                    )
                code = f"{self.agency}-{day}-{self.slot * 1000 + n:04d}"
                body: dict[str, Any] = {
                    "code": code,
                    "procedure": proc.code,
                    "procedure_version": catalogue.version,
                    "form": clean,
                    "applicant": {
                        k: v
                        for k, v in {
                            "full_name": applicant.full_name,
                            "id_number": applicant.id_number,
                            "date_of_birth": applicant.date_of_birth,
                            "phone": applicant.phone,
                            "address": applicant.address,
                        }.items()
                        if v is not None
                    },
                    "fee_vnd": fee_vnd,
                    "fee": fee_detail,
                    "received_at": received.isoformat(timespec="seconds"),
                    "due": due.at.isoformat(timespec="minutes"),
                    "due_rule": due.rule,
                    "attachments": [meta for meta, _ in described],
                }
                if identity_source is not None:
                    body["identity_source"] = identity_source
                if unconfirmed_before is not None:
                    body["unconfirmed_before"] = unconfirmed_before
                if signature is not None:
                    signature = dict(signature)
                    first_sig = len(described) - len(signature_files)
                    for (role, _), (meta, _) in zip(
                        signature_files, described[first_sig:], strict=True
                    ):
                        signature[f"{role}_att"] = meta["att"]
                    body["signature"] = signature
                record = tx.add("dossier", body)
                for meta, f in described:
                    add_chunks(tx, meta, f.data)
                tx.conn.execute(
                    "INSERT INTO dossiers (code, record_id, procedure, applicant_name, id_masked,"
                    " filed_at, due, fee_vnd) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        code,
                        record.id,
                        proc.code,
                        applicant.full_name,
                        mask_id(applicant.id_number),
                        body["received_at"],
                        body["due"],
                        fee_vnd,
                    ),
                )
                if in_transaction is not None:
                    in_transaction(tx, code, record.id)
        except OutboxFull as exc:
            log.error("filing refused: %s", exc)
            raise CitizenError(
                str(exc),
                "Máy tạm thời không nhận thêm hồ sơ (bộ nhớ đầy). "
                "Xin mời Ông/Bà đến quầy Một cửa; hồ sơ đã nộp trước đó vẫn an toàn.",
            ) from exc
        except RecordTooLarge as exc:
            raise CitizenError(
                str(exc), "Hồ sơ quá lớn để gửi từ máy. Xin mời Ông/Bà đến quầy Một cửa."
            ) from exc
        except SchemaError as exc:
            # Nothing was committed (the transaction rolled back): nothing promised.
            log.warning("filing refused: %s", exc.first.describe(root=""))
            raise DossierRefused(exc.first, refusal_message_vi(exc.first, proc, exc.kind)) from exc
        log.info(
            "dossier %s filed (procedure %s, applicant id %s, seq %d)",
            code,
            proc.code,
            mask_id(applicant.id_number),
            record.seq,
        )
        return Filed(
            code=code,
            record_id=record.id,
            seq=record.seq,
            procedure=proc.code,
            procedure_name=proc.name,
            applicant=applicant,
            filed_at=received,
            due=due.at,
            same_day=due.same_day,
            due_rule=due.rule,
            fee_vnd=fee_vnd,
            fee=fee_detail,
            due_reason_vi=due.reason_vi,
            fee_explanation_vi=quote.explanation_vi,
            signature=body.get("signature"),
            unconfirmed_before=unconfirmed_before,
        )
