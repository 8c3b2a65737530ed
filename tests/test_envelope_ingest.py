"""Envelope decoding and central's classify/ingest on any input.

- ``sync.envelope.decode_record`` / ``decode_ack`` raise nothing but
  :class:`EnvelopeError`, whatever the bytes; ``central.ingest.classify``
  raises nothing at all, and whatever it accepts ``SQLiteStore.ingest`` can
  commit (one bad message must not poison a whole batch of other kiosks'
  records).
- ``Record.encode`` -> ``decode_record`` is the identity.
- Each kind of garbage gets the reason and the ack/reject decision that
  docs/protocol.md gives it, and lands in ``dead_letters``; a duplicate
  record is acked again but stored once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.ingest import Accept, DeadLetter
from central.store import SQLiteStore
from sync.envelope import (
    MAX_RECORD_BYTES,
    RECORD_KINDS,
    EnvelopeError,
    Record,
    decode_ack,
    decode_record,
    records_topic,
)
from sync.ids import STREAM_RE, ULID_RE, new_ulid
from sync.schemas import check_json_bounds
from tests import identity as keyring
from tests.pg import StoreFactory

KIOSK = "sadec-p1-k01"
OTHER = "sadec-p1-k02"
TOPIC = records_topic(KIOSK)
STREAM = "9f2c41d07a3e55b1"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any text, lone surrogates included (they reach Python through \\uD800 escapes).
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
any_text = st.text(max_size=20) | st.text(st.characters() | surrogates, max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 5, max_value=2**70)
    | st.floats()
    | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def _dump(obj: Any, *, ascii_only: bool = True) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _envelope(**changes: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "v": 1,
        "type": "record",
        "kind": "support",
        "kiosk": KIOSK,
        "stream": STREAM,
        "seq": 7,
        "id": new_ulid(),
        "created": "2026-11-26T09:15:02.123+07:00",
        "body": {"topic": "máy in", "message": "Hết giấy", "contact": "", "channel": "kiosk"},
    }
    env.update(changes)
    return env


def _dossier_body() -> dict[str, Any]:
    return {
        "code": "000.00.14.H56-261126-3017",
        "procedure": "1.001193",
        "form": {"ho_ten": "Nguyễn Thị Ngọc Hường"},
        "applicant": {"full_name": "Nguyễn Thị Ngọc Hường", "id_number": "079123456789"},
    }


def _only_envelope_errors(payload: bytes) -> None:
    for decode in (decode_record, decode_ack):
        try:
            decode(payload)
        except EnvelopeError as exc:
            assert exc.reason and str(exc) == exc.reason
        except Exception as exc:  # pragma: no cover - the failure we look for
            raise AssertionError(f"{decode.__name__} raised {exc!r}") from exc


def _classify_and_store(store: SQLiteStore, payload: bytes) -> Accept | DeadLetter:
    payload = keyring.signed(payload)  # as the kiosk would send it, if it is an object
    item = keyring.classify(TOPIC, payload)
    assert isinstance(item, Accept | DeadLetter)
    if isinstance(item, Accept):
        # What classify accepts is what central may store: well-formed ids...
        rec = item.record
        assert ULID_RE.fullmatch(rec.id) and STREAM_RE.fullmatch(rec.stream)
        assert rec.kiosk == KIOSK and 1 <= rec.seq < 2**63
        # ...and a body that is standard JSON in UTF-8 (what the store writes).
        json.dumps(rec.body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    else:
        assert item.reason and item.payload_len == len(payload)
        assert item.payload_head == payload[:4096]
    store.ingest([item])  # must commit, never raise
    return item


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = SQLiteStore(tmp_path_factory.mktemp("central") / "central.db")
    yield s
    s.close()


# -- any input --------------------------------------------------------------------


@FUZZ
@given(payload=st.binary(max_size=512))
def test_any_bytes(store: SQLiteStore, payload: bytes) -> None:
    _only_envelope_errors(payload)
    _classify_and_store(store, payload)


@FUZZ
@given(value=json_values, ascii_only=st.booleans())
def test_any_json(store: SQLiteStore, value: Any, ascii_only: bool) -> None:
    payload = _dump(value, ascii_only=ascii_only)
    _only_envelope_errors(payload)
    _classify_and_store(store, payload)


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(["v", "type", "kind", "kiosk", "stream", "seq", "id", "created", "body"]),
        json_values,
        max_size=3,
    ),
    body_extra=st.dictionaries(any_text, json_values, max_size=3),
)
def test_near_valid_records(
    store: SQLiteStore, changes: dict[str, Any], body_extra: dict[str, Any]
) -> None:
    env = _envelope(**changes)
    if isinstance(env["body"], dict):
        env["body"] = {**env["body"], **body_extra}
    payload = _dump(env)
    _only_envelope_errors(payload)
    _classify_and_store(store, payload)


@pytest.mark.parametrize(
    "payload",
    [
        _dump(_envelope(seq=2**63)),
        _dump(_envelope(seq=10**40)),
        b'{"v":1,"type":"record","seq":' + b"9" * 5000 + b"}",
        b'{"v":1,"type":"ack","acked":[' + b"1" * 5000 + b"]}",
        b'{"v":1e' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        _dump(_envelope(created="2026-11-26\ud800")),
        _dump(_envelope(body={"message": "lone \udc00 surrogate"})),
        _dump(_envelope(body={"message": "ok", "\ud83d": "key"})),
        _dump(_envelope(body={"message": "ok", "n": float("nan")})),
        _dump(_envelope(body={"message": "ok", "n": float("-inf")})),
        _dump(_envelope(body={"message": "ok", "n": 1}))[:-3] + b"1e999}}",
        _dump(_envelope(id=new_ulid() + "\n")),
        _dump(_envelope(stream=STREAM + "\n")),
        _dump(_envelope(kiosk=KIOSK + "\n")),
        b"\xef\xbb\xbf" + _dump(_envelope()),
        b"",
        b"null",
        b'"\\ud800"',
    ],
)
def test_known_nasty_inputs(store: SQLiteStore, payload: bytes) -> None:
    _only_envelope_errors(payload)
    item = _classify_and_store(store, payload)
    assert isinstance(item, DeadLetter)


def test_one_poisoned_message_does_not_sink_a_batch(store_factory: StoreFactory) -> None:
    store = store_factory()
    good = Record(**{k: v for k, v in _envelope().items() if k not in ("v", "type")})
    items = [
        keyring.classify(TOPIC, good.encode()),
        keyring.classify(TOPIC, _dump(_envelope(seq=2**64))),
        keyring.classify(TOPIC, _dump(_envelope(created="\ud800"))),
    ]
    outcome = store.ingest(items)
    assert outcome.acked[KIOSK] == [good.id] and outcome.stored == 1
    assert outcome.dead_letters == 2
    store.close()


# -- round trip --------------------------------------------------------------------

OFFSETS = [timezone(timedelta(minutes=m)) for m in (-14 * 60, -5 * 60 - 30, 0, 7 * 60, 14 * 60)]
OFFSETS.append(UTC)
# Bodies within the generic bounds (the round trip is about framing, not bounds).
bodies = st.dictionaries(st.text(max_size=10), json_values, max_size=5).filter(
    lambda b: _utf8_json(b) and check_json_bounds(b, level=2) is None
)


def _utf8_json(body: dict[str, Any]) -> bool:
    try:
        json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    return True


@FUZZ
@given(
    kind=st.sampled_from(sorted(RECORD_KINDS)),
    seq=st.integers(1, 2**63 - 1),
    rid=st.from_regex(r"\A[0-7][0-9A-HJKMNP-TV-Z]{25}\Z"),
    stream=st.from_regex(r"\A[0-9a-f]{16}\Z"),
    kiosk=st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,62}\Z").filter(lambda k: k != "fleet"),
    when=st.datetimes(timezones=st.sampled_from(OFFSETS)),
    timespec=st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds"]),
    body=bodies,
)
def test_record_round_trip(
    kind: str,
    seq: int,
    rid: str,
    stream: str,
    kiosk: str,
    when: datetime,
    timespec: str,
    body: dict[str, Any],
) -> None:
    created = when.isoformat(timespec=timespec)  # what the kiosk writes, any clock
    rec = Record(kind=kind, kiosk=kiosk, stream=stream, seq=seq, id=rid, created=created, body=body)
    payload = rec.encode()
    assert decode_record(payload) == rec
    assert decode_record(payload).body == body
    assert json.loads(payload)["v"] == 1
    # The parsed instant, exposed for the skew check (h-store), never raises.
    parsed = decode_record(payload).created_at()
    assert parsed.utcoffset() == when.utcoffset()
    assert parsed.replace(tzinfo=None) - when.replace(tzinfo=None) < timedelta(minutes=1)
    # In seconds, not datetimes: 0001-01-01T00:00+07:00 is before datetime.min in UTC.
    offset_s = (when.utcoffset() or timedelta(0)).total_seconds()
    local_s = (when.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds()
    assert abs(rec.created_unix() - (local_s - offset_s)) < 60


# -- each kind of garbage, through classify and the store --------------------------


def _chunk_body(data: bytes, digest: str | None = None) -> dict[str, Any]:
    return {
        "att": new_ulid(),
        "index": 0,
        "total": 1,
        "size": len(data),
        "sha256": digest or hashlib.sha256(data).hexdigest(),
        "data": base64.b64encode(data).decode(),
        "file_sha256": hashlib.sha256(data).hexdigest(),  # every chunk carries them
        "file_size": len(data),
    }


def test_garbage_is_dead_lettered_with_reasons_and_only_own_ids_rejected(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    unknown_kind = _envelope(kind="complaint")
    bad_body = _envelope(
        kind="dossier", body={"code": "000.00.14.H56-261126-3017", "procedure": "P", "form": {}}
    )
    bad_chunk = _envelope(kind="chunk", body=_chunk_body(b"photo", digest="0" * 64))
    foreign = _envelope(kiosk=OTHER)
    foreign_unknown_kind = _envelope(kiosk=OTHER, kind="complaint")
    future = _envelope(v=2)
    oversize = _envelope(body={"message": "x" * (MAX_RECORD_BYTES + 1)})
    bad_seq = _envelope(seq="7")  # our own kiosk's id: rejected so it stops resending
    good = _envelope(kind="dossier", seq=1, body=_dossier_body())
    good_chunk = _envelope(kind="chunk", seq=2, body=_chunk_body(b"photo"))
    cases: list[tuple[bytes, str, str | None]] = [
        # payload, expected reason prefix, id expected in `rejected` (None: not acked at all)
        (b"\x00\xff garbage \x80", "bad-json", None),
        (b"[1, 2, 3]", "not-an-object", None),
        (b'{"v": 1, "type": "record"}', "bad-envelope: kind: missing", None),
        (_dump(bad_seq), "bad-envelope: seq: expected int", bad_seq["id"]),
        (_dump(_envelope(id="not-a-ulid")), "bad-envelope: id:", None),
        (_dump(foreign), "kiosk-mismatch", None),
        (_dump(foreign_unknown_kind), "unknown-kind", None),
        (_dump(future), "unknown-version", None),
        (_dump(oversize), "oversize", None),
        (b"{" + b" " * (50 * 1024 * 1024) + b"}", "oversize", None),
        (_dump(unknown_kind), "unknown-kind", unknown_kind["id"]),
        (_dump(bad_body), "bad-body: body.applicant: missing", bad_body["id"]),
        (_dump(bad_chunk), "chunk-hash-mismatch", bad_chunk["id"]),
    ]
    cases = [(keyring.signed(p), reason, rid) for p, reason, rid in cases]
    items = [keyring.classify(TOPIC, payload) for payload, _, _ in cases]
    for item, (payload, reason, rejected_id) in zip(items, cases, strict=True):
        assert isinstance(item, DeadLetter), reason
        assert item.reason.startswith(reason), (item.reason, reason)
        assert item.reject is (rejected_id is not None), item.reason
        assert item.topic == TOPIC and item.topic_kiosk == KIOSK
        assert item.payload_len == len(payload) and len(item.payload_head) <= 4096
        if rejected_id is not None:
            assert item.record_id == rejected_id
    items += [keyring.classify(TOPIC, _dump(good)), keyring.classify(TOPIC, _dump(good_chunk))]
    outcome = store.ingest(items)

    # Only the two good records are stored and acked; only our own kiosk's
    # well-formed ids are rejected; kiosk-mismatch and unknown-version never acked.
    assert dict(outcome.acked) == {KIOSK: [good["id"], good_chunk["id"]]}
    assert sorted(r.id for r in outcome.rejected[KIOSK]) == sorted(
        c[2] for c in cases if c[2] is not None
    )
    assert set(outcome.rejected) == {KIOSK}
    assert outcome.stored == 2 and outcome.dead_letters == len(cases)
    acked_or_rejected = set(outcome.acked[KIOSK]) | {r.id for r in outcome.rejected[KIOSK]}
    for env in (foreign, foreign_unknown_kind, future):
        assert env["id"] not in acked_or_rejected
    assert sorted(store.record_ids()) == sorted([good["id"], good_chunk["id"]])

    dead = store.dead_letters()
    assert [d["reason"].split(":")[0] for d in dead] == [c[1].split(":")[0] for c in cases]
    assert all(d["topic"] == TOPIC and d["topic_kiosk"] == KIOSK for d in dead)
    by_reason = {d["reason"].split(":")[0]: d for d in dead}
    assert by_reason["kiosk-mismatch"]["record_id"] == foreign["id"]
    assert by_reason["bad-body"]["record_id"] == bad_body["id"]
    oversize_lens = [d["payload_len"] for d in dead if d["reason"].startswith("oversize")]
    assert oversize_lens == [len(cases[8][0]), 50 * 1024 * 1024 + 2]
    store.close()


def test_duplicates_are_acked_again_but_stored_once(store_factory: StoreFactory) -> None:
    store = store_factory()
    envs = [_envelope(seq=i, id=new_ulid()) for i in (1, 2, 3)]
    payloads = [_dump(e) for e in envs]
    first = store.ingest(
        [keyring.classify(TOPIC, p) for p in (payloads[0], payloads[0], payloads[2])]
    )
    assert first.acked[KIOSK] == [envs[0]["id"], envs[0]["id"], envs[2]["id"]]
    assert first.stored == 2 and first.duplicates == 1
    [state] = store.streams(KIOSK)
    assert (state.contiguous_seq, state.max_seq, state.gaps) == (1, 3, ((2, 2),))

    store.close()
    store = store_factory()  # a restarted collector
    again = store.ingest([keyring.classify(TOPIC, p) for p in payloads])
    assert again.acked[KIOSK] == [e["id"] for e in envs]
    assert again.stored == 1 and again.duplicates == 2
    assert sorted(store.record_ids(KIOSK)) == sorted(e["id"] for e in envs)
    [state] = store.streams(KIOSK)
    assert (state.contiguous_seq, state.max_seq, state.gaps) == (3, 3, ())
    ids = store.record_ids()
    assert len(ids) == len(set(ids))

    # The same seq with another id is not a duplicate: parked and rejected, not stored.
    clash = _envelope(seq=2, id=new_ulid())
    out = store.ingest([keyring.classify(TOPIC, _dump(clash))])
    assert out.stored == 0 and [r.id for r in out.rejected[KIOSK]] == [clash["id"]]
    assert out.rejected[KIOSK][0].reason.startswith("seq-conflict")
    assert clash["id"] not in store.record_ids(KIOSK)
    store.close()


def test_full_central_database_fails_the_batch_cleanly_and_recovers(tmp_path: Path) -> None:
    """A full store raises the real error, commits nothing, and takes the batch later."""
    store = SQLiteStore(tmp_path / "central.db")
    store.conn.execute("PRAGMA max_page_count=40")  # stands in for a full disk
    big = {"topic": "t", "message": "x" * 3000, "contact": "", "channel": "kiosk"}
    seq = 0
    with pytest.raises(sqlite3.OperationalError) as err:
        for _ in range(100):
            batch = [_dump(_envelope(seq=seq + i + 1, body=big)) for i in range(5)]
            store.ingest([keyring.classify(TOPIC, p) for p in batch])
            seq += 5
    assert "full" in str(err.value)  # not "cannot rollback - no transaction is active"
    assert not store.conn.in_transaction
    assert store.count() == seq  # whole batches only: the failed one left nothing
    store.conn.execute("PRAGMA max_page_count=1000000")  # space freed
    outcome = store.ingest([keyring.classify(TOPIC, p) for p in batch])
    assert outcome.stored == 5 and len(outcome.acked[KIOSK]) == 5
    [state] = store.streams(KIOSK)
    assert state.contiguous_seq == seq + 5 and state.gaps == ()
    store.close()
