"""Records for the back-office tests, put into a real central database the way the collector does.

Bodies are built like the kiosk builds them and go through
``central.collector.process_batch`` (classify, schema check, store), so the
projections read exactly what central stores.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from central.backoffice_db import PgTarget, Target
from central.store import SQLiteStore
from central.store_pg import PostgresStore
from sync.envelope import Record, records_topic
from sync.ids import new_stream_id, new_ulid
from tests import identity as keyring

AGENCY = "000.00.14.H56"
OTHER_AGENCY = "000.00.15.H56"
VN = "+07:00"


class Kiosk:
    """One kiosk's stream of records into central's database (a SQLite file or PostgreSQL)."""

    def __init__(self, db: Target, kiosk: str = "k-office-01") -> None:
        self.db = db
        self.kiosk = kiosk
        self.stream = new_stream_id()
        self.seq = 0

    def send(self, kind: str, body: dict[str, Any], *, created: str | None = None) -> Record:
        self.seq += 1
        rec = Record(
            kind=kind,
            kiosk=self.kiosk,
            stream=self.stream,
            seq=self.seq,
            id=new_ulid(),
            created=created or datetime.now(UTC).astimezone().isoformat(timespec="milliseconds"),
            body=body,
        )
        store = open_store(self.db)
        try:
            result = keyring.process_batch(store, [(records_topic(self.kiosk), rec.encode())])
        finally:
            store.close()
        assert result.outcome.stored == 1, result.outcome
        return rec


def open_store(db: Target) -> SQLiteStore | PostgresStore:
    """The records' store of ``db`` (what the collector writes through)."""
    if isinstance(db, PgTarget):
        return PostgresStore(db.dsn)
    return SQLiteStore(db)


def dossier_body(
    code: str,
    *,
    id_number: str = "087205001234",
    name: str = "Nguyễn Thị Ngọc Hường",
    procedure: str = "1.001193",
    received_at: str = "2026-12-01T09:15:00+07:00",
    fee_vnd: int = 8000,
    unconfirmed_before: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": code,
        "procedure": procedure,
        "form": {"so_trang": 4},
        "applicant": {"full_name": name, "id_number": id_number},
        "fee_vnd": fee_vnd,
        "received_at": received_at,
        "due": "2026-12-04T17:00+07:00",
    }
    if unconfirmed_before is not None:
        body["unconfirmed_before"] = unconfirmed_before
    return body


def at(base: str, minutes: float) -> str:
    return (datetime.fromisoformat(base) + timedelta(minutes=minutes)).isoformat(timespec="seconds")
