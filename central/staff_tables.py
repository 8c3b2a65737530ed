"""The tables of central's staff side: roster, support requests, API tokens, payments.

Kept apart from the modules that use them (:mod:`central.roster`,
:mod:`central.support`, :mod:`central.api_tokens`, :mod:`central.payments`)
so :mod:`central.backoffice_db` can create them without importing those
modules (which import it for ``transaction``).
"""

from __future__ import annotations

import sqlite3

ROSTER = """

CREATE TABLE IF NOT EXISTS staff (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    email TEXT,
    channels TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS shifts (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    staff TEXT NOT NULL REFERENCES staff (id),
    office TEXT NOT NULL,
    weekday INTEGER,
    day TEXT,
    start TEXT NOT NULL,
    "end" TEXT NOT NULL,  -- quoted: END is reserved in PostgreSQL
    created_at REAL NOT NULL,
    CHECK ((weekday IS NULL) <> (day IS NULL))
);
CREATE INDEX IF NOT EXISTS shifts_office ON shifts (office);
"""

SUPPORT = """

CREATE TABLE IF NOT EXISTS support_requests (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    kiosk TEXT NOT NULL,
    record_id TEXT NOT NULL,
    source_rowid INTEGER NOT NULL,
    office TEXT,
    type TEXT NOT NULL,
    source TEXT,
    lookup_code TEXT,
    message TEXT NOT NULL,
    topic TEXT,
    contact TEXT,
    channel TEXT,
    full_name TEXT,
    phone TEXT,
    address TEXT,
    reason TEXT,
    created TEXT NOT NULL,
    received_at REAL NOT NULL,
    status TEXT NOT NULL,
    staff_id TEXT,
    routed_at REAL,
    notify_state TEXT NOT NULL DEFAULT 'none',
    notify_attempts INTEGER NOT NULL DEFAULT 0,
    notify_next_at REAL,
    notify_error TEXT,
    notified_at REAL,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    resolved_at REAL,
    resolved_by TEXT,
    resolution TEXT,
    UNIQUE (kiosk, record_id)
);
CREATE INDEX IF NOT EXISTS support_status ON support_requests (status, n);
CREATE INDEX IF NOT EXISTS support_lookup ON support_requests (lookup_code);
CREATE INDEX IF NOT EXISTS support_notify ON support_requests (notify_state, notify_next_at)
    WHERE notify_state = 'pending';
CREATE TABLE IF NOT EXISTS support_progress (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

API_TOKENS = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at REAL,
    last_used_at REAL
);
"""

PAYMENTS = """
CREATE TABLE IF NOT EXISTS payment_callbacks (
    reference TEXT PRIMARY KEY,
    body_sha256 TEXT NOT NULL,
    dossier_code TEXT NOT NULL,
    amount_vnd INTEGER NOT NULL,
    paid_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_callbacks_dossier ON payment_callbacks (dossier_code);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    for script in (ROSTER, SUPPORT, API_TOKENS, PAYMENTS):
        conn.executescript(script)
