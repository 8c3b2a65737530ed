"""Lookup codes for questions, feedback, petitions and support requests.

``<PP>-<YYMMDD>-<NNNN>``: PP is HT (question, hỏi), PA (feedback, phản ánh), KN
(petition, kiến nghị), HO (help, hỗ trợ) or TN (home visit, tại nhà); NNNN is
``slot*1000 + n`` where n counts that prefix's codes at this kiosk that day
(1-999), exactly like dossier codes: kiosks of one office have different
slots, so their codes never collide, even offline. The counter row is written
in the caller's transaction (the same one that queues the record), so a code
is used only if its record is durable.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from edge_agent import CitizenError

PREFIXES = {
    "question": "HT",
    "feedback": "PA",
    "petition": "KN",
    "help": "HO",
    "home-visit": "TN",
}
MAX_PER_DAY = 999

SCHEMA = """
CREATE TABLE IF NOT EXISTS lookup_counter (
    prefix TEXT NOT NULL, day TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (prefix, day)
) WITHOUT ROWID;
"""


def next_code(conn: sqlite3.Connection, kind: str, when: datetime, slot: int) -> str:
    """The next code of ``kind`` (a key of PREFIXES), inside the caller's transaction."""
    prefix = PREFIXES[kind]
    day = when.strftime("%y%m%d")
    n = conn.execute(
        "INSERT INTO lookup_counter (prefix, day, n) VALUES (?, ?, 1)"
        " ON CONFLICT (prefix, day) DO UPDATE SET n = n + 1 RETURNING n",
        (prefix, day),
    ).fetchone()[0]
    if n > MAX_PER_DAY:
        raise CitizenError(
            f"daily limit of {MAX_PER_DAY} {kind} codes for slot {slot} reached",
            "Máy đã nhận đủ số yêu cầu tối đa trong ngày. "
            "Xin mời Ông/Bà đến quầy Một cửa để được hỗ trợ.",
        )
    return f"{prefix}-{day}-{slot * 1000 + n:04d}"
