"""Two AMQP collectors on a private 3-node RabbitMQ cluster, kiosks speaking MQTT (issue 11).

Kiosks (real :class:`sync.client.SyncClient`, MQTT 3.1.1, clean sessions) are connected to
three different nodes; two :class:`central.amqp_source.AmqpCollector` consume the uplink
quorum queue as competing consumers, from nodes 1 and 2, into one SQLite store. Mid-run
node 3 is killed and restarted, then node 1, the node the first collector and the first
kiosk are on. What must hold at the end: every record once at central and ``acked`` on its
kiosk, no sequence gap, both collectors took a share, the first collector moved to another
node, and every ack, as it reached a kiosk's topic, named only records central had
committed. A second test turns the store's COMMIT off: nothing is acked meanwhile, and
everything arrives once it is back.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.amqp_source import AmqpCollector, AmqpSettings
from central.downlink import DownlinkService, DownlinkSettings
from central.quotas import Quotas, QuotaSettings
from central.rabbitmq_identities import provision_collector, provision_kiosk
from central.store import SQLiteStore
from sync.client import SyncClient, SyncSettings
from sync.envelope import Ack
from sync.mqtt_link import MqttSettings
from tests import downlink_stack, rabbit_cluster, stack
from tests import identity as keyring
from tests.ack_watch import AckWatch
from tests.rabbit_cluster import RabbitCluster
from tests.rabbit_mqtt_ready import mqtt_ready
from tests.test_ack_after_commit import CommitFault, FailingCommitStore
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

COLLECTOR = ("aps-collector", "collector-pw")
WATCHER = ("ack-watcher", "watcher-pw")  # the test's own eyes, allowed everything
QUEUES = {
    "aps-collector": "aps.uplink",
    "aps-collector-d": "aps.uplink.d",
    "aps-collector-r": "aps.uplink.r",
    "aps-collector-s": "aps.uplink.s",
    "aps-collector-p": "aps.uplink.p",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    assert rabbit_cluster.available(), "rabbitmq-server missing: apt-get install -y rabbitmq-server"
    for c in rabbit_cluster.cluster(tmp_path_factory.mktemp("rabbit")):
        for user, queue in QUEUES.items():  # the production path: central/rabbitmq_identities.py
            provision_collector(functools.partial(c.ctl, 1), user, COLLECTOR[1], queue)
        c.add_user(*WATCHER)
        mqtt_ready(c, *WATCHER)  # the client-id tracker answers on every node
        yield c


def amqp_url(cluster: RabbitCluster, n: int) -> str:
    return f"amqp://127.0.0.1:{cluster.nodes[n - 1].amqp_port}/%2F"


def collector(
    cluster: RabbitCluster,
    name: str,
    nodes: tuple[int, ...],
    store: object,
    user: str = COLLECTOR[0],
    quotas: Quotas | None = None,
) -> AmqpCollector:
    settings = AmqpSettings(
        urls=tuple(amqp_url(cluster, n) for n in nodes),
        username=user,
        password=COLLECTOR[1],
        queue=QUEUES[user],
        prefetch=200,
        name=name,
        batch_max=100,
        reconnect_min_s=0.2,
        reconnect_max_s=2.0,
        heartbeat_s=5,
    )
    return AmqpCollector(store_factory=store, settings=settings, quotas=quotas, **keyring.CENTRAL)  # type: ignore[arg-type]


def kiosk_mqtt(cluster: RabbitCluster, n: int, kiosk: str) -> MqttSettings:
    provision_kiosk(functools.partial(cluster.ctl, 1), kiosk, f"{kiosk}-pw")
    return MqttSettings(
        port=cluster.nodes[n - 1].mqtt_port, username=kiosk, password=f"{kiosk}-pw", keepalive_s=5
    )


def kiosk_client(db: Path, kiosk: str, mqtt: MqttSettings, ack_timeout_s: float = 3) -> SyncClient:
    return SyncClient(
        database=db,
        kiosk=kiosk,
        mqtt_settings=mqtt,
        settings=SyncSettings(
            inflight_window=32,
            ack_timeout_s=ack_timeout_s,
            tick_s=0.05,
            reconnect_min_s=0.2,
            reconnect_max_s=2,
        ),
        identity=keyring.kiosk_identity(),
    )


def watch_committed(mqtt: MqttSettings, kiosk: str, central_db: Path) -> AckWatch[set[str]]:
    """Each ack on ``kiosk``'s topic as it arrives: the ids it names central does not hold."""

    def not_yet_committed(ack: Ack) -> set[str]:
        return set(ack.acked) - set(stack.central_ids(central_db, kiosk))

    return AckWatch(mqtt, kiosk, not_yet_committed).start()


def queue_depth(cluster: RabbitCluster, queue: str) -> int:
    """Messages in ``queue``, ready or delivered and not yet acked (rabbitmqctl)."""
    out = cluster.ctl(2, "list_queues", "-q", "name", "messages")
    for line in out.splitlines():
        name, _, count = line.strip().partition("\t")
        if name == queue:
            return int(count)
    return -1


def all_acked(db: Path, ids: list[str]) -> bool:
    states = stack.kiosk_states(db)
    return all(states.get(i) == "acked" for i in ids)


def test_two_amqp_collectors_every_record_once_across_node_deaths(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    central_db = tmp_path / "central.db"
    SQLiteStore(central_db).close()
    kiosks = {f"k-amqp-{n}": n for n in (1, 2, 3)}  # kiosk -> the node it speaks MQTT to
    dbs = {k: tmp_path / f"{k}.db" for k in kiosks}
    sent = {k: stack.fill_outbox(dbs[k], 150, kiosk=k) for k in kiosks}
    collectors = [
        collector(cluster, "aps-collector-1", (1, 2, 3), lambda: SQLiteStore(central_db)),
        collector(cluster, "aps-collector-2", (2, 3, 1), lambda: SQLiteStore(central_db)),
    ]
    watcher = MqttSettings(
        port=cluster.nodes[1].mqtt_port, username=WATCHER[0], password=WATCHER[1]
    )  # on node 2, never killed here
    watches = [watch_committed(watcher, k, central_db) for k in kiosks]
    for c in collectors:
        c.start()
    for c in collectors:
        wait_until(c.online.is_set, 60, "collector consuming")
    clients = [kiosk_client(dbs[k], k, kiosk_mqtt(cluster, n, k)) for k, n in kiosks.items()]
    for cl in clients:
        cl.start()
    total = lambda: sum(stack.central_count(central_db, k) for k in kiosks)  # noqa: E731
    try:
        wait_until(lambda: total() >= 150, 120, "records flowing")
        cluster.kill(3)  # kiosk 3's node, no collector's
        for k in kiosks:
            sent[k] += stack.fill_outbox(dbs[k], 150, kiosk=k, start=151)
        wait_until(
            lambda: all(all_acked(dbs[k], sent[k]) for k in ("k-amqp-1", "k-amqp-2")),
            120,
            "kiosks 1 and 2 drained with node 3 dead",
        )
        cluster.start_node(3)
        cluster.wait_node(3)
        wait_until(lambda: all_acked(dbs["k-amqp-3"], sent["k-amqp-3"]), 120, "kiosk 3 back")
        for k in kiosks:
            sent[k] += stack.fill_outbox(dbs[k], 150, kiosk=k, start=301)
        cluster.kill(1)  # collector 1's node (and kiosk 1's)
        wait_until(
            lambda: (
                collectors[0].connected_url not in (None, amqp_url(cluster, 1))
                and collectors[0].online.is_set()
            ),
            120,
            "collector 1 on another node",
        )
        for k in ("k-amqp-2", "k-amqp-3"):
            sent[k] += stack.fill_outbox(dbs[k], 100, kiosk=k, start=451)
        cluster.start_node(1)
        cluster.wait_node(1)
        for k in kiosks:
            wait_until(lambda k=k: all_acked(dbs[k], sent[k]), 180, f"{k} all acked")
    finally:
        for cl in clients:
            cl.stop()
        for c in collectors:
            c.stop()
    wait_until(lambda: all(w.acked_ids() for w in watches), 30, "the watches heard acks")
    for w in watches:
        w.stop()
    store = SQLiteStore(central_db)
    try:
        for k in kiosks:
            ids = stack.central_ids(central_db, k)
            assert len(ids) == len(set(ids)) == len(sent[k]), k
            assert set(ids) == set(sent[k]), k
            assert set(stack.kiosk_states(dbs[k]).values()) == {"acked"}, k
            streams = store.streams(k)
            assert streams, k
            for st in streams:
                assert st.gaps == () and st.gap_count == 0, (k, st)
                assert st.contiguous_seq == st.max_seq, (k, st)
            assert sum(st.max_seq for st in streams) == len(sent[k]), (k, streams)
    finally:
        store.close()
    early = [(a.acked, bad) for w in watches for a, bad in w.results() if bad]
    assert not early, f"acks naming records central did not hold yet: {early[:3]}"
    stored = [c.counters.stored for c in collectors]
    assert sum(stored) == sum(len(v) for v in sent.values()) and min(stored) > 0, stored
    assert collectors[0].connections >= 2  # it came back, on node 2 or 3
    print(
        f"{sum(stored)} records, stored {stored}, duplicates "
        f"{[c.counters.duplicates for c in collectors]}, batches "
        f"{[c.counters.batches for c in collectors]}, sessions "
        f"{[c.connections for c in collectors]}"
    )


def test_store_down_nothing_acked_then_every_record_once(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    central_db = tmp_path / "central.db"
    SQLiteStore(central_db).close()
    kiosk, db = "k-amqp-down", tmp_path / "kiosk.db"
    ids = stack.fill_outbox(db, 40, kiosk=kiosk)
    fault = CommitFault()
    fault.on.set()
    c = collector(
        cluster,
        "aps-collector-d",
        (2, 3, 1),
        lambda: FailingCommitStore(central_db, fault),
        "aps-collector-d",
    )
    watcher = MqttSettings(
        port=cluster.nodes[2].mqtt_port, username=WATCHER[0], password=WATCHER[1]
    )
    watch = watch_committed(watcher, kiosk, central_db)
    c.start()
    wait_until(c.online.is_set, 60, "collector consuming")
    # The kiosk never resends on its own here (ack timeout 600 s): whatever reaches central
    # after the fault came back from the queue, requeued by the collector, not from the kiosk.
    client = kiosk_client(db, kiosk, kiosk_mqtt(cluster, 3, kiosk), ack_timeout_s=600)
    client.start()
    try:
        wait_until(lambda: fault.failed_commits >= 3, 60, "commits failing")
        wait_until(
            lambda: queue_depth(cluster, QUEUES["aps-collector-d"]) >= 32,
            60,
            "the kiosk's window (32 records, and its status) still queued, none acked away",
        )
        assert stack.kiosk_acked(db) == 0
        assert watch.results() == [], "an ack went out while the store could not commit"
        assert c.counters.store_errors >= 3 and c.counters.acks_sent == 0
        fault.on.clear()
        wait_until(lambda: all_acked(db, ids), 120, "all acked after the fault")
    finally:
        client.stop()
        c.stop()
    assert sorted(stack.central_ids(central_db, kiosk)) == sorted(ids)
    wait_until(lambda: set(watch.acked_ids()) >= set(ids), 30, "the watch heard every ack")
    watch.stop()
    assert not [bad for _, bad in watch.results() if bad]


def test_a_kiosk_over_its_rate_is_paced_not_looped_and_loses_nothing(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    """[quotas] on the AMQP source: over the rate, deliveries are taken off the queue and
    held back, then stored at the rate. The kiosk never resends here (ack timeout 600 s):
    every record stored came through the pacing room, none was redelivered in a loop."""
    central_db = tmp_path / "central.db"
    SQLiteStore(central_db).close()
    kiosk, db = "k-amqp-paced", tmp_path / "kiosk.db"
    ids = stack.fill_outbox(db, 30, kiosk=kiosk)
    quotas = Quotas(QuotaSettings(messages_per_s=10.0, burst_messages=5, pace_tick_s=0.02))
    c = collector(
        cluster,
        "aps-collector-p",
        (1, 2, 3),
        lambda: SQLiteStore(central_db),
        "aps-collector-p",
        quotas=quotas,
    )
    c.start()
    wait_until(c.online.is_set, 60, "collector consuming")
    client = kiosk_client(db, kiosk, kiosk_mqtt(cluster, 2, kiosk), ack_timeout_s=600)
    client.start()
    try:
        wait_until(lambda: all_acked(db, ids), 120, "every record acked, at the rate")
    finally:
        client.stop()
        c.stop()
    assert sorted(stack.central_ids(central_db, kiosk)) == sorted(ids)
    assert quotas.totals.get((kiosk, "paced"), 0) >= 20  # 30 sent at once, a burst of 5
    assert quotas.totals.get((kiosk, "rate"), 0) == 0  # the room held them all: none dropped
    assert queue_depth(cluster, QUEUES["aps-collector-p"]) == 0
    assert c.counters.duplicates == 0  # nothing came twice: no redelivery loop


def test_aps_central_run_with_the_amqp_source(cluster: RabbitCluster, tmp_path: Path) -> None:
    """The service, not a thread: ``[collector] source = "amqp"`` in central.toml."""
    kiosk, db = "k-amqp-run", tmp_path / "kiosk.db"
    central_db = tmp_path / "central" / "central.db"
    ids = stack.fill_outbox(db, 30, kiosk=kiosk)
    cfg = stack.write_central_config(tmp_path / "central.toml", central_db, 1, kiosks=(kiosk,))
    text = cfg.read_text(encoding="utf-8").replace(
        "[collector]\n", '[collector]\nsource = "amqp"\nbatch_max = 100\n'
    )
    urls = ", ".join(f'"{amqp_url(cluster, n)}"' for n in (3, 1, 2))
    cfg.write_text(
        text + f'\n[amqp]\nurls = [{urls}]\nusername = "aps-collector-r"\n'
        f'password = "{COLLECTOR[1]}"\nqueue = "aps.uplink.r"\nprefetch = 200\n',
        encoding="utf-8",
    )
    central = stack.spawn("central.cli", cfg, tmp_path / "central.log")
    client = kiosk_client(db, kiosk, kiosk_mqtt(cluster, 2, kiosk))
    client.start()
    try:
        wait_until(lambda: all_acked(db, ids), 120, "all acked through aps-central run")
    finally:
        client.stop()
        stack.stop(central)
    assert sorted(stack.central_ids(central_db, kiosk)) == sorted(ids)
    assert "AMQP collector" in (tmp_path / "central.log").read_text(encoding="utf-8")


def test_the_downlink_answers_a_kiosks_state_request_over_amqp(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    """A state request consumed from the uplink queue, the reply published to the kiosk's
    MQTT ``down/state`` from the downlink service's own thread."""
    kiosk = "k-amqp-down2"
    central_db = tmp_path / "central.db"
    SQLiteStore(central_db).close()
    c = collector(
        cluster, "aps-collector-s", (1, 2, 3), lambda: SQLiteStore(central_db), "aps-collector-s"
    )
    service = DownlinkService(
        database=central_db,
        publish=c.publish,
        settings=DownlinkSettings(nudge_interval_s=0.1),
        signing_key=keyring.CENTRAL_KEY,
    )
    c.downlink = service
    central = downlink_stack.Central(db=central_db, collector=c, downlink=service)  # type: ignore[arg-type]
    central.append("*", "catalogue", "catalogue", {"version": 1, "procedures": [1]})
    newest = central.latest()
    service.start()
    c.start()
    wait_until(c.online.is_set, 60, "collector consuming")
    k = downlink_stack.start_kiosk(
        None,  # type: ignore[arg-type]
        tmp_path / "kiosk.db",
        kiosk,
        mqtt_settings=kiosk_mqtt(cluster, 3, kiosk),
    )
    try:
        wait_until(lambda: k.inbox.cursor() == newest, 60, "the kiosk got central's state")
    finally:
        k.stop()
        central.stop()
    assert service.counters.state_replies >= 1
