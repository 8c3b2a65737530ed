"""The chaos audit can fail: a deleted, doubled or altered central row is reported."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.chaos.audit import (
    CentralRecord,
    KioskRecord,
    KioskSide,
    StreamView,
    audit,
)

KIOSK, STREAM = "k-chaos-01", "s-01"
PAGE = b"\xff\xd8 trang 1 " * 500


def _chunk_bodies(att: str, data: bytes, size: int = 1000) -> list[dict[str, Any]]:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return [
        {"att": att, "index": i, "total": len(pieces), "data": base64.b64encode(p).decode()}
        for i, p in enumerate(pieces)
    ]


def _kiosk(n_ratings: int = 5) -> KioskSide:
    chunks = _chunk_bodies("A1", PAGE)
    meta = {"att": "A1", "sha256": hashlib.sha256(PAGE).hexdigest(), "chunks": len(chunks)}
    bodies: list[tuple[str, dict[str, Any]]] = [("dossier", {"code": "x", "attachments": [meta]})]
    bodies += [("chunk", b) for b in chunks]
    bodies += [("rating", {"level": "hai_long"}) for _ in range(n_ratings)]
    records = tuple(
        KioskRecord(f"id-{seq:03d}", seq, kind, "acked", body)
        for seq, (kind, body) in enumerate(bodies, start=1)
    )
    actions = ({"action": "dossier", "full": False, "record_id": "id-001", "code": "x"},)
    return KioskSide(KIOSK, STREAM, records, actions)


def _central(side: KioskSide) -> list[CentralRecord]:
    return [CentralRecord(KIOSK, r.id, STREAM, r.seq, r.kind, r.body) for r in side.records]


def _stream(side: KioskSide) -> list[StreamView]:
    n = len(side.records)
    return [StreamView(KIOSK, STREAM, n, n, ())]


def test_a_faithful_central_passes() -> None:
    side = _kiosk()
    result = audit([side], _central(side), _stream(side))
    assert result.ok, result.table()
    assert result.summary()["committed"] == result.summary()["at_central"] == 12
    assert result.summary()["attachments"] == 1


def test_a_deleted_row_and_a_doubled_one_are_reported() -> None:
    side = _kiosk()
    central = _central(side)
    deleted = central.pop(7)  # a rating central "lost"
    central.append(central[8])  # and another stored twice
    result = audit([side], central, _stream(side))
    s = result.summary()
    assert not result.ok
    assert s["lost"] == 1 and s["acked_missing"] == 1 and s["duplicated"] >= 1, s
    assert s["gaps"] >= 1  # its seq is missing at central
    assert f"lost rating {deleted.id}" in result.table()


def test_a_changed_chunk_a_changed_body_and_a_gap_range_are_reported() -> None:
    side = _kiosk()
    central = _central(side)
    central[2] = replace(central[2], body={**central[2].body, "data": "QUFBQQ=="})
    central[9] = replace(central[9], body={"level": "khong_hai_long"})
    stream = [StreamView(KIOSK, STREAM, 3, 12, ((4, 4),))]
    s = audit([side], central, stream).summary()
    assert s["hash_mismatch"] == 1 and s["altered"] == 2 and s["gaps"] == 1, s


def test_what_the_citizen_was_told_is_checked() -> None:
    side = replace(
        _kiosk(),
        actions=(
            {"action": "dossier", "full": False, "record_id": "id-999", "code": "gone"},
            {"action": "rating", "full": True, "result": {}},
            {"action": "rating", "full": True, "refused": "full", "message_vi": "đầy"},
        ),
    )
    s = audit([side], _central(side), _stream(side)).summary()
    assert s["filed_missing"] == 1 and s["accepted_while_full"] == 1, s
    assert s["refused_while_full"] == s["refused"] == 1


@given(
    n=st.integers(min_value=1, max_value=40),
    data=st.data(),
)
def test_the_audit_counts_exactly_what_was_deleted_and_doubled(n: int, data: st.DataObject) -> None:
    side = _kiosk(n)
    central = _central(side)
    ids = list(range(len(central)))
    deleted = set(data.draw(st.lists(st.sampled_from(ids), unique=True), label="deleted"))
    kept = [i for i in ids if i not in deleted]
    doubled = (
        data.draw(st.lists(st.sampled_from(kept), unique=True), label="doubled") if kept else []
    )
    shown = [c for i, c in enumerate(central) if i not in deleted]
    shown += [central[i] for i in doubled]
    result = audit([side], shown, _stream(side))
    s = result.summary()
    assert s["lost"] == s["acked_missing"] == len(deleted)
    assert s["at_central"] == len(central) - len(deleted)
    # A doubled row holds its id twice and its (stream, seq) twice.
    assert s["duplicated"] == 2 * len(doubled)
    assert result.ok == (not deleted and not doubled)


def test_centrals_own_verdict_on_each_file_is_checked() -> None:
    side = _kiosk()
    sha = hashlib.sha256(PAGE).hexdigest()
    good = {(KIOSK, "A1"): ("complete", sha)}
    assert audit([side], _central(side), _stream(side), good).ok
    for verdict in (
        {},
        {(KIOSK, "A1"): ("corrupt", "0" * 64)},
        {(KIOSK, "A1"): ("complete", "1" * 64)},
    ):
        result = audit([side], _central(side), _stream(side), verdict)
        assert not result.ok and result.summary()["hash_mismatch"] == 1, verdict
