"""Publishing the procedure catalogue to every kiosk (``aps-central catalogue publish``).

Theory of operation
-------------------
The catalogue is one downlink item: audience ``*`` (the fleet), kind and key
``catalogue``. :func:`publish_catalogue` validates the document with
:mod:`sync.catalogue` (the schema kiosks apply it with), refuses a version
that is not newer than the current one, and then, in one transaction,
appends the item (superseding the previous catalogue, so a kiosk offline
through several versions gets only the newest) and the audit row. The
version check and the append happen under the same write lock (BEGIN
IMMEDIATE), so two publishers cannot both publish "the next" version.

The HTTP API and the CLI both call :func:`publish_catalogue`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from central import audit, downlink_log
from central.backoffice_db import transaction
from sync.catalogue import CatalogueInvalid, is_newer, parse_catalogue_document

KIND = "catalogue"
KEY = "catalogue"


class CatalogueRefused(ValueError):
    """The catalogue was not published: invalid, or its version is not newer."""


def current_catalogue(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """The catalogue document kiosks are given now, or None if none was published."""
    items = downlink_log.current(conn, downlink_log.FLEET, KIND, KEY)
    return items[-1].body if items else None


def publish_catalogue(conn: sqlite3.Connection, doc_obj: Any, actor: str) -> str:
    """Validate and publish ``doc_obj`` (decoded JSON); returns its version.

    Raises CatalogueRefused naming the bad path, or the current version when
    the new one is not newer. ``conn`` is a ``central.backoffice_db`` connection
    outside any transaction.
    """
    try:
        doc = parse_catalogue_document(doc_obj)
    except CatalogueInvalid as exc:
        raise CatalogueRefused(f"not published: {exc}") from None
    body = doc.to_json()
    with transaction(conn):
        current = current_catalogue(conn)
        if current is not None:
            old = str(current.get("version", "0"))
            if not is_newer(doc.version, old):
                raise CatalogueRefused(
                    f"not published: version {doc.version} is not newer than the current "
                    f"{old}; give the document a higher version (e.g. {_bump(old)})"
                )
        cursor = downlink_log.append(conn, downlink_log.FLEET, KIND, KEY, body)
        audit.record(
            conn,
            actor,
            "catalogue.publish",
            f"catalogue:{doc.version}",
            {
                "version": doc.version,
                "previous": None if current is None else current.get("version"),
                "procedures": len(doc.procedures),
                "cursor": cursor,
            },
        )
    return doc.version


def _bump(version: str) -> str:
    parts = version.split(".")
    try:
        parts[-1] = str(int(parts[-1]) + 1)
    except ValueError:
        return version + ".1"
    return ".".join(parts)


def kiosk_catalogues(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """What each kiosk last reported in its heartbeat: active version, last refusal."""
    try:
        rows = conn.execute(
            "SELECT kiosk, last_heartbeat_at, heartbeat FROM kiosks ORDER BY kiosk"
        ).fetchall()
    except sqlite3.OperationalError:  # no kiosks table: an empty database
        return []
    out = []
    for kiosk, at, heartbeat in rows:
        try:
            reported = json.loads(heartbeat).get("catalogue") if heartbeat else None
        except (ValueError, AttributeError):
            reported = None
        if not isinstance(reported, dict):
            reported = {}
        out.append(
            {
                "kiosk": kiosk,
                "heartbeat_at": at,
                "version": reported.get("version"),
                "rejected_version": reported.get("rejected_version"),
                "error": reported.get("error"),
            }
        )
    return out
