"""Attacks on the broker, each against a real mosquitto running the generated configuration.

Every test starts mosquitto with exactly what ``aps-central broker-config``
writes (tests/conftest.py, central/mosquitto.py), has kiosk ``k-atk-a`` (the
attacker, with its own valid certificate, or a stolen or forged one) try
something, and checks two things: what the attacker got (nothing delivered,
SUBACK 0x80, the connection refused) and that the victim, kiosk ``k-atk-b``,
still works: it stays connected, receives what central sends it and central
receives what it sends. tests/test_broker_acl.py holds the attacks proven
before this file (a forged record, reading another kiosk's acks, ``#`` and
the collectors' ``$share`` group, the collectors' client id, anonymous and
password guesses, revocation kicking); docs/broker.md tabulates all of them.

"Nothing delivered" is shown by ordering, never by waiting: messages from one
connection are handled by the broker in order, so once a later message
reaches its subscriber, anything published before it has been routed too.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from central.broker_identities import DynsecAdmin, remove_kiosk_commands
from central.mosquitto import MosquittoProcess, TestPki
from sync.envelope import acks_topic, central_topic, records_topic, status_topic
from sync.mqtt_link import MqttSettings
from tests.mqtt_probe import Probe, probe
from tests.waiting import wait_until

A, B = "k-atk-a", "k-atk-b"
COLLECTOR = "aps-collector-1"
DENIED = 128


@dataclass
class Scene:
    """A broker, the victim kiosk B connected and subscribed, and a collector watching."""

    broker: MosquittoProcess
    victim: Probe
    central: Probe
    rounds: int = 0

    def victim_still_works(self) -> None:
        """Central reaches B and B reaches central, on B's first and only connection."""
        self.rounds += 1
        marker = b"still-works-%d" % self.rounds
        self.central.client.publish(acks_topic(B), marker, qos=1)
        wait_until(lambda: (acks_topic(B), marker) in self.victim.messages, 10, "B's ack")
        self.victim.client.publish(records_topic(B), marker, qos=1)
        wait_until(lambda: (records_topic(B), marker) in self.central.messages, 10, "B's record")
        assert self.victim.disconnects == 0

    def sync_point(self, attacker: Probe) -> None:
        """Once this returns, everything the attacker published before has been routed."""
        self.rounds += 1
        marker = b"sync-%d" % self.rounds
        attacker.client.publish(records_topic(A), marker, qos=1)
        wait_until(lambda: (records_topic(A), marker) in self.central.messages, 10, "A's marker")

    def victim_got_only_central(self) -> None:
        assert all(p.startswith(b"still-works-") for _, p in self.victim.messages), (
            self.victim.messages
        )


@pytest.fixture
def scene(broker: MosquittoProcess) -> Iterator[Scene]:
    central = probe(broker.collector(COLLECTOR), COLLECTOR)
    assert central.subscribe("aps/v1/+/up/#") == [1]
    broker.kiosk(A)
    victim = probe(broker.kiosk(B), B)
    assert victim.subscribe(f"aps/v1/{B}/down/#", "aps/v1/fleet/down/#") == [1, 1]
    s = Scene(broker=broker, victim=victim, central=central)
    s.victim_still_works()
    yield s
    victim.stop()
    central.stop()


def attempt(settings: MqttSettings, client_id: str) -> Probe | str:
    """Connect; a probe if a CONNACK came, else how the broker refused."""
    try:
        p = probe(settings, client_id)
    except ssl.SSLError as exc:
        return f"tls: {exc.reason}"
    except OSError as exc:
        return f"socket: {exc}"
    if p.connected.is_set():
        return p
    p.stop()
    return "refused" if p.refused else "dropped before CONNACK"


# -- speaking for others ---------------------------------------------------------------------


def test_a_kiosk_cannot_publish_as_central_or_into_another_kiosks_namespace(
    scene: Scene,
) -> None:
    evil = probe(scene.broker.kiosk(A), A)
    forged = [
        central_topic(COLLECTOR),  # central's presence: would make B resend or stop
        "aps/v1/fleet/down/catalogue",  # a fleet-wide downlink
        acks_topic(B),  # a forged ack: B would mark records synced that central never had
        f"aps/v1/{B}/down/commands",
        f"aps/v1/{B}/down/config",
        status_topic(B),  # B's status, as seen by central
        f"aps/v1/{B}/up/heartbeat",
    ]
    for t in forged:
        evil.client.publish(t, b"forged", qos=1).wait_for_publish(10)
    scene.sync_point(evil)
    scene.victim_still_works()
    scene.victim_got_only_central()
    assert not [(t, p) for t, p in scene.central.messages if p == b"forged"]
    evil.stop()


def test_a_kiosk_can_read_nothing_but_its_own_topics(scene: Scene) -> None:
    evil = probe(scene.broker.kiosk(A), A)
    filters = [
        f"aps/v1/{B}/down/#",  # B's acks, commands, config
        f"aps/v1/{B}/down/commands",
        f"aps/v1/{B}/up/#",  # what B sends central
        "aps/v1/+/down/acks",
        "aps/v1/+/up/#",
        "aps/v1/#",
        "$SYS/#",
        "$SYS/broker/clients/connected",
        "$CONTROL/#",
        "$CONTROL/dynamic-security/v1/response",
        "$share/aps-collectors/aps/v1/+/up/#",
    ]
    assert evil.subscribe(*filters) == [DENIED] * len(filters)
    assert evil.subscribe(f"aps/v1/{A}/down/#") == [1]
    scene.victim_still_works()  # central sent B an ack, B sent a record
    scene.central.client.publish(f"aps/v1/{B}/down/commands", b"for-b-only", qos=1)
    wait_until(lambda: any(p == b"for-b-only" for _, p in scene.victim.messages), 10, "cmd")
    scene.central.client.publish(acks_topic(A), b"for-a", qos=1)
    wait_until(lambda: evil.messages, 10, "A's own ack")
    assert evil.messages == [(acks_topic(A), b"for-a")]
    evil.stop()


def test_a_kiosk_cannot_manage_the_broker_over_control_topics(scene: Scene) -> None:
    evil = probe(scene.broker.kiosk(A), A)
    grab_all = {
        "commands": [
            {"command": "deleteClient", "username": B},
            {"command": "setDefaultACLAccess", "acls": [{"acltype": "subscribe", "allow": True}]},
            {
                "command": "addRoleACL",
                "rolename": f"kiosk-{A}",
                "acltype": "subscribePattern",
                "topic": "#",
                "allow": True,
            },
        ]
    }
    evil.client.publish(
        "$CONTROL/dynamic-security/v1", json.dumps(grab_all), qos=1
    ).wait_for_publish(10)
    scene.sync_point(evil)
    assert evil.subscribe("#", f"aps/v1/{B}/down/#") == [DENIED, DENIED]
    scene.victim_still_works()
    evil.stop()


# -- taking over identities ------------------------------------------------------------------


def test_a_kiosk_cannot_take_another_kiosks_client_id(scene: Scene) -> None:
    # A's own certificate, asking for B's client id: the listener forces it to A's CN.
    evil = probe(scene.broker.kiosk(A), B)
    assert evil.connected.is_set()
    assert evil.subscribe(f"aps/v1/{B}/down/#") == [DENIED]
    scene.victim_still_works()  # B was not kicked (disconnects == 0)
    evil.stop()
    log = scene.broker.log.read_text()
    assert f"Client {B} already connected" not in log


def test_a_copied_certificate_on_a_second_box_kicks_the_first(scene: Scene) -> None:
    # The broker cannot tell the two boxes apart: the second connection with B's
    # certificate takes the client id, the first is closed. Central detects the
    # ping-pong from the status messages (tests/test_duplicate_identity.py).
    copy = probe(scene.broker.kiosk(B), B)
    assert copy.connected.is_set()
    wait_until(lambda: scene.victim.disconnects == 1, 10, "the first box kicked")
    wait_until(
        lambda: (
            f"Client {B} already connected, closing old connection" in scene.broker.log.read_text()
        ),
        10,
        "the broker's log of the takeover",
    )
    copy.stop()
    # The real box reconnects (its agent backs off and tries again) and works once more.
    scene.victim.stop()
    scene.victim = probe(scene.broker.kiosk(B), B)
    assert scene.victim.subscribe(f"aps/v1/{B}/down/#") == [1]
    scene.victim_still_works()


# -- connecting without a valid identity -----------------------------------------------------


def test_plain_text_to_the_kiosk_listener_gets_no_mqtt_answer(scene: Scene) -> None:
    # A well-formed MQTT 3.1.1 CONNECT for client "k-atk-a", without TLS.
    name = A.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(name).to_bytes(2, "big") + name
    connect = bytes([0x10, len(body)]) + body
    with socket.create_connection(("127.0.0.1", scene.broker.kiosk_port), timeout=10) as s:
        s.sendall(connect)
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not answer.startswith(b"\x20")  # no CONNACK, only the end of the connection
    plain = attempt(replace(scene.broker.kiosk(A), tls_ca=None, tls_cert=None, tls_key=None), A)
    assert isinstance(plain, str), "a plain-text client was let in"
    wait_until(  # TLS saw plain MQTT (logged once the connection is closed)
        lambda: "wrong version number" in scene.broker.log.read_text(), 10, "the broker's log"
    )
    scene.victim_still_works()


def test_a_certificate_from_another_ca_with_the_victims_cn_is_refused(
    scene: Scene, tmp_path: Path
) -> None:
    other = TestPki(tmp_path / "other-ca").create()
    crt, key = other.client(B)
    forged = replace(scene.broker.kiosk(B), tls_cert=crt, tls_key=key)  # trusts the real broker
    result = attempt(forged, B)
    assert isinstance(result, str), "a certificate from another CA was accepted"
    wait_until(  # mosquitto writes the line after it closed the connection
        lambda: "certificate verify failed" in scene.broker.log.read_text(),
        10,
        "the broker's log to name the refused certificate",
    )
    scene.victim_still_works()


def test_an_expired_certificate_is_refused(scene: Scene) -> None:
    # Made the same way, one valid a day more and one expired a day ago: only the
    # expiry differs.
    crt, key = scene.broker.pki.client_ending(A, days=1)
    valid = attempt(replace(scene.broker.kiosk(A), tls_cert=crt, tls_key=key), A)
    assert isinstance(valid, Probe)
    valid.stop()
    crt, key = scene.broker.pki.client_ending(A, days=-1)
    result = attempt(replace(scene.broker.kiosk(A), tls_cert=crt, tls_key=key), A)
    assert isinstance(result, str), "an expired certificate was accepted"
    wait_until(  # mosquitto writes the line after it closed the connection
        lambda: "certificate verify failed" in scene.broker.log.read_text(),
        10,
        "the broker's log to name the refused certificate",
    )
    scene.victim_still_works()


# -- revocation ------------------------------------------------------------------------------


def test_a_revoked_kiosk_is_kicked_at_once_and_gets_nothing_after(scene: Scene) -> None:
    evil = probe(scene.broker.kiosk(A), A)
    assert evil.subscribe(f"aps/v1/{A}/down/#") == [1]
    DynsecAdmin(scene.broker.admin()).run(remove_kiosk_commands(A))
    wait_until(lambda: evil.disconnects == 1, 10, "the revoked kiosk kicked")
    evil.stop()
    # Its certificate still passes TLS (the CA signed it), but its identity is gone:
    # default deny, so it can neither read its old topics nor send records.
    again = attempt(scene.broker.kiosk_certificate(A), A)
    assert isinstance(again, Probe)
    assert again.subscribe(f"aps/v1/{A}/down/#", "aps/v1/fleet/down/#") == [DENIED, DENIED]
    again.client.publish(records_topic(A), b"after-revocation", qos=1).wait_for_publish(10)
    scene.victim_still_works()  # B's record arrived after A's: A's was dropped
    assert (records_topic(A), b"after-revocation") not in scene.central.messages
    again.stop()


def test_with_crlfile_a_revoked_certificate_is_refused_at_the_handshake(
    tmp_path: Path,
) -> None:
    pki = TestPki(tmp_path / "pki").create()
    with MosquittoProcess(tmp_path / "broker", pki=pki, crl=True) as broker:
        assert "crlfile" in (broker.confd / "aps.conf").read_text()
        before = attempt(broker.kiosk(A), A)
        assert isinstance(before, Probe)
        before.stop()
        pki.write_crl([A])
        broker.reload()
        wait_until(
            lambda: isinstance(p := attempt(broker.kiosk(A), A), str) or p.stop(),
            10,
            "the CRL in force",
        )
        victim = attempt(broker.kiosk(B), B)
        assert isinstance(victim, Probe), "a certificate not on the CRL was refused"
        victim.stop()
