"""Signed software releases, stored on disk under ``[updates] releases_dir``.

Theory of operation
-------------------
A release is a directory ``<releases_dir>/<version>/`` holding ``files/`` (the wheels the
box builds its virtualenv from, offline) and ``manifest.json`` (sync/release_manifest.py:
every file's SHA-256 and size, the outbox schema the release reads and writes, the oldest
release it may roll back to, signed with central's key in the ``aps-release-v1`` domain).
:meth:`ReleaseStore.add` builds it under a temporary name and renames it into place, so a
release directory with a manifest is always complete; a version, once published, is never
changed (a kiosk that downloaded half of it resumes against the same bytes): publish a new
version instead. The release must contain the project's own wheel of that version
(``aps_kiosk-<version>-*.whl``), which is what the box installs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from central import CentralError
from sync.envelope_signing import key_id
from sync.release_manifest import (
    FILE_NAME_RE,
    FileEntry,
    Manifest,
    ManifestError,
    is_version,
    parse_manifest,
    sign_manifest,
)

PROJECT_WHEEL = "aps_kiosk"
MANIFEST = "manifest.json"


class ReleaseError(CentralError):
    """A release cannot be published or read; the message names the thing and the fix."""


@dataclass(frozen=True)
class Release:
    manifest: Manifest
    path: Path

    @property
    def version(self) -> str:
        return self.manifest.version


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


def wheels_of(paths: Iterable[Path]) -> list[Path]:
    """The wheels named: files as given, directories (a wheelhouse) for their *.whl."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(path.glob("*.whl")))
        elif path.is_file():
            out.append(path)
        else:
            raise ReleaseError(f"{path}: no such file or directory")
    if not out:
        raise ReleaseError("no wheels given: name the .whl files or a wheelhouse directory")
    return out


class ReleaseStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, version: str) -> Path:
        if not is_version(version):
            raise ReleaseError(
                f"version {version!r}: expected 2 to 4 dotted numbers, such as 0.2.0"
            )
        return self.root / version

    def add(
        self,
        version: str,
        wheels: Iterable[Path],
        *,
        key: Ed25519PrivateKey,
        outbox_schema: int,
        min_rollback: str,
        now: float | None = None,
    ) -> Release:
        """Publish ``version`` from ``wheels``; refuses a version already published."""
        final = self._dir(version)
        if final.exists():
            raise ReleaseError(
                f"release {version} is published already ({final}); releases never change: "
                "bump the version"
            )
        files = wheels_of(wheels)
        names = [f.name for f in files]
        for name in names:
            if not FILE_NAME_RE.fullmatch(name):
                raise ReleaseError(f"{name}: not a wheel's file name (*.whl, no odd characters)")
        if len(set(names)) != len(names):
            raise ReleaseError("the same wheel file name is given twice")
        if not any(n.startswith(f"{PROJECT_WHEEL}-{version}-") for n in names):
            raise ReleaseError(
                f"no {PROJECT_WHEEL}-{version}-*.whl among the wheels: build the project at "
                f"version {version} (pyproject.toml) with `pip wheel --no-deps .`"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        stage = self.root / f".{version}.{os.getpid()}.tmp"
        shutil.rmtree(stage, ignore_errors=True)
        (stage / "files").mkdir(parents=True)
        try:
            entries = []
            for src in files:
                dest = stage / "files" / src.name
                shutil.copyfile(src, dest)
                entries.append(
                    FileEntry(name=src.name, sha256=_sha256(dest), size=dest.stat().st_size)
                )
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            manifest = Manifest(
                version=version,
                created=created,
                outbox_schema=outbox_schema,
                min_rollback=min_rollback,
                files=tuple(entries),
            )
            try:
                signed = sign_manifest(manifest, key)
            except ManifestError as exc:
                raise ReleaseError(str(exc)) from None
            (stage / MANIFEST).write_bytes(signed)
            os.rename(stage, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return self.get(version, key.public_key())

    def manifest_bytes(self, version: str) -> bytes:
        path = self._dir(version) / MANIFEST
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ReleaseError(f"no release {version} in {self.root}") from None

    def get(self, version: str, public_key: Ed25519PublicKey) -> Release:
        """The release, its manifest checked against central's own key."""
        raw = self.manifest_bytes(version)
        try:
            manifest = parse_manifest(raw, {key_id(public_key): public_key})
        except ManifestError as exc:
            raise ReleaseError(f"release {version}: {exc}") from None
        return Release(manifest, self._dir(version))

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if is_version(p.name)]
        return sorted(
            (v for v in found if (self.root / v / MANIFEST).is_file()),
            key=lambda v: [int(x) for x in v.split(".")],
        )

    def file_path(self, version: str, name: str) -> Path:
        """A published file's path; refuses a name that is not a plain wheel file name."""
        if not re.fullmatch(FILE_NAME_RE, name):
            raise ReleaseError(f"{name!r} is not a release file name")
        path = self._dir(version) / "files" / name
        if not path.is_file() or not (self._dir(version) / MANIFEST).is_file():
            raise ReleaseError(f"release {version} has no file {name}")
        return path
