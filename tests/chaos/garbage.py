"""Garbage and poison on the bus: what a broken or hostile sender publishes.

The same kinds as tests/test_garbage_at_central.py and tests/test_poison_isolation.py:
random bytes, envelopes that are no record, a record of an unknown version, one that
claims another kiosk, unsigned and wrongly signed records, a heartbeat whose counter
no SQLite integer holds. Every record envelope uses a stream of its own, never the
kiosk's real one: what is audited is that the real streams are untouched.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.envelope import encode_heartbeat, heartbeat_topic, records_topic
from sync.ids import new_stream_id, new_ulid
from sync.mqtt_link import MqttSettings, make_paho_client
from tests import identity as keyring

CREATED = "2026-11-26T09:15:02.123+07:00"


def _envelope(kiosk: str) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "record",
        "kind": "rating",
        "kiosk": kiosk,
        "stream": new_stream_id(),
        "seq": 1,
        "id": new_ulid(),
        "created": CREATED,
        "body": {"level": "hai_long"},
    }


def _dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


MAKERS: dict[str, Callable[[str, str], tuple[str, bytes]]] = {
    "bad-json": lambda k, other: (records_topic(k), os.urandom(512)),
    "bad-envelope": lambda k, other: (records_topic(k), b'{"v": 1, "type": "record", "x": 1}'),
    "not-an-object": lambda k, other: (records_topic(k), b"[1, 2, 3]"),
    "unknown-version": lambda k, other: (records_topic(k), _dumps({**_envelope(k), "v": 99})),
    "kiosk-mismatch": lambda k, other: (
        records_topic(k),
        keyring.signed(_dumps({**_envelope(k), "kiosk": other})),
    ),
    "unsigned": lambda k, other: (records_topic(k), _dumps(_envelope(k))),
    "unknown-key": lambda k, other: (
        records_topic(k),
        keyring.signed(_dumps(_envelope(k)), Ed25519PrivateKey.generate()),
    ),
    "bad-body": lambda k, other: (
        records_topic(k),
        keyring.signed(_dumps({**_envelope(k), "body": {"level": "so-so"}})),
    ),
    "poison-heartbeat": lambda k, other: (
        heartbeat_topic(k),
        encode_heartbeat(k, CREATED, queued=2**64, devices={}),
    ),
    # Another kiosk's topic: the broker's ACL drops it (never reaches central).
    "foreign-topic": lambda k, other: (records_topic(other), _dumps(_envelope(other))),
}


def publish_garbage(
    settings: MqttSettings, sender: str, other: str, rng: random.Random, count: int = 4
) -> list[str]:
    """Connect as ``sender`` (its certificate), publish ``count`` bad messages, leave.

    Returns the kinds the broker took (PUBACK; a publish mosquitto's ACL refuses is
    acknowledged too, and dropped; RabbitMQ closes the connection instead). Connecting
    with a kiosk's own identity takes its session over (the client id is bound to the
    certificate on mosquitto, to any logged-in user on RabbitMQ 3.10): that is part of
    the fault.
    """
    kinds = rng.sample(sorted(MAKERS), count)
    # RabbitMQ answers a publish its topic permissions refuse by closing the connection
    # (mosquitto drops it and acknowledges): the foreign topic goes last.
    kinds.sort(key=lambda kind: kind == "foreign-topic")
    sent: list[str] = []
    client = make_paho_client(sender, settings)
    try:
        client.connect("127.0.0.1", settings.port)
    except OSError:
        return []  # the broker is restarting: nothing was sent
    client.loop_start()
    try:
        for kind in kinds:
            topic, payload = MAKERS[kind](sender, other)
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(5)
            if info.is_published():
                sent.append(kind)
    except (RuntimeError, ValueError, OSError):
        pass  # the broker dropped us (a refused publish): the fault still happened
    finally:
        client.disconnect()
        time.sleep(0.05)
        client.loop_stop()
    return sent
