"""Helpers for the support-team tests: support records in a real central store (either engine)."""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any

from central import backoffice_db, downlink_log
from central.backoffice_db import Target
from central.ingest import Accept
from sync.envelope import Record, records_topic
from sync.ids import new_stream_id, new_ulid
from sync.schemas import check_body
from tests import identity as keyring
from tests.backoffice_records import open_store

OFFICE = "000.00.14.H56"
STREAM = new_stream_id()
_seq = itertools.count(1)
_code = itertools.count(1)


def lookup_code(prefix: str = "HO") -> str:
    return f"{prefix}-261201-{1000 + next(_code) % 9000:04d}"


def support_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message": "Tôi cần hỗ trợ nộp hồ sơ",
        "type": "help",
        "lookup_code": lookup_code(),
        "source": "screen",
    }
    body.update(overrides)
    check_body("support", body)
    return body


def ingest(db: Target, kiosk: str, kind: str, body: dict[str, Any]) -> str:
    """Store one record as the collector would; returns its id."""
    rid = new_ulid()
    store = open_store(db)
    try:
        record = Record(
            kind=kind,
            kiosk=kiosk,
            stream=STREAM,
            seq=next(_seq),
            id=rid,
            created="2026-12-01T09:15:02+07:00",
            body=body,
        )
        item = keyring.classify(records_topic(kiosk), record.encode())
        assert isinstance(item, Accept), item
        store.ingest([item])
    finally:
        store.close()
    return rid


def open_db(db: Target, *kiosks: str, office: str = OFFICE) -> sqlite3.Connection:
    conn = backoffice_db.connect(db)
    with backoffice_db.transaction(conn):
        for kiosk in kiosks:
            downlink_log.assign_office(conn, kiosk, office)
    return conn


def replies(conn: sqlite3.Connection, kiosk: str) -> list[dict[str, Any]]:
    return [
        i.body
        for i in downlink_log.current(conn, downlink_log.kiosk_audience(kiosk), "support-reply")
    ]
