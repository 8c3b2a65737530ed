"""``GET /v1/releases/...``: the signed release manifests and their files, for the boxes.

Read-only and unauthenticated on purpose: a manifest is signed (the box checks it against
central's keys) and every file's SHA-256 is in it, so what travels needs no secrecy and
cannot be altered unnoticed. Files answer ``Range: bytes=N-`` (and ``N-M``) with ``206``
and Content-Range, so a box resumes a download cut short; a range past the end is ``416``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from central.fleet.releases import ReleaseError, ReleaseStore
from central.web.common import ApiError

router = APIRouter(prefix="/v1/releases", tags=["releases"])

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def _store(request: Request) -> ReleaseStore:
    root = getattr(request.app.state.settings, "releases_dir", None)
    if root is None:
        raise ApiError(404, "not-found", None, "central publishes no releases ([updates])")
    return ReleaseStore(Path(root))


@router.get("/{version}/manifest.json")
def manifest(version: str, request: Request) -> Response:
    """The release's signed manifest (sync/release_manifest.py)."""
    try:
        body = _store(request).manifest_bytes(version)
    except ReleaseError as exc:
        raise ApiError(404, "not-found", "version", str(exc)) from None
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})


def _chunks(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            block = f.read(min(CHUNK, left))
            if not block:
                return
            left -= len(block)
            yield block


@router.get("/{version}/files/{name}")
def release_file(version: str, name: str, request: Request) -> Response:
    """One file of the release; ``Range`` for resuming."""
    try:
        path = _store(request).file_path(version, name)
    except ReleaseError as exc:
        raise ApiError(404, "not-found", "name", str(exc)) from None
    size = path.stat().st_size
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
    wanted = request.headers.get("range")
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(
            _chunks(path, 0, size), media_type="application/octet-stream", headers=headers
        )
    match = _RANGE.match(wanted.strip())
    if match is None:
        raise ApiError(
            416, "bad-range", "Range", "only one range, bytes=N- or bytes=N-M, is served"
        )
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else size - 1
    if start >= size or end < start:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **headers})
    end = min(end, size - 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        _chunks(path, start, end - start + 1),
        status_code=206,
        media_type="application/octet-stream",
        headers=headers,
    )
