"""Reporting commands open databases read-only and never create one (item 14).

``aps-agent outbox status`` and ``aps-central status|fleet|dead-letters`` on a
mistyped path say there is no database there, naming the path and the key to
fix, and leave nothing behind; on a real database they report it and change
nothing. A path that cannot be opened is reported as what it is, never as a
damaged database with salvage advice.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.cli import main as central_cli
from central.store import SQLiteStore, StoreError, StoreMissing
from edge_agent.cli import main as agent_cli
from sync.files import why_unopenable
from sync.outbox import Outbox, OutboxCorrupt, OutboxMissing, OutboxUnopenable
from tests import identity as keyring
from tests import stack

CENTRAL_COMMANDS = [["status"], ["fleet"], ["dead-letters"]]


def agent_toml(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[kiosk]\nid = "{stack.KIOSK}"\nagency = "000.00.14.H56"\nslot = 1\n'
        f'[agent]\ndatabase = "{db}"\n',
        encoding="utf-8",
    )
    return path


def central_toml(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(f'[central]\ndatabase = "{db}"\n', encoding="utf-8")
    return path


def listing(directory: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``directory``: (size, owner, mode): what a command may not change."""
    out = {}
    for p in sorted(directory.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(directory))] = (st.st_size, st.st_uid, st.st_mode)
    return out


def test_outbox_status_on_a_mistyped_path_names_it_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "var/lib/aps/kiosk.bd"
    cfg = agent_toml(tmp_path, db)
    result = CliRunner().invoke(agent_cli, ["outbox", "status", "--config", str(cfg)])
    assert result.exit_code != 0
    assert f"no kiosk database at {db}" in result.output
    assert f"check agent.database in {cfg}" in result.output
    assert "salvage" not in result.output and "integrity" not in result.output
    assert not (tmp_path / "var").exists()
    (tmp_path / "var/lib/aps").mkdir(parents=True)
    result = CliRunner().invoke(agent_cli, ["outbox", "status", "--config", str(cfg)])
    assert result.exit_code != 0 and f"no kiosk database at {db}" in result.output
    assert list((tmp_path / "var/lib/aps").iterdir()) == []


def test_outbox_status_reports_a_real_database_and_changes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = state / "kiosk.db"
    ids = stack.fill_outbox(db, 4)
    ob = Outbox(db, stack.KIOSK)
    ob.mark_acked(ids[:1])
    stream = ob.stream
    ob.close()
    for leftover in state.glob("kiosk.db-*"):  # as after a clean stop of the service
        leftover.unlink()
    if os.geteuid() == 0:  # run as root, as an operator would, on the service's file
        shutil.chown(state, "nobody")
        shutil.chown(db, "nobody")
    before = db.read_bytes()
    result = CliRunner().invoke(
        agent_cli, ["outbox", "status", "--config", str(agent_toml(tmp_path, db))]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["queued"], report["acked"], report["stream"]) == (3, 1, stream)
    assert db.read_bytes() == before
    owner = db.stat().st_uid
    # SQLite may leave -wal/-shm behind a reader; they must belong to the database's owner.
    assert all(p.stat().st_uid == owner for p in state.iterdir()), listing(state)


@pytest.mark.parametrize("command", CENTRAL_COMMANDS, ids=lambda c: c[0])
def test_central_reports_on_a_mistyped_path_name_it_and_create_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    db = tmp_path / "srv/central.db"
    cfg = central_toml(tmp_path, db)
    result = CliRunner().invoke(central_cli, [*command, "--config", str(cfg)])
    assert result.exit_code != 0
    assert f"no central database at {db}" in result.output
    assert f"check central.database in {cfg}" in result.output
    assert not (tmp_path / "srv").exists()


@pytest.mark.parametrize("command", CENTRAL_COMMANDS, ids=lambda c: c[0])
def test_central_reports_read_a_real_store_and_change_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    db = tmp_path / "central.db"
    kiosk_db = tmp_path / "kiosk.db"
    stack.fill_outbox(kiosk_db, 3)
    ob = Outbox(kiosk_db, stack.KIOSK)
    store = SQLiteStore(db)
    topic = f"aps/v1/{stack.KIOSK}/up/records"
    store.ingest(
        [keyring.classify(topic, p.payload) for p in ob.pending()]
        + [keyring.classify(topic, b"junk")]
    )
    store.close()
    ob.close()
    before = db.read_bytes()
    result = CliRunner().invoke(
        central_cli, [*command, "--config", str(central_toml(tmp_path, db))]
    )
    assert result.exit_code == 0, result.output
    if command == ["status"]:
        report = json.loads(result.output)
        assert report["records"] == 3 and report["dead_letters"]
    elif command == ["dead-letters"]:
        rows = [json.loads(line) for line in result.output.splitlines()]
        assert rows and all(row["reason"] for row in rows)
    assert db.read_bytes() == before


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    SQLiteStore(db).close()
    store = SQLiteStore.open_readonly(db)
    try:
        assert store.count() == 0
        with pytest.raises(Exception, match="readonly"):
            store.ingest([keyring.classify("aps/v1/k1/up/records", b"junk")])
    finally:
        store.close()
    with pytest.raises(StoreMissing, match="no central database at"):
        SQLiteStore.open_readonly(tmp_path / "nope.db")
    with pytest.raises(StoreError, match="is a directory"):
        SQLiteStore.open_readonly(tmp_path)


def test_read_only_outbox_tells_missing_directory_from_damage(tmp_path: Path) -> None:
    with pytest.raises(OutboxMissing, match=r"directory .*nodir does not exist"):
        Outbox.open_readonly(tmp_path / "nodir/kiosk.db")
    with pytest.raises(OutboxUnopenable, match="is a directory"):
        Outbox.open_readonly(tmp_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not sqlite" * 500)
    with pytest.raises(OutboxCorrupt):
        Outbox.open_readonly(garbage)


def test_opening_an_unopenable_path_for_writing_is_not_called_corrupt(tmp_path: Path) -> None:
    for path, what in (
        (tmp_path / "missing-dir/kiosk.db", "does not exist"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(OutboxUnopenable) as caught:
            Outbox(path, stack.KIOSK)
        message = str(caught.value)
        assert str(path) in message and what in message
        assert not isinstance(caught.value, OutboxCorrupt)
        assert "salvage" not in message and "integrity" not in message


def test_a_database_the_service_may_not_write_is_named_with_its_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kiosk.db a root shell left behind: the reason names the owner and the fix.

    Root may write any file, so the check of access rights is what is made to say no.
    """
    db = tmp_path / "kiosk.db"
    stack.fill_outbox(db, 1)
    real_access = os.access

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(str(path)) == db and mode & os.W_OK:
            return False
        return real_access(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    reason = why_unopenable(db, write=True)
    assert reason is not None
    assert f"{db} is not readable and writable" in reason
    assert f"belongs to uid {db.stat().st_uid}" in reason and f"chown aps:aps {db}" in reason
    assert why_unopenable(db, write=False) is None  # reading it is fine
