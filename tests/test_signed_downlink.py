"""Everything central sends down is signed, and the kiosk acts on nothing else (issue 9);
central's own key rotates through a signed, persisted key-set announcement.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central import backoffice_db, downlink_log
from central.config import SecuritySection
from central.downlink import DownlinkService
from sync.client import SyncClient, SyncSettings
from sync.downlink import StateRequest, up_topic
from sync.envelope import Ack, acks_topic, central_topic, encode_central
from sync.envelope_signing import EnvelopeSignatureError, key_id
from sync.identity_files import load_public_keys, write_public_keys
from sync.ids import new_ulid
from sync.mqtt_link import MqttSettings
from sync.wire_signing import (
    KEYS_TOPIC,
    AckRefused,
    CentralKeys,
    KioskIdentity,
    check_ack,
    key_announcement,
    sign_ack,
    sign_downlink,
    verify_downlink,
)
from tests import identity as keyring

K = "k-down-01"
OFFICE = "000.00.14.H56"


def test_the_downlink_service_signs_every_reply(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    conn = backoffice_db.connect(db)
    sent: list[tuple[str, bytes]] = []
    svc = DownlinkService(
        database=db, publish=lambda t, p: sent.append((t, p)), signing_key=keyring.CENTRAL_KEY
    )
    try:
        with backoffice_db.transaction(conn):
            downlink_log.assign_office(conn, K, OFFICE)
        request = StateRequest(kiosk=K, request=new_ulid(), cursor=0, office=OFFICE, limit=10)
        assert svc.answer_state(conn, K, request.encode())
    finally:
        conn.close()
    assert sent
    central = {key_id(keyring.CENTRAL_KEY.public_key()): keyring.CENTRAL_KEY.public_key()}
    for _, payload in sent:
        assert verify_downlink(payload, central)


@pytest.fixture
def kiosk(tmp_path: Path) -> SyncClient:
    """A sync client that is never started: its dispatch is the downlink's one door."""
    client = SyncClient(
        database=tmp_path / "kiosk.db",
        kiosk=K,
        mqtt_settings=MqttSettings(port=9),
        settings=SyncSettings(),
        identity=keyring.kiosk_identity(),
    )
    yield client  # type: ignore[misc]
    client.outbox.close()


def _deliver(client: SyncClient, topic: str, payload: bytes, retained: bool = False) -> None:
    client._dispatch("message", (topic, payload, retained), 0.0)


def test_the_kiosk_acts_on_no_downlink_message_central_did_not_sign(kiosk: SyncClient) -> None:
    seen: list[bytes] = []
    kiosk.handlers["command"] = lambda topic, payload: seen.append(payload)
    command = json.dumps({"v": 1, "type": "command", "do": "reboot"}).encode()
    topic = f"aps/v1/{K}/down/command"
    forger = Ed25519PrivateKey.generate()
    for bad in (command, sign_downlink(command, forger), b"garbage"):
        _deliver(kiosk, topic, bad)
    # A retained fleet message too (central's presence), forged: refused before any handler.
    presence = encode_central("aps-collector-1", "online", "s1", "2026-12-01T09:00:00+07:00")
    _deliver(kiosk, central_topic("aps-collector-1"), sign_downlink(presence, forger), True)
    assert seen == [] and kiosk.counters.downlink_refused == 4
    signed = sign_downlink(command, keyring.CENTRAL_KEY)
    _deliver(kiosk, topic, signed)
    assert seen == [signed] and kiosk.counters.downlink_refused == 4


def _announce(keys: list[Ed25519PrivateKey], serial: int, signer: Ed25519PrivateKey) -> bytes:
    obj = key_announcement([k.public_key() for k in keys], serial=serial)
    return sign_downlink(json.dumps(obj).encode(), signer)


def test_centrals_key_rotates_through_a_signed_announcement(tmp_path: Path) -> None:
    """Old key A, new key B. Central announces {A, B} signed by A; the kiosk persists it;
    then central signs with B and announces {B}. After that, an ack signed by the retired A
    is refused, a replayed older announcement is ignored, and a restart keeps the set."""
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = tmp_path / "central-keys.json"
    write_public_keys(path, [a.public_key()])
    identity = KioskIdentity(keyring.KIOSK_KEY, CentralKeys.load(path))
    client = SyncClient(
        database=tmp_path / "kiosk.db",
        kiosk=K,
        mqtt_settings=MqttSettings(port=9),
        settings=SyncSettings(),
        identity=identity,
    )
    try:
        # A forger cannot announce its own key.
        forger = Ed25519PrivateKey.generate()
        _deliver(client, KEYS_TOPIC, _announce([forger], 5, forger), True)
        assert set(identity.central_keys.keys) == {key_id(a.public_key())}
        overlap = _announce([a, b], 2, a)
        _deliver(client, KEYS_TOPIC, overlap, True)
        both = {key_id(a.public_key()), key_id(b.public_key())}
        assert set(identity.central_keys.keys) == both
        assert set(load_public_keys(path)) == both  # persisted before it is used
        _deliver(client, KEYS_TOPIC, _announce([b], 3, b), True)
        assert set(identity.central_keys.keys) == {key_id(b.public_key())}
        _deliver(client, KEYS_TOPIC, overlap, True)  # replayed: A is no longer trusted
        _deliver(client, KEYS_TOPIC, _announce([b, a], 3, b), True)  # not newer: ignored
        assert set(identity.central_keys.keys) == {key_id(b.public_key())}
        old_ack = sign_ack(Ack(kiosk=K), a)
        with pytest.raises(AckRefused) as refused:
            check_ack(
                old_ack,
                kiosk=K,
                central_keys=identity.central_keys.keys,
                local_digests=client.outbox.record_digests,
            )
        assert refused.value.reason == "unknown-key"
        check_ack(
            sign_ack(Ack(kiosk=K), b),
            kiosk=K,
            central_keys=identity.central_keys.keys,
            local_digests=client.outbox.record_digests,
        )
    finally:
        client.outbox.close()
    reloaded = CentralKeys.load(path)  # the kiosk restarted
    assert set(reloaded.keys) == {key_id(b.public_key())} and reloaded.serial == 3
    with pytest.raises(EnvelopeSignatureError):
        reloaded.apply_announcement(overlap)


def test_central_announces_its_current_and_next_key(tmp_path: Path) -> None:
    keys = keyring.write_keys(tmp_path / "keys")
    nxt = keyring.write_private_key(tmp_path / "keys/next.key", Ed25519PrivateKey.generate())
    section = SecuritySection(signing_key=keys.central_key, next_signing_key=nxt, key_set_serial=7)
    trusted = CentralKeys(
        {key_id(keyring.CENTRAL_KEY.public_key()): keyring.CENTRAL_KEY.public_key()}
    )
    assert trusted.apply_announcement(section.key_announcement())
    assert len(trusted.keys) == 2 and trusted.serial == 7
    assert acks_topic(K) != KEYS_TOPIC and up_topic(K, "x") != KEYS_TOPIC
