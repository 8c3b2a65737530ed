"""Invariant 7 at the broker, with the shipped configuration and identities.

Every test here runs mosquitto with what ``aps-central broker-config`` generates,
as installed on Debian (tests/conftest.py), and the identities of
central.broker_identities. The generator itself: tests/test_broker_config.py;
the other attacks: tests/test_broker_attacks.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from central.broker_identities import (
    BrokerIdentityError,
    DynsecAdmin,
    kiosk_commands,
    remove_kiosk_commands,
)
from central.collector import Collector, CollectorSettings
from central.mosquitto import MosquittoProcess
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import acks_topic, records_topic
from sync.mqtt_link import MqttSettings
from sync.outbox import Outbox
from tests import identity as keyring
from tests import stack
from tests.mqtt_probe import probe
from tests.waiting import wait_until

SHARE = "$share/aps-collectors/aps/v1/+/up/records"


@pytest.fixture
def collector_of() -> Iterator[dict[str, Collector]]:
    started: dict[str, Collector] = {}
    yield started
    for c in started.values():
        c.stop()


def _collector(
    broker: MosquittoProcess, central_db: Path, name: str, group: str | None = None
) -> Collector:
    c = Collector(
        store_factory=lambda: SQLiteStore(central_db),
        mqtt_settings=broker.collector(name),
        settings=CollectorSettings(
            client_id=name, shared_group=group, reconnect_min_s=0.1, reconnect_max_s=0.5
        ),
        **keyring.CENTRAL,
    )
    c.start()
    wait_until(c.online.is_set, 30, f"{name} subscribed")
    return c


def _kiosk(broker: MosquittoProcess, db: Path, kiosk: str, **sync: Any) -> SyncClient:
    client = SyncClient(
        database=db,
        kiosk=kiosk,
        mqtt_settings=broker.kiosk(kiosk),
        settings=SyncSettings(**{"tick_s": 0.05, "ack_timeout_s": 600, **sync}),
        identity=keyring.kiosk_identity(),
    )
    client.start()
    return client


# -- item 7: nobody is anonymous ---------------------


def test_nobody_gets_in_without_an_identity(broker: MosquittoProcess) -> None:
    local = broker.collector()
    anonymous = probe(MqttSettings(port=local.port), "anyone")
    wrong = probe(replace(local, password="guess"), "aps-collector-1")
    assert anonymous.refused and wrong.refused
    # A certificate the CA signed for a name that was never enrolled: in, but allowed nothing.
    stranger = probe(broker.kiosk_certificate("k-stranger"), "k-stranger")
    assert stranger.connected.is_set()
    assert stranger.subscribe("aps/v1/k-stranger/down/#", "#") == [128, 128]
    # Without a client certificate the kiosk listener drops the connection before CONNACK.
    no_cert = probe(replace(broker.kiosk("k-acl-01"), tls_cert=None, tls_key=None), "k-acl-01")
    assert no_cert.disconnects and not no_cert.connected.is_set()
    for p in (anonymous, wrong, stranger, no_cert):
        p.stop()


def test_enrolment_refuses_central_names_and_revocation_disconnects(
    broker: MosquittoProcess,
) -> None:
    with pytest.raises(BrokerIdentityError, match="reserved"):
        kiosk_commands("aps-collector-9")
    k = probe(broker.kiosk("k-revoked"), "k-revoked")
    assert k.subscribe("aps/v1/k-revoked/down/#") == [1]
    DynsecAdmin(broker.admin()).run(remove_kiosk_commands("k-revoked"))
    wait_until(lambda: k.disconnects > 0, 10, "the revoked kiosk is disconnected")
    k.stop()


def test_a_kiosk_cannot_write_or_read_another_kiosks_topics(
    broker: MosquittoProcess, tmp_path: Path, collector_of: dict[str, Collector]
) -> None:
    central_db = tmp_path / "central.db"
    collector_of["c"] = _collector(broker, central_db, "aps-collector-1")

    # k-acl-01 forges a record from k-acl-02 (envelope and topic both say k-acl-02)
    # and asks for k-acl-02's acks: the subscription is refused outright.
    evil = probe(broker.kiosk("k-acl-01"), "k-acl-01")
    assert evil.subscribe(acks_topic("k-acl-02"), acks_topic("k-acl-01")) == [128, 1]
    forged = Outbox(tmp_path / "forged.db", "k-acl-02").add("rating", {"level": "hai_long"})
    evil.client.publish(records_topic("k-acl-02"), forged.encode(), qos=1).wait_for_publish(10)

    # The real k-acl-02 files and syncs normally.
    Outbox(tmp_path / "real.db", "k-acl-02").add("rating", {"level": "rat_hai_long"})
    real = _kiosk(broker, tmp_path / "real.db", "k-acl-02")
    store = SQLiteStore(central_db)
    try:
        wait_until(lambda: real.counters.acked == 1, 30, "k-acl-02 acked")
        # Then k-acl-01 sends a record of its own, on the same connection after the forgery,
        # and the collector acks it after k-acl-02's ack: once that ack is in, the forgery
        # (published earlier) and any leaked k-acl-02 ack (sent earlier) would be too.
        own = Outbox(tmp_path / "own.db", "k-acl-01").add("rating", {"level": "hai_long"})
        evil.client.publish(
            records_topic("k-acl-01"), keyring.signed(own.encode()), qos=1
        ).wait_for_publish(10)
        wait_until(
            lambda: any(t == acks_topic("k-acl-01") for t, _ in evil.messages), 30, "own ack"
        )
        assert forged.id not in store.record_ids("k-acl-02")
        assert len(store.record_ids("k-acl-02")) == 1
        assert [t for t, _ in evil.messages] == [acks_topic("k-acl-01")]
    finally:
        real.stop()
        evil.stop()
        store.close()


# -- item 8: a kiosk cannot take a turn of the collectors' messages ---------------------------


def test_a_kiosk_cannot_join_the_collectors_share_group(
    broker: MosquittoProcess, tmp_path: Path, collector_of: dict[str, Collector]
) -> None:
    central_db = tmp_path / "central.db"
    SQLiteStore(central_db).close()
    collector_of["c"] = _collector(broker, central_db, "aps-collector-1", group="aps-collectors")
    hostile = probe(broker.kiosk("k-hostile"), "k-hostile")
    assert hostile.subscribe(SHARE, "$share/aps-collectors/#", "#") == [128, 128, 128]

    kiosks = {}
    for k in ("k-share-01", "k-share-02"):
        stack.fill_outbox(tmp_path / f"{k}.db", 10, kiosk=k)
        kiosks[k] = _kiosk(broker, tmp_path / f"{k}.db", k)  # ack_timeout 600 s: no resends
    try:
        for k, client in kiosks.items():
            wait_until(lambda c=client: c.counters.acked == 10, 60, f"{k}: all 10 acked")
        assert all(c.counters.retransmitted == 0 for c in kiosks.values())
        assert hostile.messages == []
        assert collector_of["c"].counters.stored == 20
    finally:
        for client in kiosks.values():
            client.stop()
        hostile.stop()


# -- item 9: no identity can take another's client id or session -----------------------------


def test_nobody_can_take_the_collectors_client_id_or_session(broker: MosquittoProcess) -> None:
    # Bare clients, so that no resend logic can make up for a lost session.
    collector = probe(broker.collector("aps-collector-1"), "aps-collector-1", clean=False)
    assert collector.subscribe("aps/v1/+/up/records") == [1]
    collector.stop()  # its persistent session stays at the broker and queues what comes
    kiosk = probe(broker.kiosk(stack.KIOSK), stack.KIOSK)
    for i in range(10):
        kiosk.client.publish(records_topic(stack.KIOSK), b"r%d" % i, qos=1).wait_for_publish(10)

    # A kiosk certificate and another collector's password, each asking for the
    # collector's client id with a clean session (which would wipe its queue).
    thieves = [
        probe(broker.kiosk("k-thief"), "aps-collector-1"),
        probe(broker.collector("aps-collector-2"), "aps-collector-1"),
    ]
    for thief in thieves:
        # Connected under its own name (the listener forces it), or refused (dynsec binds
        # each collector's client id to its name): either way the session is not touched.
        assert thief.connected.is_set() or thief.refused
        thief.stop()

    again = probe(broker.collector("aps-collector-1"), "aps-collector-1", clean=False)
    try:
        wait_until(lambda: len(again.messages) == 10, 30, "the 10 queued records delivered")
        assert [p for _, p in again.messages] == [b"r%d" % i for i in range(10)]
    finally:
        again.stop()
        kiosk.stop()
