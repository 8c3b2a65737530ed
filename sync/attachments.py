"""Attachments (photos of papers) as chunk records (docs/protocol.md, "Attachments").

A file is split into chunks of ``chunk_bytes``; each chunk is one ``chunk``
record in the outbox, committed in the same transaction as its dossier, so it
gets the outbox's durability, acks and retransmission. After a cut, only the
chunks not yet acknowledged are sent again: the transfer resumes, it does not
restart.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from sync import SyncError
from sync.ids import new_ulid
from sync.outbox import Transaction

# Shared by the kiosk (which refuses to file over them) and central (which
# refuses chunks over them, central/attachments.py): one set of numbers.
CHUNK_BYTES = 96 * 1024
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_ATTACHMENT_CHUNKS = -(-MAX_ATTACHMENT_BYTES // CHUNK_BYTES)  # 107


class AttachmentTooLarge(SyncError):
    """The attachments of one dossier are over the limit."""


@dataclass(frozen=True, kw_only=True)
class AttachmentIn:
    name: str
    mime: str
    data: bytes


def chunk_bodies(att: str, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[dict[str, Any]]:
    """The bodies of the chunk records of one file (at least one, even if empty)."""
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be >= 1")
    file_sha = hashlib.sha256(data).hexdigest()
    pieces = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    return [
        {
            "att": att,
            "index": i,
            "total": len(pieces),
            "size": len(piece),
            "sha256": hashlib.sha256(piece).hexdigest(),
            "data": base64.b64encode(piece).decode("ascii"),
            "file_sha256": file_sha,
            "file_size": len(data),
        }
        for i, piece in enumerate(pieces)
    ]


def describe(
    files: list[AttachmentIn],
    *,
    max_total: int = MAX_ATTACHMENT_BYTES,
    chunk_bytes: int = CHUNK_BYTES,
    max_chunks: int = MAX_ATTACHMENT_CHUNKS,
) -> list[tuple[dict[str, Any], AttachmentIn]]:
    """Metadata for the dossier body, one per file; checks the limits central enforces too."""
    total = sum(len(f.data) for f in files)
    if total > max_total:
        raise AttachmentTooLarge(
            f"attachments are {total} bytes, over the limit of {max_total} bytes per dossier "
            "(sync.max_attachment_bytes); photograph fewer or smaller pages"
        )
    out = []
    for f in files:
        chunks = max(1, -(-len(f.data) // chunk_bytes))
        if chunks > max_chunks:
            raise AttachmentTooLarge(
                f"{f.name}: {len(f.data)} bytes make {chunks} chunks of {chunk_bytes} bytes, "
                f"over the limit of {max_chunks} chunks per file that central accepts "
                "([attachments] max_chunks); use larger chunks or a smaller photo"
            )
        meta = {
            "att": new_ulid(),
            "name": f.name,
            "mime": f.mime,
            "size": len(f.data),
            "sha256": hashlib.sha256(f.data).hexdigest(),
            "chunks": chunks,
        }
        out.append((meta, f))
    return out


def add_chunks(
    tx: Transaction, meta: dict[str, Any], data: bytes, chunk_bytes: int = CHUNK_BYTES
) -> int:
    """Queue the chunk records of one described file in ``tx``; returns their count."""
    bodies = chunk_bodies(meta["att"], data, chunk_bytes)
    for body in bodies:
        tx.add("chunk", body)
    return len(bodies)
