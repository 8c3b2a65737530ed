"""Filing a dossier: validate, number, commit durably, then (only then) promise.

``DossierDesk.file()`` validates the form against the procedure's schema,
gives the dossier its national code (``<agency>-<YYMMDD>-<slot*1000+n>``,
docs/protocol.md), computes the due date, and commits the kiosk's dossier row
and the outbox record in ONE transaction with ``synchronous=FULL``. It returns
only after that commit, so whatever it returns (the code on screen, the
receipt) is backed by a durable record (invariant 1).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from drivers.identity import mask_id
from edge_agent import CitizenError
from edge_agent.catalogue import Catalogue
from edge_agent.due_date import WorkCalendar, compute_due
from sync.attachments import AttachmentIn, AttachmentTooLarge, add_chunks, describe
from sync.outbox import Outbox, OutboxFull, RecordTooLarge

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


class DossierDesk:
    def __init__(
        self,
        outbox: Outbox,
        catalogue: Catalogue,
        calendar: WorkCalendar,
        *,
        agency: str,
        slot: int,
        tz: tzinfo | None = None,
    ) -> None:
        self.tz = tz
        self.outbox = outbox
        self.catalogue = catalogue
        self.calendar = calendar
        self.agency = agency
        self.slot = slot
        outbox.conn.executescript(SCHEMA)

    def file(
        self,
        procedure_code: str,
        applicant: Applicant,
        form: dict[str, Any],
        *,
        now: datetime | None = None,
        attachments: Sequence[AttachmentIn] = (),
    ) -> Filed:
        proc = self.catalogue.get(procedure_code)
        clean = proc.validate(form)
        if not applicant.full_name.strip():
            raise CitizenError("applicant.full_name: empty", "Thiếu họ tên người nộp.")
        received = now or datetime.now(self.tz).astimezone(self.tz)
        due = compute_due(
            received, same_day=proc.same_day, working_days=proc.working_days, cal=self.calendar
        )
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
                body = {
                    "code": code,
                    "procedure": proc.code,
                    "procedure_version": self.catalogue.version,
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
                    "fee_vnd": proc.fee_vnd,
                    "received_at": received.isoformat(timespec="seconds"),
                    "due": due.at.isoformat(timespec="minutes"),
                    "due_rule": due.rule,
                    "attachments": [meta for meta, _ in described],
                }
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
                        proc.fee_vnd,
                    ),
                )
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
            fee_vnd=proc.fee_vnd,
        )
