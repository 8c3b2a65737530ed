"""Desired remote configuration per office and per kiosk, versioned per kiosk, audited.

Theory of operation
-------------------
``desired_config`` holds what an admin set: rows ``(scope, key, value)`` where
scope is ``office:<agency>`` or ``kiosk:<id>``. A kiosk's **effective**
configuration is its office's values with its own on top (:func:`effective`).

:func:`set_values` validates every value with ``sync.remote_config`` (what the
kiosk will check), writes the rows and an audit row, then :func:`publish`es
each kiosk concerned, all in one transaction. Publishing compares the
effective configuration's digest with the kiosk's newest version
(``config_versions``): unchanged, nothing happens; changed, version N+1 is
stored and sent as the downlink item ``config`` (key ``agent``, audience
``kiosk:<id>``), which supersedes the previous one in the log, so a kiosk
offline for a week gets only the newest.

The kiosks' ``config`` records (applied or refused, with the field and the
reason) are folded into ``config_reports`` by :func:`project` (a catch-up over
the records table, as every projection), and each outcome is audited with the
kiosk as actor. What a kiosk *runs* is the ``config_version`` of its last
heartbeat; :func:`show` puts desired, effective, sent and running side by side.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from pydantic import ValidationError

from central import audit, downlink_log, projection
from sync.remote_config import (
    CONFIG_REPORT,
    ITEM_KEY,
    ITEM_KIND,
    RemoteConfigError,
    check_setting,
    digest,
    item_body,
)

log = logging.getLogger("aps.central.config")
PROJECTION = "config-reports"

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


def _scope(office: str | None, kiosk: str | None) -> str:
    if (office is None) == (kiosk is None):
        raise RemoteConfigError("scope", "give exactly one of --office O or --kiosk K")
    return (
        downlink_log.office_audience(office) if office else downlink_log.kiosk_audience(kiosk or "")
    )


def desired(conn: sqlite3.Connection, scope: str) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT key, value FROM desired_config WHERE scope = ? ORDER BY key", (scope,)
    ).fetchall()
    return {k: json.loads(v) for k, v in rows}


def effective(conn: sqlite3.Connection, kiosk: str) -> dict[str, Any]:
    """The kiosk's office's values, its own on top."""
    office = downlink_log.office_of(conn, kiosk)
    out = {} if office is None else desired(conn, downlink_log.office_audience(office))
    out.update(desired(conn, downlink_log.kiosk_audience(kiosk)))
    return dict(sorted(out.items()))


def latest_version(conn: sqlite3.Connection, kiosk: str) -> tuple[int, str] | None:
    row = conn.execute(
        "SELECT version, digest FROM config_versions WHERE kiosk = ? ORDER BY version DESC LIMIT 1",
        (kiosk,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def publish(conn: sqlite3.Connection, kiosk: str, *, actor: str, now: float) -> int | None:
    """Send the kiosk's effective configuration if it changed (inside a transaction)."""
    settings = effective(conn, kiosk)
    new_digest = digest(settings)
    latest = latest_version(conn, kiosk)
    if latest is None and not settings:
        return None  # nothing was ever set for it: its own TOML rules, nothing to send
    if latest is not None and latest[1] == new_digest:
        return None
    version = 1 if latest is None else latest[0] + 1
    conn.execute(
        "INSERT INTO config_versions (kiosk, version, digest, settings, at, actor)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (kiosk, version, new_digest, json.dumps(settings, ensure_ascii=False), now, actor),
    )
    downlink_log.append(
        conn,
        downlink_log.kiosk_audience(kiosk),
        ITEM_KIND,
        ITEM_KEY,
        item_body(version, settings),
        now=now,
    )
    audit.record(
        conn,
        actor,
        "config.version",
        f"kiosk:{kiosk}",
        {"version": version, "digest": new_digest, "settings": settings},
        now=now,
    )
    return version


def _kiosks_for(conn: sqlite3.Connection, scope: str) -> list[str]:
    return sorted(downlink_log.kiosks_of(conn, [scope]))


def set_values(
    conn: sqlite3.Connection,
    *,
    office: str | None = None,
    kiosk: str | None = None,
    values: dict[str, Any] | None = None,
    unset: list[str] | None = None,
    actor: str,
    now: float | None = None,
) -> dict[str, int]:
    """Set (and unset) desired values for one office or kiosk; the versions sent, by kiosk.

    :class:`RemoteConfigError` names a setting that cannot be set remotely or a value out
    of bounds; nothing is written then.
    """
    at = time.time() if now is None else now
    scope = _scope(office, kiosk)
    clean = {k: check_setting(k, v) for k, v in (values or {}).items()}
    gone = list(unset or [])
    for key in gone:
        if key not in _known_keys():
            check_setting(key, None)  # raises: names the settable keys
    if not clean and not gone:
        raise RemoteConfigError("values", "nothing to set: give key=value or --unset KEY")
    sent: dict[str, int] = {}
    with projection.transaction(conn):
        for key, value in clean.items():
            conn.execute(
                "INSERT INTO desired_config (scope, key, value, at, actor) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value,"
                " at = excluded.at, actor = excluded.actor",
                (scope, key, json.dumps(value, ensure_ascii=False), at, actor),
            )
        for key in gone:
            conn.execute("DELETE FROM desired_config WHERE scope = ? AND key = ?", (scope, key))
        audit.record(conn, actor, "config.set", scope, {"set": clean, "unset": gone}, now=at)
        for target in _kiosks_for(conn, scope):
            version = publish(conn, target, actor=actor, now=at)
            if version is not None:
                sent[target] = version
    return sent


def _known_keys() -> frozenset[str]:
    from sync.remote_config import SETTINGS

    return frozenset(SETTINGS)


def _running(conn: sqlite3.Connection, kiosk: str) -> str | None:
    try:
        row = conn.execute("SELECT heartbeat FROM kiosks WHERE kiosk = ?", (kiosk,)).fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None or not row[0]:
        return None
    try:
        value = json.loads(row[0]).get("config_version")
    except (ValueError, AttributeError):
        return None
    return None if value is None else str(value)


def last_report(conn: sqlite3.Connection, kiosk: str) -> dict[str, Any] | None:
    project(conn)
    row = conn.execute(
        "SELECT version, digest, state, field, reason, at FROM config_reports WHERE kiosk = ?"
        " ORDER BY at DESC, rowid DESC LIMIT 1",
        (kiosk,),
    ).fetchone()
    if row is None:
        return None
    version, dig, state, field, reason, at = row
    return {
        "version": version,
        "digest": dig,
        "state": state,
        "field": field,
        "reason": reason,
        "at": at,
    }


def show(
    conn: sqlite3.Connection, *, office: str | None = None, kiosk: str | None = None
) -> dict[str, Any]:
    """Desired values of the scope; for a kiosk also effective, sent, running, last report."""
    project(conn)
    scope = _scope(office, kiosk)
    out: dict[str, Any] = {"scope": scope, "desired": desired(conn, scope)}
    if kiosk is not None:
        office_of = downlink_log.office_of(conn, kiosk)
        latest = latest_version(conn, kiosk)
        out.update(
            {
                "office": office_of,
                "office_desired": {}
                if office_of is None
                else desired(conn, downlink_log.office_audience(office_of)),
                "effective": effective(conn, kiosk),
                "sent_version": None if latest is None else latest[0],
                "sent_digest": None if latest is None else latest[1],
                "running_version": _running(conn, kiosk),
                "last_report": last_report(conn, kiosk),
            }
        )
    else:
        out["kiosks"] = {
            k: {
                "sent_version": (latest_version(conn, k) or (None, None))[0],
                "running_version": _running(conn, k),
            }
            for k in _kiosks_for(conn, scope)
        }
    return out


def history(
    conn: sqlite3.Connection,
    *,
    office: str | None = None,
    kiosk: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Audit rows of the scope's configuration, newest first (set, versions, outcomes)."""
    project(conn)
    scope = _scope(office, kiosk)
    rows = conn.execute(
        "SELECT n, at, actor, action, target, detail FROM audit"
        " WHERE target = ? AND action LIKE 'config.%' ORDER BY n DESC LIMIT ?",
        (scope, limit),
    ).fetchall()
    return [
        {"n": n, "at": at, "actor": a, "action": act, "target": t, "detail": json.loads(d)}
        for n, at, a, act, t, d in rows
    ]


def project(conn: sqlite3.Connection) -> int:
    """Fold the ``config`` records central received since the last call."""
    return projection.catch_up(conn, PROJECTION, lambda: _fold(conn))


def _fold(conn: sqlite3.Connection) -> int:
    done = 0
    for row in projection.new_records(conn, PROJECTION, ("config",)):
        try:
            body = json.loads(row.body)
            CONFIG_REPORT.validate_python(body)
        except (ValueError, ValidationError) as exc:  # schema-checked at ingest: no
            log.error("config record %s/%s not folded: %s", row.kiosk, row.id, exc)
            continue
        conn.execute(
            "INSERT INTO config_reports (record_id, kiosk, version, digest, state,"
            " field, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                row.id,
                row.kiosk,
                body["version"],
                body["digest"],
                body["state"],
                body.get("field"),
                body.get("reason"),
                row.received_at,
            ),
        )
        audit.record(
            conn,
            f"kiosk:{row.kiosk}",
            f"config.{body['state']}",
            f"kiosk:{row.kiosk}",
            {k: body.get(k) for k in ("version", "digest", "field", "reason")},
            now=row.received_at,
        )
        done += 1
    return done
