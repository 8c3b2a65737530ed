"""Heartbeats and status messages are bounded when classified (issue 6, item 1).

A heartbeat whose ``queued`` is 2^64 (or below -2^63) used to reach
``store.ingest`` and raise ``OverflowError``, rolling back every kiosk's batch.
Now every field the protocol names is held to its range when classified, so it
is dead-lettered naming the field and the store never sees it; whatever
``classify_fleet`` accepts, the store commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.ingest import DeadLetter, FleetUpdate, classify_fleet
from central.store import SQLiteStore
from sync.envelope import encode_heartbeat, encode_status, heartbeat_topic, status_topic
from sync.schemas import (
    DEVICE_ERROR_CHARS,
    INT64_MAX,
    INT64_MIN,
    MAX_BYTES_FIELD,
    MAX_COUNT,
    MAX_DEVICES,
    MAX_JSON_DEPTH,
    MAX_SECONDS,
    SchemaError,
    check_fleet_message,
)

KIOSK = "k-fleet-01"
TS = "2026-11-26T09:15:02+07:00"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path_factory.mktemp("central") / "central.db")
    yield s
    s.close()


def heartbeat(**fields: Any) -> dict[str, Any]:
    """What SyncClient._heartbeat and the agent send today."""
    hb: dict[str, Any] = {
        "v": 1,
        "type": "heartbeat",
        "kiosk": KIOSK,
        "ts": TS,
        "queued": 3,
        "rejected": 0,
        "oldest_queued": "2026-11-26T09:14:00.123+07:00",
        "db_bytes": 4096,
        "uptime_s": 120,
        "agent_version": "0.1.0",
        "devices": {
            "printer": {
                "state": "paper_out",
                "last_error": "paper out",
                "since": "2026-11-26T02:10:00+00:00",
                "pending_receipts": 2,
            },
            "scanner": {"state": "ok", "last_error": None, "since": "2026-11-26T02:00:00+00:00"},
        },
        "disk_free_bytes": 10**9,
        "oldest_queued_s": 62.5,
    }
    hb.update(fields)
    return hb


def classify_hb(obj: dict[str, Any]) -> FleetUpdate | DeadLetter:
    return classify_fleet(heartbeat_topic(KIOSK), json.dumps(obj).encode())


def test_what_the_kiosk_sends_is_accepted(store: SQLiteStore) -> None:
    for payload, topic in [
        (json.dumps(heartbeat()).encode(), heartbeat_topic(KIOSK)),
        (encode_heartbeat(KIOSK, TS, queued=0, oldest_queued=None), heartbeat_topic(KIOSK)),
        (encode_status(KIOSK, "online", TS), status_topic(KIOSK)),
        (encode_status(KIOSK, "offline", "2026-11-26T09:15:02.123+07:00"), status_topic(KIOSK)),
    ]:
        item = classify_fleet(topic, payload)
        assert isinstance(item, FleetUpdate), item
        store.ingest([item])


def test_a_poisoned_heartbeat_is_dead_lettered_and_the_rest_of_the_batch_commits(
    tmp_path: Path,
) -> None:
    """The issue's reproduction: before, store.ingest raised OverflowError for all."""
    store = SQLiteStore(tmp_path / "central.db")
    items = [
        classify_hb(heartbeat(queued=2**64)),
        classify_hb(heartbeat(queued=-(2**63) - 1)),
        classify_fleet(status_topic("k-fleet-02"), encode_status("k-fleet-02", "online", TS)),
    ]
    assert [type(i).__name__ for i in items] == ["DeadLetter", "DeadLetter", "FleetUpdate"]
    for dead in items[:2]:
        assert isinstance(dead, DeadLetter) and dead.reason.startswith("bad-envelope: queued: ")
        assert dead.topic_kiosk == KIOSK
    outcome = store.ingest(items)
    assert outcome.dead_letters == 2
    fleet = {k["kiosk"]: k for k in store.fleet()}
    assert KIOSK not in fleet and fleet["k-fleet-02"]["state"] == "online"
    store.close()


INT_FIELDS: list[tuple[tuple[str, ...], int, int]] = [
    (("queued",), 0, MAX_COUNT),
    (("rejected",), 0, MAX_COUNT),
    (("db_bytes",), 0, MAX_BYTES_FIELD),
    (("disk_free_bytes",), 0, MAX_BYTES_FIELD),
    (("uptime_s",), 0, MAX_SECONDS),
    (("oldest_queued_s",), 0, MAX_SECONDS),
    (("devices", "printer", "pending_receipts"), 0, MAX_COUNT),
]


def around(low: int, high: int) -> st.SearchStrategy[int]:
    return (
        st.integers(low - 3, low + 3)
        | st.integers(high - 3, high + 3)
        | st.sampled_from([INT64_MIN - 1, INT64_MIN, INT64_MAX, INT64_MAX + 1, 2**64, -(2**70)])
    )


def _set(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = obj
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return obj


@FUZZ
@given(data=st.data(), case=st.sampled_from(INT_FIELDS))
def test_heartbeat_integers_at_and_past_their_bounds(
    store: SQLiteStore, data: st.DataObject, case: tuple[tuple[str, ...], int, int]
) -> None:
    path, low, high = case
    value = data.draw(around(low, high))
    item = classify_hb(_set(heartbeat(), path, value))
    if low <= value <= high:
        assert isinstance(item, FleetUpdate), item
    else:
        assert isinstance(item, DeadLetter)
        assert item.reason.startswith(f"bad-envelope: {'.'.join(path)}: "), item.reason
    store.ingest([item])  # never raises


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"queued": "3"}, "queued"),  # strict: no coercion
        ({"queued": True}, "queued"),
        ({"queued": 1.5}, "queued"),
        ({"ts": "t" * 41}, "ts"),
        ({"oldest_queued": "soon"}, "oldest_queued"),
        ({"agent_version": "v" * 65}, "agent_version"),
        ({"devices": {f"d{i}": {"state": "ok"} for i in range(MAX_DEVICES + 1)}}, "devices"),
        ({"devices": {"printer": {"state": "x" * 33}}}, "devices.printer.state"),
        (
            {
                "devices": {
                    "printer": {"state": "error", "last_error": "e" * (DEVICE_ERROR_CHARS + 1)}
                }
            },
            "devices.printer.last_error",
        ),
        ({"devices": {"printer": "ok"}}, "devices.printer"),
        ({"uptime_s": float(MAX_SECONDS) * 2}, "uptime_s"),
    ],
)
def test_heartbeat_fields_are_checked_by_name(changes: dict[str, Any], field: str) -> None:
    item = classify_hb(heartbeat(**changes))
    assert isinstance(item, DeadLetter) and item.reason.startswith(f"bad-envelope: {field}: ")


def test_status_state_and_generic_bounds() -> None:
    bad_state = json.loads(encode_status(KIOSK, "online", TS))
    bad_state["state"] = "dancing"
    item = classify_fleet(status_topic(KIOSK), json.dumps(bad_state).encode())
    assert isinstance(item, DeadLetter) and item.reason.startswith("bad-envelope: state: ")
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH):
        deep = {"x": deep}
    for extra in ({"future": deep}, {"future": 2**63}, {"future": [0] * 1025}):
        item = classify_hb(heartbeat(**extra))
        assert isinstance(item, DeadLetter) and item.reason.startswith("bad-envelope: ")
    # Unknown fields within the bounds are kept (versioning: ignored, not refused).
    assert isinstance(classify_hb(heartbeat(duplicate_identity_kicks=3)), FleetUpdate)


@FUZZ
@given(
    payload=st.binary(max_size=256)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode()),
    near=st.dictionaries(
        st.sampled_from(["queued", "ts", "devices", "state", "kiosk", "v", "type", "db_bytes"]),
        st.none() | st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
        max_size=3,
    ),
    topic=st.sampled_from([heartbeat_topic(KIOSK), status_topic(KIOSK), "aps/v1/x"]),
)
def test_classify_fleet_never_raises_and_the_store_takes_what_it_accepts(
    store: SQLiteStore, payload: bytes, near: dict[str, Any], topic: str
) -> None:
    for p in (payload, json.dumps(heartbeat(**near)).encode()):
        item = classify_fleet(topic, p)
        assert isinstance(item, FleetUpdate | DeadLetter)
        store.ingest([item])


def test_heartbeat_fields_of_the_kiosk_application_are_bounded() -> None:
    """What issue 7 added to heartbeats (catalogue status, downlink cursor, SUBACK
    refusals) is held to ranges like the rest, so a bad value cannot grow a row."""
    good = {
        "reconnects": 3,
        "identity_conflicts": 0,
        "subscribe_failures": 1,
        "downlink_cursor": 2**63 - 1,
        "catalogue": {"version": "2026.12.1", "rejected_version": "2026.12.2", "error": "x" * 300},
    }
    check_fleet_message("heartbeat", good)
    for field, value in [
        ("downlink_cursor", -1),
        ("subscribe_failures", 10**9 + 1),
        ("catalogue", {"version": "v" * 65}),
        ("catalogue", {"error": "e" * 2001}),
        ("catalogue", "2026.12.1"),
    ]:
        with pytest.raises(SchemaError) as err:
            check_fleet_message("heartbeat", {**good, field: value})
        assert field in str(err.value)
