"""Remote configuration on the kiosk: store the last good one, apply it, report the outcome.

Theory of operation
-------------------
Central sends the kiosk's effective configuration as the downlink item
``config`` (key ``agent``; ``sync.remote_config``). The inbox's validator for
it checks only the shape, so that a bad *value* reaches :meth:`store_item`
and is **reported** as refused instead of being skipped in silence.

:meth:`store_item` runs inside the inbox page's transaction. It checks every
setting (:func:`sync.remote_config.check_item`, the digest too):

- good: the row ``remote_config`` (version, digest, settings) is replaced, in
  the same transaction as the downlink cursor, so the stored configuration and
  the cursor never disagree after a crash; it survives restarts (the
  application applies the stored one at start);
- bad: nothing is replaced (the last good configuration stays in force).

Either way one pending report row is written in that transaction, and
:meth:`flush_reports` turns pending rows into outbox records of kind
``config`` (``sync.remote_config.ConfigReportBody``) in a transaction of their
own: after each page, and on every pass of the job runner (so a report
pending when the agent died is sent after the restart). A configuration change
touches no record of the outbox: nothing queued is lost or held back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Callable
from typing import Any

from sync.downlink import Item
from sync.outbox import Outbox, OutboxFull
from sync.remote_config import (
    ITEM_KEY,
    ITEM_KIND,
    RemoteConfigError,
    canonical,
    check_item,
    check_item_shape,
)

log = logging.getLogger("aps.remote_config")

RECORD_KIND = "config"
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")

SCHEMA = """
CREATE TABLE IF NOT EXISTS remote_config (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS remote_config_reports (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
"""


class RemoteConfigService:
    """The kiosk side of remote configuration; ``apply(settings)`` puts one into force."""

    def __init__(
        self,
        outbox: Outbox,
        apply: Callable[[dict[str, Any]], None],
        *,
        local_check: Callable[[dict[str, Any]], None] = lambda settings: None,
    ) -> None:
        self.outbox = outbox
        self._apply = apply
        #: Rules of this kiosk's own configuration (raises RemoteConfigError).
        self._local_check = local_check
        with self.outbox.local_write() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def install(self, inbox: Any) -> None:
        """Have ``inbox`` (``edge_agent.inbox.Inbox``) hand ``config`` items to this service."""
        inbox.register_validator(ITEM_KIND, check_item_shape)
        inbox.register(ITEM_KIND, self.store_item)
        inbox.on_applied.append(self._on_applied)

    # -- in the inbox's transaction ---------------------------------------------------------
    def store_item(self, conn: sqlite3.Connection, item: Item) -> None:
        body = item.body
        if item.key != ITEM_KEY:
            raise ValueError(f"config item key {item.key!r}: expected {ITEM_KEY!r}")
        version = body.get("version") if isinstance(body.get("version"), int) else 0
        try:
            version, digest, settings = check_item(body)
            self._local_check(settings)
        except RemoteConfigError as exc:
            log.warning("refused remote configuration version %s: %s", version, exc)
            report = {
                "version": max(0, int(version or 0)),
                "digest": self._digest_of(body),
                "state": "refused",
                "field": exc.field[:64],
                "reason": str(exc)[:500],
            }
        else:
            conn.execute(
                "INSERT INTO remote_config (name, version, digest, settings) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET version = excluded.version,"
                " digest = excluded.digest, settings = excluded.settings",
                (ITEM_KEY, version, digest, json.dumps(settings, ensure_ascii=False)),
            )
            report = {"version": version, "digest": digest, "state": "applied"}
        conn.execute(
            "INSERT INTO remote_config_reports (body) VALUES (?)",
            (json.dumps(report, ensure_ascii=False),),
        )

    @staticmethod
    def _digest_of(body: dict[str, Any]) -> str:
        digest = body.get("digest")
        if isinstance(digest, str) and _HEX64.match(digest):
            return digest
        try:
            return hashlib.sha256(canonical(body.get("settings") or {})).hexdigest()
        except (TypeError, ValueError, AttributeError):
            return "0" * 64

    # -- after the commit ---------------------------------------------------------------------
    def _on_applied(self, news: list[tuple[str, str]]) -> None:
        if any(kind == ITEM_KIND for kind, _ in news):
            self.apply_current()
            self.flush_reports()

    def current(self) -> tuple[int, str, dict[str, Any]] | None:
        """(version, digest, settings) of the last good configuration, or None."""
        with self.outbox.reading() as conn:
            row = conn.execute(
                "SELECT version, digest, settings FROM remote_config WHERE name = ?", (ITEM_KEY,)
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), json.loads(row[2]))

    def version_text(self) -> str | None:
        """The version the kiosk runs, as the heartbeat's ``config_version`` carries it."""
        found = self.current()
        return None if found is None else str(found[0])

    def settings(self) -> dict[str, Any]:
        found = self.current()
        return {} if found is None else found[2]

    def apply_current(self) -> None:
        """Put the stored configuration into force (at start, and after each new one)."""
        try:
            self._apply(self.settings())
        except Exception:  # a setter that fails must not cost the page or the agent
            log.exception("could not apply the remote configuration")

    def flush_reports(self) -> int:
        """Pending reports -> ``config`` records (each with its row deleted, one transaction)."""
        sent = 0
        while True:
            with self.outbox.reading() as conn:
                row = conn.execute(
                    "SELECT n, body FROM remote_config_reports ORDER BY n LIMIT 1"
                ).fetchone()
            if row is None:
                return sent
            try:
                with self.outbox.transaction() as tx:
                    tx.add(RECORD_KIND, json.loads(row[1]))
                    tx.conn.execute("DELETE FROM remote_config_reports WHERE n = ?", (row[0],))
            except OutboxFull:
                log.warning("the outbox is full; the configuration report waits")
                return sent
            sent += 1
