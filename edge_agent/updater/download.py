"""Downloading a release's files: resumable with HTTP Range, each file's hash checked.

Theory of operation
-------------------
Each file named by the manifest is fetched into ``<dir>/<name>.part``. A part already there
(an earlier attempt cut short, across restarts too) is resumed with ``Range: bytes=N-``:
a ``206`` whose Content-Range starts at N is appended; a plain ``200`` (a server that
ignores Range) restarts the file from byte 0. Never more than the manifest's size is
written: a server that sends more is refused. When the part reaches the manifest's size
its SHA-256 is checked over the whole file; a mismatch deletes the part (the next attempt
starts from 0) and fails the update, naming the file. Only a checked file is renamed to its
final name, so a final name always means a good file. A connection lost half-way keeps
the part and fails this attempt; the next ``begin`` resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import httpx

from edge_agent.updater import UpdateError
from sync.release_manifest import FileEntry

CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


def fetch_file(client: httpx.Client, url: str, entry: FileEntry, into: Path) -> Path:
    """``entry`` downloaded and checked into ``into``; returns its final path."""
    into.mkdir(parents=True, exist_ok=True)
    final = into / entry.name
    if final.exists():
        if final.stat().st_size == entry.size and sha256_of(final) == entry.sha256:
            return final
        final.unlink()  # not what this manifest names (another release's file, damaged)
    part = into / f"{entry.name}.part"
    have = part.stat().st_size if part.exists() else 0
    if have > entry.size:
        have = 0
    if have < entry.size:
        have = _receive(client, url, entry, part, have)
    digest = sha256_of(part)
    if digest != entry.sha256:
        part.unlink()
        raise UpdateError(
            "downloading",
            f"{entry.name}: sha256 {digest[:16]}... is not the manifest's "
            f"{entry.sha256[:16]}...; the file was deleted and is fetched again next time",
        )
    os.replace(part, final)
    return final


def _receive(client: httpx.Client, url: str, entry: FileEntry, part: Path, have: int) -> int:
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 206:
                match = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
                if match is None or int(match.group(1)) != have:
                    raise UpdateError(
                        "downloading",
                        f"{entry.name}: the server answered Range bytes={have}- with "
                        f"Content-Range {resp.headers.get('content-range')!r}",
                    )
                mode = "ab"
            elif resp.status_code == 200:
                have, mode = 0, "wb"
            elif resp.status_code == 416 and have == entry.size:
                return have
            else:
                raise UpdateError(
                    "downloading", f"{entry.name}: GET {url} answered HTTP {resp.status_code}"
                )
            with part.open(mode) as f:
                for chunk in resp.iter_bytes(CHUNK):
                    if have + len(chunk) > entry.size:
                        raise UpdateError(
                            "downloading",
                            f"{entry.name}: the server sent more than the manifest's "
                            f"{entry.size} bytes",
                        )
                    f.write(chunk)
                    have += len(chunk)
                f.flush()
                os.fsync(f.fileno())
    except httpx.HTTPError as exc:
        kept = part.stat().st_size if part.exists() else 0
        raise UpdateError(
            "downloading",
            f"{entry.name}: {type(exc).__name__}: {exc}; {kept} of {entry.size} bytes "
            "kept, resumed next time",
        ) from None
    if have < entry.size:
        raise UpdateError(
            "downloading",
            f"{entry.name}: the server ended the file at {have} of {entry.size} bytes; "
            "the part is kept and resumed next time",
        )
    return have
