"""A kiosk that refused a catalogue reports it upward: heartbeat -> central -> CLI (real broker)."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from click.testing import CliRunner

from central.cli import main as central_cli
from central.mosquitto import MosquittoProcess
from edge_agent.catalogue import CatalogueStore, accept_for_store, bundled_document
from sync.outbox import Outbox
from tests import stack
from tests.waiting import wait_until

DOC = bundled_document()


def versioned(v: str, **changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(DOC)
    d["version"] = v
    d.update(changes)
    return d


class RecordingInbox:
    """The two registration calls of edge_agent.inbox.Inbox that install() makes."""

    def __init__(self) -> None:
        self.validators: dict[str, Any] = {}
        self.handlers: dict[str, Any] = {}

    def register_validator(self, kind: str, validator: Any) -> None:
        self.validators[kind] = validator

    def register(self, kind: str, handler: Any) -> None:
        self.handlers[kind] = handler


def prepare_kiosk(db: Path) -> None:
    Outbox(db, stack.KIOSK).close()  # the kiosk's database, as the agent makes it
    conn = sqlite3.connect(db, isolation_level=None)
    store = CatalogueStore(conn)
    inbox = RecordingInbox()
    store.install(inbox)
    # The inbox lets a bad document through to the handler, which refuses it.
    accept = inbox.validators["catalogue"]
    handler = inbox.handlers["catalogue"]
    for body in (versioned("2099.1.1"), versioned("2099.2.1", procedures=[])):
        accept(body)
        conn.execute("BEGIN IMMEDIATE")
        handler(conn, SimpleNamespace(kind="catalogue", key="catalogue", body=body))
        conn.execute("COMMIT")
    assert store.current().version == "2099.1.1"
    conn.close()


def test_the_inbox_validator_lets_documents_through_to_the_store() -> None:
    accept_for_store(versioned("1.0", procedures=[]))  # the store, not the inbox, refuses it


def test_a_refused_catalogue_reaches_central_in_the_heartbeat(
    broker: MosquittoProcess, tmp_path: Path
) -> None:
    kiosk_db, central_db = tmp_path / "kiosk.db", tmp_path / "central.db"
    prepare_kiosk(kiosk_db)
    agent_cfg = stack.write_agent_config(
        tmp_path / "agent.toml", kiosk_db, broker.kiosk(stack.KIOSK), heartbeat_interval_s=1
    )
    central_cfg = stack.write_central_config(
        tmp_path / "central.toml", central_db, broker.collector()
    )
    central = stack.spawn("central.cli", central_cfg, tmp_path / "central.log")
    agent = stack.spawn("edge_agent.cli", agent_cfg, tmp_path / "agent.log")

    def reported() -> dict[str, Any] | None:
        if not central_db.exists():
            return None
        result = CliRunner().invoke(
            central_cli, ["catalogue", "kiosks", "--config", str(central_cfg)]
        )
        if result.exit_code != 0:
            return None
        rows = [json.loads(line) for line in result.output.splitlines() if line.strip()]
        row = next((r for r in rows if r["kiosk"] == stack.KIOSK), None)
        return row if row and row["version"] else None

    try:
        wait_until(lambda: reported() is not None, 60, "the kiosk's catalogue status at central")
        row = reported()
        assert row is not None
        assert row["version"] == "2099.1.1" and row["rejected_version"] == "2099.2.1"
        assert "procedures" in row["error"]
    finally:
        stack.stop(agent)
        stack.stop(central)
