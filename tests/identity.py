"""Keys for the test suite (issue 9): one place every test gets its kiosk and central keys.

Every record is signed by its kiosk and every ack and downlink message by central, so every
test that runs a collector, central or an agent needs keys. The suite shares one kiosk key
(:data:`KIOSK_KEY`) and one central key (:data:`CENTRAL_KEY`), made once per run:

- sans-I/O tests sign with :func:`signed` and hand central :data:`FLEET` (a key directory
  in which every kiosk id is active with :data:`KIOSK_KEY`), or ``**CENTRAL`` to
  :func:`central.collector.process_batch`; the kiosk side gets :func:`kiosk_identity`;
- tests with real processes get key files (:func:`write_keys`) for ``[identity]`` and
  ``[security]``, and kiosks registered in central's registry (:func:`register`).

A test about the keys themselves (forgery, rotation, revocation) makes keys of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from central import collector, ingest
from central.backoffice_db import Target
from central.collector import BatchResult
from central.fleet.keys import SenderKeys
from central.fleet.lifecycle import KioskState
from central.fleet.registry import Registry
from central.ingest import Accept, DeadLetter
from central.store import Store
from sync.envelope_signing import EnvelopeSignatureError, key_id
from sync.identity_files import write_public_keys
from sync.wire_signing import CentralKeys, KioskIdentity, sign_record

KIOSK_KEY = Ed25519PrivateKey.generate()
CENTRAL_KEY = Ed25519PrivateKey.generate()


class AnyKiosk:
    """A key directory in which every kiosk id is active and signs with ``key``."""

    def __init__(self, key: Ed25519PrivateKey = KIOSK_KEY) -> None:
        pub = key.public_key()
        self._keys = {key_id(pub): pub}

    def sender(self, kiosk: str) -> SenderKeys | None:
        return SenderKeys(kiosk=kiosk, state=KioskState.ACTIVE, keys=self._keys)


FLEET = AnyKiosk()
#: ``process_batch(store, batch, **CENTRAL)``: the test fleet and central's key.
CENTRAL: dict[str, Any] = {"keys": FLEET, "signing_key": CENTRAL_KEY}


def signed(payload: bytes, key: Ed25519PrivateKey = KIOSK_KEY) -> bytes:
    """A record envelope as a kiosk publishes it (what the outbox stores, signed).

    Bytes that are no record object, or cannot be signed (a float, a lone surrogate), are
    returned as they are: garbage stays garbage, and central says why it refuses it.
    """
    try:
        obj = json.loads(payload.decode("utf-8"))  # bytes would let a BOM pass
    except (ValueError, RecursionError):
        return payload
    if not isinstance(obj, dict) or obj.get("type") != "record":
        return payload
    try:
        return sign_record(payload, key)
    except EnvelopeSignatureError:
        return payload


def classify(topic: str, payload: bytes, **kw: Any) -> Accept | DeadLetter:
    """:func:`central.ingest.classify` of ``payload`` signed by the test fleet's kiosk."""
    return ingest.classify(topic, signed(payload), FLEET, **kw)


def sign_batch(batch: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    return [(t, signed(p) if t.endswith("/up/records") else p) for t, p in batch]


def process_batch(store: Store, batch: Iterable[tuple[str, bytes]], **kw: Any) -> BatchResult:
    """:func:`central.collector.process_batch` with every record signed by the test fleet's
    kiosk and central's test key (for tests about ingest, not about signatures)."""
    return collector.process_batch(store, sign_batch(batch), **CENTRAL, **kw)


def kiosk_identity(
    key: Ed25519PrivateKey = KIOSK_KEY, central: Iterable[Ed25519PrivateKey] = (CENTRAL_KEY,)
) -> KioskIdentity:
    pubs = [c.public_key() for c in central]
    return KioskIdentity(key, CentralKeys({key_id(p): p for p in pubs}))


def write_private_key(path: Path, key: Ed25519PrivateKey) -> Path:
    """Write ``key`` at ``path`` (0600 from the first byte); an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    return path


@dataclass(frozen=True)
class KeyFiles:
    kiosk_key: Path  # [identity] signing_key
    central_keys: Path  # [identity] central_keys
    central_key: Path  # [security] signing_key

    def agent_toml(self) -> str:
        return (
            f'[identity]\nsigning_key = "{self.kiosk_key}"\ncentral_keys = "{self.central_keys}"\n'
        )

    def agent_section(self) -> dict[str, str]:
        """``[identity]`` as a dict, for ``AgentConfig.model_validate``."""
        return {"signing_key": str(self.kiosk_key), "central_keys": str(self.central_keys)}

    def central_toml(self) -> str:
        return f'[security]\nsigning_key = "{self.central_key}"\n'


def write_keys(
    directory: Path,
    *,
    kiosk_key: Ed25519PrivateKey = KIOSK_KEY,
    central_key: Ed25519PrivateKey = CENTRAL_KEY,
) -> KeyFiles:
    """The key files of one test's kiosk and central under ``directory`` (mode 0700)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = KeyFiles(
        kiosk_key=directory / "kiosk-signing.key",
        central_keys=directory / "central-keys.json",
        central_key=directory / "central-signing.key",
    )
    write_private_key(files.kiosk_key, kiosk_key)
    write_private_key(files.central_key, central_key)
    write_public_keys(files.central_keys, [central_key.public_key()])
    return files


def register(
    database: Target, *kiosks: str, key: Ed25519PrivateKey = KIOSK_KEY, office: str | None = None
) -> None:
    """Register each kiosk in central's registry (its SQLite file or PostgreSQL), once, active."""
    registry = Registry(database)
    try:
        for n, kiosk in enumerate(kiosks, start=1):
            if registry.get(kiosk) is not None:
                continue
            registry.add_kiosk(
                kiosk,
                office=office or f"office-{kiosk}",
                slot=n if office else 1,
                agency="000.00.14.H56",
                signing_key=key.public_key(),
            )
            registry.mark_connected(kiosk)
    finally:
        registry.close()
