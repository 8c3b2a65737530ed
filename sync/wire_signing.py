"""Signatures on the wire: records up, acks and everything else down (sans-I/O).

Theory of operation
-------------------
:mod:`sync.envelope_signing` defines canonical bytes and Ed25519 signatures; this module
puts them on the protocol's messages (docs/protocol.md, "Signed envelopes"):

- **Records.** The outbox stores each record's envelope unsigned, as committed. The sync
  loop signs it when it reads it for publishing (:func:`sign_record`, domain
  ``aps-record-v1``). Ed25519 signatures are deterministic and the stored bytes never
  change, so every resend of a record is byte-identical. A key rotated on the kiosk signs
  what is sent from then on, queued records included.
- **Record digest.** :func:`record_digest` is base64url(SHA-256(canonical bytes of the
  envelope without ``sig``)): the same on both sides, whatever key signed it.
- **Acks.** Central names, for every acked id, the digest of the envelope it *stored*, names
  the kiosk the ack is for, and signs it (``aps-ack-v1``). :func:`check_ack` is the kiosk's
  only way from ack bytes to an :class:`~sync.envelope.Ack` it may act on: a bad signature,
  another kiosk's ack or an ack without digests raises :class:`AckRefused` (nothing is
  marked); an acked id whose digest is not the kiosk's own record's is left out of the
  ack and reported in :attr:`CheckedAck.mismatched` (that record stays unsynced).
- **Downlink.** Every other message central sends down is signed with ``aps-downlink-v1``
  (:func:`sign_downlink`) and checked by :func:`verify_downlink` before the kiosk acts.
- **Central's keys on the kiosk.** :class:`CentralKeys` is the kiosk's trust store: the key
  ids it accepts from central, loaded from ``[identity] central_keys`` and replaced (on disk
  atomically, then in memory) only by a key-set announcement signed by a key it already
  trusts (:func:`check_key_announcement`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync import SyncError
from sync.config import ConfigError
from sync.envelope import TOPIC_ROOT, Ack, EnvelopeError, decode_ack_object, decode_object
from sync.envelope_signing import (
    EnvelopeSignatureError,
    canonical_bytes,
    key_id,
    sign,
    verify,
)
from sync.identity_files import (
    KeyFileError,
    load_key_set_serial,
    load_private_key,
    load_public_keys,
    public_key_from_text,
    public_key_text,
    write_public_keys,
)

__all__ = [
    "KEYS_TOPIC",
    "SIGNATURE_BYTES",
    "AckRefused",
    "CentralKeys",
    "CheckedAck",
    "KioskIdentity",
    "check_ack",
    "check_key_announcement",
    "encode_signed",
    "key_announcement",
    "record_digest",
    "sign_ack",
    "sign_downlink",
    "sign_record",
    "verify_downlink",
]

#: What a signature adds to an envelope's encoded size, at most (the outbox keeps room).
SIGNATURE_BYTES = 160


def encode_signed(envelope: Mapping[str, Any]) -> bytes:
    """A signed envelope as sent: compact UTF-8 JSON (any key order; ``sig`` included)."""
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def record_digest(envelope: Mapping[str, Any]) -> str:
    """base64url (no padding) of SHA-256 of the envelope's canonical bytes (``sig`` left out)."""
    return digest_of_canonical(canonical_bytes(envelope))


def digest_of_canonical(canonical: bytes) -> str:
    """:func:`record_digest` from canonical bytes already made (central's one pass)."""
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def stored_record_digest(payload: bytes) -> str:
    """The digest of a record as the outbox stores it (its unsigned envelope bytes)."""
    return record_digest(json.loads(payload))


def sign_record(payload: bytes, key: Ed25519PrivateKey) -> bytes:
    """The outbox's stored envelope, signed for the wire (deterministic: same bytes each time)."""
    return encode_signed(sign("aps-record-v1", json.loads(payload), key))


def sign_ack(ack: Ack, key: Ed25519PrivateKey) -> bytes:
    return encode_signed(sign("aps-ack-v1", ack.to_object(), key))


def sign_downlink(payload: bytes, key: Ed25519PrivateKey) -> bytes:
    """Sign an encoded downlink message (a JSON object) with ``aps-downlink-v1``."""
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise SyncError("a downlink message must be a JSON object to be signed")
    return encode_signed(sign("aps-downlink-v1", obj, key))


class AckRefused(SyncError):
    """An ack the kiosk must not act on; ``reason`` is short (logged and counted)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class CentralKeys:
    """The kiosk's trust store of central's public signing keys, by key id.

    ``path`` (``[identity] central_keys``) is rewritten atomically on :meth:`replace`, so a
    kiosk restarted after a rotation trusts what it trusted before the restart.
    """

    def __init__(
        self, keys: Mapping[str, Ed25519PublicKey], path: Path | None = None, serial: int = 0
    ) -> None:
        if not keys:
            raise SyncError("central keys: at least one key is needed")
        self._keys: dict[str, Ed25519PublicKey] = dict(keys)
        self.path = path
        #: The serial of the announcement the set came from (0: from provisioning).
        self.serial = serial
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> CentralKeys:
        return cls(load_public_keys(path), path, load_key_set_serial(path))

    @property
    def keys(self) -> Mapping[str, Ed25519PublicKey]:
        return self._keys

    def replace(self, keys: Sequence[Ed25519PublicKey], *, serial: int) -> None:
        """Trust exactly ``keys`` from now on (the file first, then memory)."""
        if not keys:
            raise SyncError("central keys: refusing to trust no key at all")
        with self._lock:
            if self.path is not None:
                write_public_keys(self.path, keys, serial=serial)
            self._keys = {key_id(k): k for k in keys}
            self.serial = serial

    def apply_announcement(self, payload: bytes) -> bool:
        """Take a key-set announcement: verified against the keys trusted now, and newer
        than the set held (a replayed older one is ignored). True if the set changed.

        Raises :class:`EnvelopeSignatureError` or :class:`EnvelopeError` for one to refuse.
        """
        serial, keys = check_key_announcement(payload, self._keys)
        if serial <= self.serial:
            return False
        self.replace(keys, serial=serial)
        return True


@dataclass(frozen=True)
class KioskIdentity:
    """What a kiosk signs with and whom it believes: its key and central's keys."""

    signing_key: Ed25519PrivateKey
    central_keys: CentralKeys

    @property
    def key_id(self) -> str:
        return key_id(self.signing_key.public_key())

    @classmethod
    def load(cls, signing_key: Path | None, central_keys: Path | None) -> KioskIdentity:
        """Load ``[identity] signing_key`` and ``central_keys``; the error names what to fix."""
        if signing_key is None or central_keys is None:
            missing = "signing_key" if signing_key is None else "central_keys"
            raise ConfigError(
                f"[identity] {missing} is not set: this kiosk has no keys; run "
                "`aps-agent provision --central URL --token T` (docs/install.md)"
            )
        try:
            return cls(load_private_key(signing_key), CentralKeys.load(central_keys))
        except KeyFileError as exc:
            raise ConfigError(f"[identity]: {exc}") from None


@dataclass(frozen=True)
class CheckedAck:
    """An ack that passed :func:`check_ack`: what to act on, and what was left out."""

    ack: Ack
    mismatched: tuple[str, ...] = field(default=())


def check_ack(
    payload: bytes,
    *,
    kiosk: str,
    central_keys: Mapping[str, Ed25519PublicKey],
    local_digests: Callable[[Sequence[str]], Mapping[str, str]],
) -> CheckedAck:
    """Verify an ack and keep only the acked ids whose digest is the kiosk's own record's.

    ``local_digests(ids)`` returns the digests of the kiosk's records with those ids (a
    record the kiosk no longer holds is absent: it is left out). Raises
    :class:`AckRefused` for anything that must mark nothing.
    """
    try:
        ack, obj = decode_ack_object(payload)
    except EnvelopeError as exc:
        raise AckRefused("malformed", exc.reason) from None
    try:
        verify("aps-ack-v1", obj, central_keys)
    except EnvelopeSignatureError as exc:
        raise AckRefused(exc.reason, f"ack not signed by central: {exc}") from None
    if ack.kiosk != kiosk:
        raise AckRefused("wrong-kiosk", f"ack for kiosk {ack.kiosk!r}, this is {kiosk!r}")
    if len(ack.digests) != len(ack.acked):
        raise AckRefused("no-digests", "ack names no digest of what central stored")
    mine = local_digests(ack.acked) if ack.acked else {}
    good: list[str] = []
    good_digests: list[str] = []
    mismatched: list[str] = []
    for rid, digest in zip(ack.acked, ack.digests, strict=True):
        if mine.get(rid) == digest:
            good.append(rid)
            good_digests.append(digest)
        else:
            mismatched.append(rid)
    checked = Ack(
        kiosk=ack.kiosk, acked=tuple(good), digests=tuple(good_digests), rejected=ack.rejected
    )
    return CheckedAck(ack=checked, mismatched=tuple(mismatched))


def verify_downlink(payload: bytes, central_keys: Mapping[str, Ed25519PublicKey]) -> str:
    """Check a downlink message's signature (``aps-downlink-v1``); returns the key id.

    Raises :class:`EnvelopeSignatureError` (its ``reason`` says why) or
    :class:`~sync.envelope.EnvelopeError` for a message that is not a versioned object.
    """
    return verify("aps-downlink-v1", _downlink_object(payload), central_keys)


#: The largest downlink message checked at all (a state page is at most 256 KiB).
MAX_DOWNLINK_BYTES = 1024 * 1024


def _downlink_object(payload: bytes) -> dict[str, Any]:
    """A downlink message as JSON, for its signature only. Its own decoder
    (:mod:`sync.downlink`) then holds it to its bounds: state pages nest deeper than the
    generic envelope bounds allow, their item bodies are bounded one by one."""
    if len(payload) > MAX_DOWNLINK_BYTES:
        raise EnvelopeError(f"oversize: {len(payload)} bytes > limit {MAX_DOWNLINK_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise EnvelopeError("bad-json: not a JSON object in UTF-8") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("not-an-object")
    return obj


# -- central's key rotation: a signed announcement of the key set ---------------------------
KEYS_TYPE = "central-keys"
#: Retained by central; every kiosk may read it (the fleet's downlink namespace).
KEYS_TOPIC = f"{TOPIC_ROOT}/fleet/down/keys"


def key_announcement(keys: Sequence[Ed25519PublicKey], *, serial: int) -> dict[str, Any]:
    """The unsigned announcement of central's key set (sign it with :func:`sign_downlink`).

    ``serial`` grows with every rotation, so an old announcement replayed is ignored.
    """
    return {
        "v": 1,
        "type": KEYS_TYPE,
        "serial": serial,
        "keys": [{"kid": key_id(k), "public": public_key_text(k)} for k in keys],
    }


def check_key_announcement(
    payload: bytes, central_keys: Mapping[str, Ed25519PublicKey]
) -> tuple[int, list[Ed25519PublicKey]]:
    """Verify an announcement against the keys trusted now; returns (serial, new key set)."""
    obj = decode_object(payload)  # small and flat: the generic envelope bounds apply
    verify("aps-downlink-v1", obj, central_keys)
    if obj.get("type") != KEYS_TYPE:
        raise EnvelopeError(f"bad-envelope: type: expected {KEYS_TYPE!r}")
    serial = obj.get("serial")
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 1:
        raise EnvelopeError("bad-envelope: serial: expected a whole number >= 1")
    items = obj.get("keys")
    if not isinstance(items, list) or not 1 <= len(items) <= 8:
        raise EnvelopeError("bad-envelope: keys: expected 1 to 8 keys")
    out: list[Ed25519PublicKey] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise EnvelopeError(f"bad-envelope: keys[{i}]: expected an object")
        try:
            key = public_key_from_text(item.get("public", ""))
        except SyncError as exc:
            raise EnvelopeError(f"bad-envelope: keys[{i}]: {exc}") from None
        if item.get("kid") != key_id(key):
            raise EnvelopeError(f"bad-envelope: keys[{i}].kid does not name its key")
        out.append(key)
    return serial, out
