"""A software release's manifest: what central signs and the kiosk checks (sans-I/O).

Theory of operation
-------------------
A release is a set of wheels (the project's own and its dependencies) that together build
the agent's virtualenv offline (``pip install --no-index --find-links``). Central describes
it in a manifest, a JSON object signed with its Ed25519 key in the ``aps-release-v1``
domain (:mod:`sync.envelope_signing`), so a manifest can never pass for a record, an ack or
a downlink message, and the kiosk checks it with the central keys it already trusts
(``[identity] central_keys``)::

    {"v": 1, "type": "release", "version": "0.2.0", "created": "2026-12-02T04:00:00Z",
     "outbox_schema": 1, "min_rollback": "0.1.0",
     "files": [{"name": "aps_kiosk-0.2.0-py3-none-any.whl", "sha256": "<64 hex>",
                "size": 123456}, ...],
     "sig": {"alg": "ed25519", "kid": "...", "value": "..."}}

- ``outbox_schema``: the outbox schema version the release reads and writes. The running
  release refuses an update whose schema it cannot read back itself
  (:data:`sync.outbox.READABLE_SCHEMA_VERSIONS`): after a rollback it must read what the new
  release queued.
- ``min_rollback``: the oldest release the new one may be rolled back to; a kiosk running
  an older one is refused the update (it must take an intermediate release first).
- ``files``: every file with its SHA-256 and size; names are plain file names (no path),
  so a manifest cannot make the kiosk write outside its download directory.

:func:`parse_manifest` is the kiosk's only way from bytes to a :class:`Manifest`: the
signature first, then every field, each error naming the field and what was expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync import SyncError
from sync.envelope_signing import Domain, EnvelopeSignatureError, sign, verify

__all__ = [
    "DOMAIN",
    "MAX_FILES",
    "MAX_MANIFEST_BYTES",
    "FileEntry",
    "Manifest",
    "ManifestError",
    "compare_versions",
    "is_version",
    "parse_manifest",
    "sign_manifest",
]

DOMAIN: Domain = "aps-release-v1"
TYPE = "release"
#: The largest manifest read at all, and the most files one may list.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_FILES = 400
#: The largest single file (a wheel) a manifest may name: 512 MiB.
MAX_FILE_BYTES = 512 * 1024 * 1024
#: A release version: two to four dotted numbers (0.2.0, 1.4.2.1), compared number by
#: number; also a directory name under /opt/aps/releases (scripts/install.sh).
VERSION_RE = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,6}){1,3}$")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\.whl$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CREATED_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")


class ManifestError(SyncError):
    """A manifest that must not be acted on; ``field`` names what is wrong (or ``sig``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"release manifest: {field}: {message}")
        self.field = field


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    name: str
    sha256: str
    size: int

    def to_object(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True, kw_only=True)
class Manifest:
    version: str
    created: str
    outbox_schema: int
    min_rollback: str
    files: tuple[FileEntry, ...]
    kid: str = ""  # the central key that signed it (set by parse_manifest)

    def to_object(self) -> dict[str, Any]:
        """The unsigned manifest object (sign it with :func:`sign_manifest`)."""
        return {
            "v": 1,
            "type": TYPE,
            "version": self.version,
            "created": self.created,
            "outbox_schema": self.outbox_schema,
            "min_rollback": self.min_rollback,
            "files": [f.to_object() for f in self.files],
        }

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def sign_manifest(manifest: Manifest, key: Ed25519PrivateKey) -> bytes:
    """The manifest as served: the checked object, signed, as indented UTF-8 JSON."""
    check_fields(manifest.to_object())  # never sign what a kiosk would refuse
    signed = sign(DOMAIN, manifest.to_object(), key)
    return (json.dumps(signed, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode()


def parse_manifest(payload: bytes, central_keys: Mapping[str, Ed25519PublicKey]) -> Manifest:
    """Verify a served manifest against central's keys, then check every field."""
    if len(payload) > MAX_MANIFEST_BYTES:
        raise ManifestError("size", f"{len(payload)} bytes > limit {MAX_MANIFEST_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        raise ManifestError("json", "not a JSON object in UTF-8") from None
    if not isinstance(obj, dict):
        raise ManifestError("json", "not a JSON object")
    try:
        kid = verify(DOMAIN, obj, central_keys)
    except EnvelopeSignatureError as exc:
        raise ManifestError(
            "sig", f"not signed by a central key this kiosk trusts ({exc})"
        ) from None
    manifest = check_fields(obj)
    return Manifest(
        version=manifest.version,
        created=manifest.created,
        outbox_schema=manifest.outbox_schema,
        min_rollback=manifest.min_rollback,
        files=manifest.files,
        kid=kid,
    )


def _version(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):
        raise ManifestError(name, "expected a version of 2 to 4 dotted numbers, such as 0.2.0")
    return value


def _int(obj: Mapping[str, Any], name: str, low: int, high: int, *, where: str = "") -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ManifestError(where + name, f"expected a whole number {low}..{high}")
    return value


def check_fields(obj: Mapping[str, Any]) -> Manifest:
    """Every field of an (unsigned or signed) manifest object, or :class:`ManifestError`."""
    if obj.get("v") != 1:
        raise ManifestError("v", "expected 1 (a newer manifest format needs a newer agent)")
    if obj.get("type") != TYPE:
        raise ManifestError("type", f"expected {TYPE!r}")
    version = _version(obj, "version")
    min_rollback = _version(obj, "min_rollback")
    if compare_versions(min_rollback, version) > 0:
        raise ManifestError("min_rollback", f"{min_rollback} is newer than version {version}")
    created = obj.get("created")
    if not isinstance(created, str) or not CREATED_RE.fullmatch(created):
        raise ManifestError("created", "expected UTC time as YYYY-MM-DDTHH:MM:SSZ")
    outbox_schema = _int(obj, "outbox_schema", 1, 1_000_000)
    items = obj.get("files")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_FILES:
        raise ManifestError("files", f"expected a list of 1 to {MAX_FILES} files")
    files: list[FileEntry] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"files[{i}]"
        if not isinstance(item, dict) or set(item) != {"name", "sha256", "size"}:
            raise ManifestError(where, "expected exactly name, sha256 and size")
        name = item["name"]
        if not isinstance(name, str) or not FILE_NAME_RE.fullmatch(name):
            raise ManifestError(f"{where}.name", "expected a wheel's file name (no path), *.whl")
        if name in seen:
            raise ManifestError(f"{where}.name", f"{name} is listed twice")
        seen.add(name)
        digest = item["sha256"]
        if not isinstance(digest, str) or not SHA256_RE.fullmatch(digest):
            raise ManifestError(f"{where}.sha256", "expected 64 lowercase hex digits")
        files.append(
            FileEntry(
                name=name,
                sha256=digest,
                size=_int(item, "size", 1, MAX_FILE_BYTES, where=f"{where}."),
            )
        )
    return Manifest(
        version=version,
        created=created,
        outbox_schema=outbox_schema,
        min_rollback=min_rollback,
        files=tuple(files),
    )


def is_version(text: str) -> bool:
    return isinstance(text, str) and VERSION_RE.fullmatch(text) is not None


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as release version ``a`` is older than, equal to or newer than ``b``
    (missing trailing numbers count as 0: 1.2 == 1.2.0)."""
    if not (is_version(a) and is_version(b)):
        raise ValueError(f"not release versions: {a!r}, {b!r} (expected such as 0.2.0)")
    pa = [int(p) for p in a.split(".")]
    pb = [int(p) for p in b.split(".")]
    width = max(len(pa), len(pb))
    ta = tuple(pa + [0] * (width - len(pa)))
    tb = tuple(pb + [0] * (width - len(pb)))
    return (ta > tb) - (ta < tb)
