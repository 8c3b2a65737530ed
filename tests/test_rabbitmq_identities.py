"""The RabbitMQ permission patterns, the routing-key mapping and the [amqp] config, without
a broker (tests/test_rabbit_permissions.py holds RabbitMQ itself to them)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from central.amqp_source import AmqpSettings, mqtt_topic, routing_key
from central.config import load_central_config
from central.downlink import subscriptions as downlink_subscriptions
from central.rabbitmq_identities import (
    collector_permissions,
    kiosk_permissions,
    provision_kiosk,
    rabbitmqctl,
    session_queues,
)
from sync.config import ConfigError
from sync.envelope import CENTRAL_TOPICS, KIOSK_ID_RE, TOPIC_ROOT, acks_topic, central_topic, topic
from sync.wire_signing import KEYS_TOPIC

kiosk_ids = st.from_regex(KIOSK_ID_RE, fullmatch=True).filter(lambda k: k != "fleet")
UP = ("records", "status", "heartbeat", "state-request", "rpc")
DOWN = ("acks", "state", "nudge", "rpc")


def matches(pattern: str, name: str) -> bool:
    return re.search(pattern, name) is not None


@given(kiosk_ids, kiosk_ids)
def test_a_kiosks_permissions_cover_its_own_topics_and_no_one_elses(a: str, b: str) -> None:
    assume(a != b)
    p = kiosk_permissions(a)
    for name in UP:
        assert matches(p.topic_write, routing_key(topic(a, "up", name)))
        assert not matches(p.topic_write, routing_key(topic(b, "up", name)))
        assert not matches(p.topic_read, routing_key(topic(a, "up", name)))
    for name in DOWN:
        assert not matches(p.topic_write, routing_key(topic(a, "down", name)))
        assert not matches(p.topic_read, routing_key(topic(b, "down", name)))
    # what sync.client subscribes to
    for mqtt_filter in (topic(a, "down", "#"), CENTRAL_TOPICS, KEYS_TOPIC):
        assert matches(p.topic_read, routing_key(mqtt_filter)), mqtt_filter
    assert not matches(p.topic_read, routing_key(topic(b, "down", "#")))
    assert not matches(p.topic_read, routing_key(f"{TOPIC_ROOT}/+/down/#"))
    assert not matches(p.topic_read, "#")
    for q in session_queues(a):
        assert matches(p.configure, q) and matches(p.read, q) and matches(p.write, q)
    for q in (*session_queues(b), "aps.uplink"):
        assert not matches(p.configure, q) and not matches(p.read, q)
        assert not matches(p.write, q)
    assert matches(p.write, "amq.topic") and not matches(p.configure, "amq.topic")


@given(kiosk_ids)
def test_a_collector_binds_the_uplink_and_writes_the_downlink(k: str) -> None:
    p = collector_permissions("aps.uplink")
    binds = [f"{TOPIC_ROOT}/+/up/{n}" for n in ("records", "status", "heartbeat")]
    for mqtt_filter in binds + downlink_subscriptions(None):
        assert matches(p.topic_read, routing_key(mqtt_filter)), mqtt_filter
    assert matches(p.topic_write, routing_key(acks_topic(k)))
    assert matches(p.topic_write, routing_key(KEYS_TOPIC))
    assert matches(p.topic_write, routing_key(central_topic(f"aps-collector-{k}")))
    assert not matches(p.topic_write, routing_key(CENTRAL_TOPICS))  # no wildcard
    assert not matches(p.topic_write, routing_key(topic(k, "up", "records")))
    assert matches(p.configure, "aps.uplink") and not matches(p.configure, "aps-uplink")
    assert not any(matches(p.configure, q) for q in session_queues(k))


@given(kiosk_ids, st.sampled_from(UP + DOWN), st.sampled_from(("up", "down")))
def test_routing_keys_map_back_to_the_mqtt_topic(k: str, name: str, direction: str) -> None:
    t = topic(k, direction, name)
    assert "/" not in routing_key(t)
    assert mqtt_topic(routing_key(t)) == t
    assert routing_key(f"{TOPIC_ROOT}/+/up/records") == "aps.v1.*.up.records"


def test_amqp_settings_refuse_a_prefetch_below_the_batch() -> None:
    with pytest.raises(ValueError, match="prefetch"):
        AmqpSettings(urls=("amqp://127.0.0.1/",), prefetch=10, batch_max=500)
    with pytest.raises(ValueError, match="URL"):
        AmqpSettings(urls=())


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_amqp_source_config_is_validated_with_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"amqp\.urls: required"):
        load_central_config(_config(tmp_path, '[collector]\nsource = "amqp"\n'))
    with pytest.raises(ConfigError, match="not amqp://"):
        load_central_config(_config(tmp_path, '[amqp]\nurls = ["http://x:5672/"]\n'))
    with pytest.raises(ConfigError, match="no password in the URL"):
        load_central_config(_config(tmp_path, '[amqp]\nurls = ["amqp://u:secret@x:5672/"]\n'))
    with pytest.raises(ConfigError, match=r"amqp\.prefetch: 100 is below"):
        load_central_config(
            _config(
                tmp_path,
                '[collector]\nsource = "amqp"\nbatch_max = 500\n'
                '[amqp]\nurls = ["amqp://10.0.0.1:5672/%2F"]\nprefetch = 100\n',
            )
        )
    cfg = load_central_config(
        _config(
            tmp_path,
            '[collector]\nsource = "amqp"\nclient_id = "aps-collector-2"\n'
            '[amqp]\nurls = ["amqp://10.0.0.1:5672/%2F", "amqp://10.0.0.2:5672/%2F"]\n'
            'username = "aps-collector"\npassword = "pw"\nqueue = "aps.uplink"\n',
        )
    )
    s = cfg.amqp_settings()
    assert s.urls == ("amqp://10.0.0.1:5672/%2F", "amqp://10.0.0.2:5672/%2F")
    assert (s.name, s.username, s.password, s.queue) == (
        "aps-collector-2",
        "aps-collector",
        "pw",
        "aps.uplink",
    )


def test_a_password_goes_to_rabbitmqctl_on_stdin_never_on_its_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any local user reads a process's arguments (ps); rabbitmqctl reads a left-out
    password from standard input (3.10 does: the cluster tests log in with these users)."""
    calls: list[tuple[list[str], str | None]] = []

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append((cmd, kw.get("input")))  # type: ignore[arg-type]
        if cmd[3:4] == ["add_user"]:  # the user is there already: re-keyed
            return subprocess.CompletedProcess(cmd, 70, "", "user_already_exists")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)
    provision_kiosk(rabbitmqctl("rabbit@box"), "k-stdin-01", "a-secret-password")
    assert [c[3] for c, _ in calls][:2] == ["add_user", "change_password"]
    for cmd, _ in calls:
        assert not any("a-secret-password" in arg for arg in cmd), cmd
    assert [stdin for _, stdin in calls[:2]] == ["a-secret-password\n"] * 2
    with pytest.raises(ValueError, match="one non-empty line"):
        provision_kiosk(rabbitmqctl(), "k-stdin-01", "two\nlines")
