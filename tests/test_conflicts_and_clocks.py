"""Replays with another body are conflicts; kiosk clocks are measured, never refused.

Issue 6, item 6 (first and second part).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from central.cli import main as central_cli
from central.store import SQLiteStore
from sync.envelope import Record, decode_ack, records_topic
from sync.ids import new_stream_id, new_ulid
from tests import identity as keyring
from tests import stack

KIOSK = "k-clock-01"
TOPIC = records_topic(KIOSK)


def _rec(seq: int, stream: str, *, rid: str | None = None, **changes: object) -> Record:
    fields: dict[str, object] = {
        "kind": "feedback",
        "kiosk": KIOSK,
        "stream": stream,
        "seq": seq,
        "id": rid or new_ulid(),
        "created": datetime.now(UTC).astimezone().isoformat(timespec="milliseconds"),
        "body": {"category": "feedback", "message": "Nhanh gọn", "contact": ""},
    }
    fields.update(changes)
    return Record(**fields)  # type: ignore[arg-type]


def _status(tmp_path: Path, db: Path) -> dict[str, object]:
    cfg = stack.write_central_config(tmp_path / "central.toml", db, 1883)
    out = CliRunner().invoke(central_cli, ["status", "--config", str(cfg)])
    assert out.exit_code == 0, out.output
    return dict(json.loads(out.output))


def test_a_replayed_id_with_another_body_is_a_conflict_acked_and_visible(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "central.db"
    store = SQLiteStore(db)
    stream = new_stream_id()
    first = _rec(1, stream)
    keyring.process_batch(store, [(TOPIC, first.encode())])
    same = keyring.process_batch(store, [(TOPIC, first.encode())])  # a plain resend: a duplicate
    assert same.outcome.duplicates == 1 and same.outcome.conflicts == []
    forged = _rec(1, stream, rid=first.id, body={**first.body, "message": "Khác hẳn"})
    with caplog.at_level(logging.WARNING, logger="aps.collector"):
        result = keyring.process_batch(store, [(TOPIC, forged.encode())])
    [ack] = [decode_ack(p) for _, p in result.acks]
    assert ack.acked == (first.id,)  # acked, so the kiosk stops resending it
    assert result.outcome.conflicts == [(KIOSK, first.id)]
    assert "id-conflict" in caplog.text and KIOSK in caplog.text
    [dead] = store.dead_letters()
    assert dead["reason"].startswith("id-conflict") and dead["record_id"] == first.id
    # The first body is kept.
    body = store.conn.execute("SELECT body FROM records WHERE id = ?", (first.id,)).fetchone()[0]
    assert json.loads(body)["message"] == "Nhanh gọn"
    store.close()
    status = _status(tmp_path, db)
    conflicts = status["id_conflicts"]
    assert isinstance(conflicts, dict) and conflicts["count"] == 1
    assert conflicts["latest"][0]["kiosk"] == KIOSK


def test_clock_skew_is_recorded_per_kiosk_and_no_record_is_refused_for_its_clock(
    tmp_path: Path,
) -> None:
    db = tmp_path / "central.db"
    store = SQLiteStore(db)
    stream = new_stream_id()
    ahead = (datetime.now(UTC) + timedelta(hours=2)).isoformat(timespec="milliseconds")
    records = [
        _rec(1, stream, created=ahead),
        _rec(2, stream, created="9999-12-31T23:59:59.000+07:00"),
        _rec(3, stream, created="1970-01-01T00:00:00.000+00:00"),
    ]
    # Text that names no instant never becomes a Record (sync.schemas): the kiosk
    # cannot queue it and central dead-letters it as a bad envelope.
    before = time.time()
    result = keyring.process_batch(store, [(TOPIC, r.encode()) for r in records])
    assert result.outcome.stored == 3  # a wrong clock never costs a record
    [skew] = store.clock_skews()
    # The smallest lag of the batch: the far-future date, far ahead of central.
    expected = before - datetime(9999, 12, 31, 16, 59, 59, tzinfo=UTC).timestamp()
    assert skew["kiosk"] == KIOSK and abs(skew["clock_skew_s"] - expected) < 60
    # The next batch replaces it: now two hours ahead.
    keyring.process_batch(store, [(TOPIC, _rec(4, stream, created=ahead).encode())])
    [skew] = store.clock_skews()
    assert -7300 < skew["clock_skew_s"] < -7000
    store.close()
    status = _status(tmp_path, db)
    [shown] = status["clock_skew"]  # type: ignore[misc]
    assert shown["kiosk"] == KIOSK and -7300 < shown["skew_s"] < -7000
