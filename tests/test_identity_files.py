"""Key files: private keys made 0600 and never overwritten, public key sets checked by key id."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.fleet.keys import StaticKeyDirectory
from sync.envelope_signing import key_id, sign, verify
from sync.identity_files import (
    KeyFileError,
    create_private_key,
    load_private_key,
    load_public_keys,
    write_public_keys,
)


def test_a_new_key_is_0600_and_a_second_run_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    key, created = create_private_key(path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = create_private_key(path)
    assert not created_again
    assert key_id(again.public_key()) == key_id(key.public_key())


def test_a_key_others_can_read_is_refused_with_the_chmod(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    create_private_key(path)
    os.chmod(path, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(path)


def test_public_keys_round_trip_and_a_swapped_kid_is_refused(tmp_path: Path) -> None:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = tmp_path / "central-keys.json"
    write_public_keys(path, [a.public_key(), b.public_key()])
    keys = load_public_keys(path)
    envelope = sign("aps-ack-v1", {"v": 1, "type": "ack", "acked": []}, b)
    assert verify("aps-ack-v1", envelope, keys) == key_id(b.public_key())
    doc = json.loads(path.read_text())
    doc["keys"][0]["kid"], doc["keys"][1]["kid"] = doc["keys"][1]["kid"], doc["keys"][0]["kid"]
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="does not name its key"):
        load_public_keys(path)


def test_static_directory_revokes() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    keys = StaticKeyDirectory({"k-one": [key]})
    entry = keys.sender("k-one")
    assert entry is not None and entry.may_send and key_id(key) in entry.keys
    keys.revoke("k-one")
    entry = keys.sender("k-one")
    assert entry is not None and not entry.may_send
    assert keys.sender("k-two") is None
