"""Record ids (sync/ids.py): ULID test vectors, monotonic order, the limits of the format.

Vectors from the ULID specification's README (github.com/ulid/spec):
``ulid(1469918176385)`` -> ``01ARYZ6S41...``; the largest ULID is ``7ZZZZZZZZZZZZZZZZZZZZZZZZZ``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from sync import ids
from sync.ids import ULID_RE, new_ulid, ulid_time_ms

SPEC_MS = 1469918176385  # the ULID specification's example timestamp


@pytest.fixture(autouse=True)
def fresh_generator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Each test starts from a new generator; the process-wide one is put back after.
    monkeypatch.setattr(ids, "_record_ids", ids.RecordIds())
    yield


def _fixed_randomness(monkeypatch: pytest.MonkeyPatch, value: bytes) -> None:
    monkeypatch.setattr(os, "urandom", lambda n: value[:n])


def test_spec_vector_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_randomness(monkeypatch, bytes(10))
    rid = new_ulid(now_ms=SPEC_MS)
    assert rid == "01ARYZ6S41" + "0" * 16
    assert ulid_time_ms(rid) == SPEC_MS
    assert ulid_time_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV") == 1469922850259  # the spec's other example


@pytest.mark.parametrize(
    ("randomness", "tail"),
    [
        (bytes(9) + b"\x01", "0" * 15 + "1"),
        (b"\xff" * 10, "Z" * 16),
        (bytes.fromhex("0123456789abcdef0123"), "04HMASW9NF6YY093"),
    ],
)
def test_randomness_is_crockford_base32(
    monkeypatch: pytest.MonkeyPatch, randomness: bytes, tail: str
) -> None:
    _fixed_randomness(monkeypatch, randomness)
    rid = new_ulid(now_ms=1)
    assert rid == "0000000001" + tail
    assert int.from_bytes(randomness, "big") == _crockford_value(rid[10:])


def _crockford_value(text: str) -> int:
    value = 0
    for ch in text:
        value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(ch)
    return value


def test_largest_timestamp_is_the_largest_ulid(monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_randomness(monkeypatch, b"\xff" * 10)
    assert new_ulid(now_ms=2**48 - 1) == "7" + "Z" * 25


def test_timestamp_beyond_48_bits_is_refused_not_wrapped() -> None:
    with pytest.raises(ids.IdError, match="48 bits"):
        new_ulid(now_ms=2**48)


def test_same_millisecond_ids_sort_in_the_order_they_were_made() -> None:
    made = [new_ulid(now_ms=SPEC_MS) for _ in range(1000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(ULID_RE.match(r) and ulid_time_ms(r) == SPEC_MS for r in made)


def test_randomness_exhausted_in_one_millisecond_carries_into_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first draw of the millisecond is the largest 80-bit value: the next id
    # of that millisecond has no room left. It must still sort after (the old
    # encoder wrapped to zero: an id smaller than the one before it).
    _fixed_randomness(monkeypatch, b"\xff" * 10)
    first = new_ulid(now_ms=SPEC_MS)
    second = new_ulid(now_ms=SPEC_MS)
    third = new_ulid(now_ms=SPEC_MS)
    assert first < second < third
    assert all(ULID_RE.match(r) for r in (first, second, third))
    assert ulid_time_ms(second) == SPEC_MS + 1


def test_clock_stepping_back_does_not_reorder_ids() -> None:
    # A Pi without a real-time clock gets its time from NTP, which can step back.
    before = new_ulid(now_ms=SPEC_MS + 5000)
    after = new_ulid(now_ms=SPEC_MS)
    assert before < after


def test_ids_from_many_threads_are_unique() -> None:
    out: list[list[str]] = [[] for _ in range(8)]

    def make(bucket: list[str]) -> None:
        bucket.extend(new_ulid() for _ in range(2000))

    threads = [threading.Thread(target=make, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [r for bucket in out for r in bucket]
    assert len(set(every)) == len(every)
    assert all(bucket == sorted(bucket) for bucket in out)


def test_malformed_id_has_no_time() -> None:
    with pytest.raises(ids.IdError, match="ULID"):
        ulid_time_ms("01ARYZ6S41-not-a-ulid")
