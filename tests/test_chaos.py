"""The chaos harness end to end: a 60 s run under every kind of fault, audited (issue 11).

Runs ``python -m tests.chaos`` as a person would (scripts/aps-chaos) and reads its
last line: on mosquitto with SQLite, with all of central on PostgreSQL, and on the
private 3-node RabbitMQ cluster with the AMQP collectors (``--broker rabbitmq``). The
audit itself is proved able to fail in tests/test_chaos_audit.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import rabbit_cluster
from tests.chaos.faults import KINDS, RABBITMQ_KINDS

ROOT = Path(__file__).resolve().parent.parent
NODE_FAULTS = ("kill-node", "restart-node", "kill-collector-node")


def chaos(
    tmp_path: Path, *args: str, timeout: float
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "tests.chaos", *args, "--workdir", str(tmp_path / "run")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = res.stdout.strip().splitlines()
    assert lines, res.stderr[-3000:]
    return res, json.loads(lines[-1])


@pytest.mark.slow
def test_a_minute_of_chaos_loses_and_doubles_nothing(tmp_path: Path) -> None:
    res, out = chaos(
        tmp_path, "--seconds", "60", "--kiosks", "5", "--seed", "20261203", timeout=600
    )
    assert list(out)[:5] == ["committed", "at_central", "lost", "duplicated", "faults_injected"]
    assert out["lost"] == 0 and out["duplicated"] == 0, res.stdout[-4000:]
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert out["committed"] == out["at_central"] > 0, out
    assert out["gaps"] == 0 and out["hash_mismatch"] == 0 and out["acked_missing"] == 0, out
    assert out["attachments"] > 0 and out["filed"] > 0 and out["filed_missing"] == 0, out
    assert out["faults_injected"] == sum(out["faults"].values()) > 0, out
    assert all(out["faults"][kind] >= 1 for kind in KINDS), out["faults"]
    # A full disk was seen by the citizen (refused cleanly) and accepted nothing.
    assert out["refused_while_full"] > 0 and out["accepted_while_full"] == 0, out
    assert out["garbage_sent"] > 0 and out["dead_letters"] > 0, out
    assert out["drained"] is True


@pytest.mark.slow
def test_chaos_with_all_of_central_on_postgresql(tmp_path: Path) -> None:
    """The store and the registry in PostgreSQL (central knows the kiosks there): a run
    on a registry left in the SQLite file would refuse every record as unknown."""
    args = ["--store", "postgresql", "--seconds", "40", "--kiosks", "5", "--seed", "20261205"]
    res, out = chaos(tmp_path, *args, timeout=600)
    assert out["lost"] == 0 and out["duplicated"] == 0, res.stdout[-4000:]
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert out["committed"] == out["at_central"] > 0, out
    assert out["gaps"] == 0 and out["hash_mismatch"] == 0 and out["acked_missing"] == 0, out
    assert out["filed"] > 0 and out["filed_missing"] == 0 and out["faults_injected"] > 0, out
    assert out["drained"] is True


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_minute_of_chaos_on_the_rabbitmq_cluster(tmp_path: Path) -> None:
    """Node kills and clean restarts, the node a collector consumes on killed, and the
    faults the two brokers share: every record once at central all the same."""
    assert rabbit_cluster.available(), "rabbitmq-server missing: apt-get install -y rabbitmq-server"
    args = ["--broker", "rabbitmq", "--seconds", "60", "--kiosks", "5", "--seed", "20261204"]
    res, out = chaos(tmp_path, *args, timeout=780)
    assert out["broker"] == "rabbitmq" and list(out["faults"]) == list(RABBITMQ_KINDS), out
    assert out["lost"] == 0 and out["duplicated"] == 0, res.stdout[-4000:]
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert out["committed"] == out["at_central"] > 0, out
    assert out["gaps"] == 0 and out["hash_mismatch"] == 0 and out["acked_missing"] == 0, out
    assert out["attachments"] > 0 and out["filed"] > 0 and out["filed_missing"] == 0, out
    assert out["faults_injected"] == sum(out["faults"].values()) > 0, out
    # Node faults went in (one node down at a time, so they queue behind each other).
    assert sum(out["faults"][kind] for kind in NODE_FAULTS) >= 2, out["faults"]
    assert all(out["faults"][kind] >= 1 for kind in NODE_FAULTS), out["faults"]
    shared = [kind for kind in RABBITMQ_KINDS if kind not in NODE_FAULTS]
    assert all(out["faults"][kind] >= 1 for kind in shared), out["faults"]
    assert out["accepted_while_full"] == 0, out
    assert out["garbage_sent"] > 0 and out["dead_letters"] > 0, out
    assert out["drained"] is True


def test_a_dead_nodes_kiosks_go_to_a_live_node_and_the_collectors_node_is_read(
    tmp_path: Path,
) -> None:
    """The RabbitMQ stack's bookkeeping, without a cluster: a node down sends its kiosks'
    proxies to a node that is up (and blocks more node faults); a collector's node is
    the one its log last said it consumes on."""
    from tests.chaos.rabbit import RabbitBroker
    from tests.rabbit_cluster import RabbitCluster
    from tests.tcp_proxy import TcpProxy

    rabbit = RabbitBroker(tmp_path, cluster=RabbitCluster(tmp_path / "c"))  # never started
    nodes = rabbit.c.nodes
    proxies = [TcpProxy(nodes[rabbit.home(i) - 1].mqtt_port) for i in range(4)]
    try:
        for i, proxy in enumerate(proxies):
            rabbit.add_proxy(proxy, rabbit.home(i))
        assert [rabbit.home(i) for i in range(4)] == [1, 2, 3, 1]
        rabbit.kill(1)  # no process: only the bookkeeping
        assert not rabbit.all_up() and rabbit.down == {1}
        assert proxies[0].target == proxies[3].target == ("127.0.0.1", nodes[1].mqtt_port)
        assert proxies[1].target[1] == nodes[1].mqtt_port
        assert proxies[2].target[1] == nodes[2].mqtt_port
        assert rabbit.up_node() == 2
    finally:
        for proxy in proxies:
            proxy.close()
    log = tmp_path / "aps-collector-1.log"
    assert rabbit.collector_node(log) is None
    lines = [
        f"2026-12-04 19:11:49,501 INFO aps.collector.amqp: AMQP collector aps-collector-1 "
        f"consuming aps.uplink on amqp://127.0.0.1:{nodes[n - 1].amqp_port}/%2F\n"
        for n in (1, 3)
    ]
    log.write_text("".join(lines), encoding="utf-8")
    assert rabbit.collector_node(log) == 3
