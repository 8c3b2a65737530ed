"""Key files on disk, for both sides: a private signing key (0600) and a set of public keys.

- A **private key** is Ed25519 in PKCS#8 PEM, unencrypted (a kiosk starts unattended), in a
  file only its owner may read: :func:`load_private_key` refuses a file the group or others
  can read, naming the ``chmod`` that fixes it. :func:`create_private_key` makes one with
  ``O_CREAT | O_EXCL`` and mode 0600 from the first byte (never a umask window), fsyncs it
  and its directory; it refuses to overwrite, so re-running a provisioning keeps the key.
- A **public key set** is JSON, ``{"v": 1, "keys": [{"kid": ..., "public": <base64url of
  the 32 raw bytes>}, ...]}``, written atomically (temporary file, fsync, rename).
  :func:`load_public_keys` checks every ``kid`` against its key (:func:`key_id`) and returns
  ``{kid: key}`` for :func:`sync.envelope_signing.verify`.

The kiosk holds its own private key and central's public keys (``[identity]`` in agent.toml);
central holds its own private key (``[security] signing_key``) and the kiosks' public keys in
its registry.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from sync import SyncError
from sync.envelope_signing import key_id

__all__ = [
    "KeyFileError",
    "create_private_key",
    "load_key_set_serial",
    "load_private_key",
    "load_public_keys",
    "public_key_from_text",
    "public_key_text",
    "write_public_keys",
]

MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFileError(SyncError):
    """A key file is missing, unreadable, too open, or not what it should be (message says)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def public_key_text(key: Ed25519PublicKey) -> str:
    """base64url (no padding) of the key's 32 raw bytes: how keys travel in JSON."""
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_key_from_text(text: str) -> Ed25519PublicKey:
    if not isinstance(text, str) or len(text) != 43:
        raise KeyFileError("public key: expected 43 base64url characters (32 bytes)")
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        raise KeyFileError("public key: not base64url") from None
    return Ed25519PublicKey.from_public_bytes(raw)


def create_private_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """Make a new key at ``path`` (0600), or load the one already there.

    Returns ``(key, created)``. An existing file is never overwritten.
    """
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return load_private_key(path), False
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    return key, True


def load_private_key(path: Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"signing key {path} not found (on a kiosk: aps-agent provision makes it; "
            "at central: aps-central ca init)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"signing key {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"signing key {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"signing key {path} has mode {stat.S_IMODE(st.st_mode):04o}: others may read it; "
            f"chmod 600 {path}"
        )
    try:
        data = path.read_bytes()[: MAX_KEY_FILE_BYTES + 1]
    except OSError as exc:
        raise KeyFileError(f"signing key {path} cannot be read: {exc.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"signing key {path} is not an unencrypted PEM key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is not an Ed25519 key")
    return key


def write_public_keys(
    path: Path, keys: Iterable[Ed25519PublicKey], *, serial: int | None = None
) -> None:
    """Write the set atomically (mode 0644: public keys are not secret).

    ``serial`` (optional) is the key-set announcement the set came from (central's key
    rotation, sync.wire_signing): kept in the same file, so set and serial change together.
    """
    path = Path(path)
    doc: dict[str, object] = {
        "v": 1,
        "keys": [{"kid": key_id(k), "public": public_key_text(k)} for k in keys],
    }
    if serial is not None:
        doc["serial"] = serial
    tmp = path.with_name(f".{path.name}.tmp")
    data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load_public_keys(path: Path) -> dict[str, Ed25519PublicKey]:
    path = Path(path)
    try:
        data = path.read_bytes()[: MAX_KEY_FILE_BYTES + 1]
    except FileNotFoundError:
        raise KeyFileError(
            f"public keys {path} not found (on a kiosk: aps-agent provision writes them)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"public keys {path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"public keys {path}: larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except ValueError:
        raise KeyFileError(f"public keys {path}: not JSON") from None
    if not isinstance(doc, dict) or doc.get("v") != 1 or not isinstance(doc.get("keys"), list):
        raise KeyFileError(f'public keys {path}: expected {{"v": 1, "keys": [...]}}')
    out: dict[str, Ed25519PublicKey] = {}
    for i, item in enumerate(doc["keys"]):
        if not isinstance(item, dict):
            raise KeyFileError(f"public keys {path}: keys[{i}] is not an object")
        key = public_key_from_text(item.get("public", ""))
        if item.get("kid") != key_id(key):
            raise KeyFileError(f"public keys {path}: keys[{i}].kid does not name its key")
        out[key_id(key)] = key
    if not out:
        raise KeyFileError(f"public keys {path}: no keys")
    return out


def load_key_set_serial(path: Path) -> int:
    """The ``serial`` a public key set was written with (0 if none, or unreadable)."""
    try:
        doc = json.loads(Path(path).read_bytes()[: MAX_KEY_FILE_BYTES + 1])
    except (OSError, ValueError):
        return 0
    serial = doc.get("serial") if isinstance(doc, dict) else None
    return serial if isinstance(serial, int) and not isinstance(serial, bool) else 0
