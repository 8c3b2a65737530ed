"""Two boxes presenting one kiosk identity: the status ``instance`` and central's alert.

The detector's rules are tried as tables (sans-I/O); then end to end: two
sync clients with one kiosk certificate against the generated broker
configuration and a real collector, and the two look-alikes that must not
alert (a reconnect after a network cut, a restart).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from central.cli import main as central_cli
from central.collector import Collector, CollectorSettings
from central.fleet.duplicates import DuplicateDetector, DuplicateWatch, duplicate_identities
from central.ingest import FleetUpdate, classify_fleet
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import encode_status, new_instance, status_topic
from sync.schemas import INSTANCE_RE
from tests import identity, stack
from tests.pg import CentralDb
from tests.waiting import wait_until

K = "k-twin"
X, Y, Z = "1" * 16 + ".a" + "0" * 15, "2" * 16 + ".b" + "0" * 15, "3" * 16 + ".a" + "0" * 15


# -- the instance on the wire -----------------------------------------------------------------


def test_the_instance_is_new_per_start_and_stable_per_box(tmp_path: Path) -> None:
    box_a, box_b = tmp_path / "a", tmp_path / "b"
    box_a.write_text("0123456789abcdef0123456789abcdef\n")
    box_b.write_text("fedcba9876543210fedcba9876543210\n")
    first, second, other = new_instance(box_a), new_instance(box_a), new_instance(box_b)
    assert all(INSTANCE_RE.match(i) for i in (first, second, other))
    assert first.split(".")[0] != second.split(".")[0]  # a new run
    assert first.split(".")[1] == second.split(".")[1] != other.split(".")[1]  # the box
    assert "0123456789abcdef" not in first  # the machine id itself is not sent
    assert new_instance(tmp_path / "missing").endswith("." + "0" * 16)


def test_central_accepts_the_instance_and_refuses_a_malformed_one() -> None:
    ok = classify_fleet(status_topic(K), encode_status(K, "online", "t", instance=X))
    assert isinstance(ok, FleetUpdate) and ok.body["instance"] == X
    old = classify_fleet(status_topic(K), encode_status(K, "online", "t"))
    assert isinstance(old, FleetUpdate)  # agents from before keep working
    bad = classify_fleet(status_topic(K), encode_status(K, "online", "t", instance="x" * 500))
    assert not isinstance(bad, FleetUpdate) and "instance" in bad.reason


# -- the detector's rules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "alerts"),
    [
        # the ping-pong of two boxes: X, Y, X -> one alert, and once only
        ([("online", X), ("online", Y), ("online", X)], [(X, Y)]),
        ([("online", X), ("online", Y)] * 5, [(X, Y)]),
        # a network cut: the same instance again
        ([("online", X), ("offline", X), ("online", X), ("online", X)], []),
        # a clean restart, and one whose old Will is seen late (offline statuses never count)
        ([("online", X), ("offline", X), ("online", Y)], []),
        ([("online", X), ("online", Y), ("offline", X), ("online", Y)], []),
        # three restarts in a row
        ([("online", X), ("online", Y), ("online", Z)], []),
        # an agent from before the instance field
        ([("online", None), ("online", Y), ("online", None)], []),
    ],
)
def test_the_detector_alerts_on_alternation_only(
    statuses: list[tuple[str, str | None]], alerts: list[tuple[str, str]]
) -> None:
    detector = DuplicateDetector(window_s=600)
    got = [detector.observe(K, s, i, now=float(n)) for n, (s, i) in enumerate(statuses)]
    assert [a.instances for a in got if a is not None] == [tuple(sorted(p)) for p in alerts]


def test_every_later_alternation_is_a_sighting_of_the_known_pair() -> None:
    detector = DuplicateDetector(window_s=600)
    statuses = [X, Y] * 4 + [Z, X]
    got = [detector.sight(K, "online", i, now=float(n)) for n, i in enumerate(statuses)]
    seen = [(a.instances, a.at, new) for a, new in (g for g in got if g is not None)]
    xy, xz = tuple(sorted((X, Y))), tuple(sorted((X, Z)))
    # X, Y, X: new; each further turn: seen again; Z then X: a second pair, new.
    assert seen == [(xy, 2.0, True), *[(xy, float(n), False) for n in range(3, 8)], (xz, 9.0, True)]


def test_alternation_spread_beyond_the_window_does_not_alert() -> None:
    detector = DuplicateDetector(window_s=60)
    assert detector.observe(K, "online", X, now=0.0) is None
    assert detector.observe(K, "online", Y, now=50.0) is None
    assert detector.observe(K, "online", X, now=100.0) is None  # X at 0 s is out of the window
    assert detector.observe(K, "online", Y, now=105.0) is not None  # Y, X, Y within 55 s


@given(st.lists(st.sampled_from(["online", "offline"]), max_size=30))
def test_one_instance_never_alerts_and_memory_is_bounded(states: list[str]) -> None:
    detector = DuplicateDetector(window_s=600, max_kiosks=2)
    for n, state in enumerate(states):
        assert detector.observe(f"k-{n % 3}", state, X, now=float(n)) is None
    assert len(detector) <= 2
    assert all(len(detector.history(f"k-{n}")) <= 8 for n in range(3))


def test_the_collectors_adapter_records_the_pair_in_either_store(central_db: CentralDb) -> None:
    """What the collector calls after each batch: the pair's row, first and last sighting."""
    conn = central_db.connect()  # central's tables, as the service makes them at its start
    store = central_db.store()
    watch = DuplicateWatch()
    for n, instance in enumerate([X, Y, X, Y]):
        status = FleetUpdate(kiosk=K, type="status", body={"state": "online", "instance": instance})
        watch.observe_batch(store, [status], now=100.0 + n)
    assert [a.instances for a in watch.alerts] == [tuple(sorted((X, Y)))]
    assert duplicate_identities(conn) == {K: [sorted((X, Y))]}
    row = conn.execute("SELECT first_at, last_at FROM identity_alerts").fetchone()
    assert tuple(row) == (102.0, 103.0)


# -- end to end: two boxes, one certificate -----------------------------------------------------


@pytest.fixture
def collector(broker: MosquittoProcess, tmp_path: Path) -> Iterator[Collector]:
    c = Collector(
        store_factory=lambda: SQLiteStore(tmp_path / "central.db"),
        mqtt_settings=broker.collector("aps-collector-1"),
        settings=CollectorSettings(
            client_id="aps-collector-1", reconnect_min_s=0.1, reconnect_max_s=0.5
        ),
        **identity.CENTRAL,
    )
    c.start()
    wait_until(c.online.is_set, 30, "collector subscribed")
    yield c
    c.stop()


def _box(broker: MosquittoProcess, db: Path) -> SyncClient:
    client = SyncClient(
        database=db,
        kiosk=K,
        mqtt_settings=broker.kiosk(K),
        settings=SyncSettings(tick_s=0.05, reconnect_min_s=0.05, reconnect_max_s=0.2),
        identity=identity.kiosk_identity(),  # a clone copies the keys with the certificate
    )
    client.start()
    return client


def _history(c: Collector) -> list[str]:
    return c.duplicates.detector.history(K)


def test_two_boxes_with_one_certificate_raise_one_alert(
    broker: MosquittoProcess,
    collector: Collector,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aps.central.fleet")
    genuine = _box(broker, tmp_path / "genuine.db")
    wait_until(lambda: _history(collector) == [genuine.instance], 30, "genuine online")
    clone = _box(broker, tmp_path / "clone.db")
    try:
        # They take the connection from each other; let them do it several times.
        wait_until(
            lambda: genuine.counters.connects >= 3 and clone.counters.connects >= 3,
            60,
            "three rounds of ping-pong",
        )
        wait_until(lambda: collector.duplicates.alerts, 30, "the alert")
        history = _history(collector)
        wait_until(lambda: len(_history(collector)) > len(history), 30, "more ping-pong seen")
    finally:
        clone.stop()
        genuine.stop()
    pair = tuple(sorted((genuine.instance, clone.instance)))
    assert [a.instances for a in collector.duplicates.alerts] == [pair]  # once, deduplicated
    alerts = [r for r in caplog.records if "two boxes use one identity" in r.getMessage()]
    assert len(alerts) == 1 and alerts[0].levelno == logging.WARNING
    assert all(i in alerts[0].getMessage() for i in pair)

    cfg = stack.write_central_config(
        tmp_path / "central.toml", tmp_path / "central.db", broker.collector("aps-collector-1")
    )
    result = CliRunner().invoke(central_cli, ["fleet", "--json", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    rows = {r["kiosk"]: r for r in map(json.loads, result.output.splitlines())}
    assert rows[K]["duplicate_identity"] == [list(pair)]
    assert all(r["duplicate_identity"] == [] for k, r in rows.items() if k != K)
    with sqlite3.connect(tmp_path / "central.db") as conn:
        assert duplicate_identities(conn) == {K: [list(pair)]}


def test_a_network_cut_and_a_restart_raise_no_alert(
    broker: MosquittoProcess, collector: Collector, tmp_path: Path
) -> None:
    box = _box(broker, tmp_path / "box.db")
    try:
        wait_until(lambda: _history(collector) == [box.instance], 30, "online")
        broker.restart()  # every connection cut; the box comes back as the same instance
        wait_until(lambda: box.counters.connects >= 2, 30, "the box reconnected")
        wait_until(lambda: len(_history(collector)) >= 2, 30, "its second online seen")
        assert set(_history(collector)) == {box.instance}
    finally:
        box.stop()
    restarted = _box(broker, tmp_path / "box.db")  # the agent restarted: a new run
    try:
        wait_until(lambda: _history(collector)[-1] == restarted.instance, 30, "new run online")
    finally:
        restarted.stop()
    assert restarted.instance != box.instance
    assert restarted.instance.split(".")[1] == box.instance.split(".")[1]  # the same box
    assert collector.duplicates.alerts == []
