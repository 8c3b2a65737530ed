"""Desired remote configuration per office and per kiosk (filled in below)."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS desired_config (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS config_versions (
    kiosk TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    settings TEXT NOT NULL,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (kiosk, version)
);
CREATE TABLE IF NOT EXISTS config_reports (
    record_id TEXT PRIMARY KEY,
    kiosk TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    state TEXT NOT NULL,
    field TEXT,
    reason TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS config_reports_kiosk ON config_reports (kiosk, at);
"""


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
