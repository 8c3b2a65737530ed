"""Capture: the citizen photographs paper originals; the accepted pages go with the filing.

Flow on the screen: :meth:`CaptureService.capture` -> a :class:`Preview` (the
JPEG and its size, shown to the citizen) -> :meth:`accept` (the page is kept)
or :meth:`retake` (dropped, photographed again). :meth:`attachments` are the
accepted pages as ``AttachmentIn`` (``trang-01.jpg``, ...), for
``FilingService.file(..., attachments=...)``: from there they travel the
ordinary attachment path (chunk records in the dossier's transaction, SHA-256
per chunk and per file, checked at central). :meth:`clear` after filing or
when the citizen leaves.

Limits: each page is at most ``devices.page_max_bytes`` and never more than
what is left of the dossier's ``MAX_ATTACHMENT_BYTES`` after the accepted
pages and :data:`SIGNATURE_RESERVE_BYTES` (the handwritten signature's PNG
and strokes); at most :data:`MAX_PAGES` pages. Every refusal is a
``CitizenError`` with a Vietnamese ``message_vi``: :class:`CaptureRefused` when
the camera is missing or failed or a limit is reached (the screen's API answers
409), :class:`UnknownPage` for an id that is not (or no longer) here (404).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from drivers.document_camera import (
    BlankFrame,
    CameraError,
    CameraUnplugged,
    DocumentCamera,
    PageTooLarge,
)
from edge_agent import CitizenError
from sync.attachments import MAX_ATTACHMENT_BYTES, AttachmentIn
from sync.ids import new_ulid

__all__ = [
    "MAX_PAGES",
    "SIGNATURE_RESERVE_BYTES",
    "CaptureRefused",
    "CaptureService",
    "Preview",
    "UnknownPage",
]

log = logging.getLogger("aps.capture")

MAX_PAGES = 20
#: Kept free in the dossier's attachment budget for the signature image and strokes.
SIGNATURE_RESERVE_BYTES = 512 * 1024
_MIN_PAGE_BYTES = 100_000


class CaptureRefused(CitizenError):
    """No camera, a camera fault (unplugged, blank frame) or a page limit reached."""


class UnknownPage(CitizenError):
    """No captured page by that id (never taken, dropped, or the session ended)."""


@dataclass(frozen=True, kw_only=True)
class Preview:
    """A page photographed, not yet accepted."""

    id: str
    jpeg: bytes
    width: int
    height: int

    @property
    def size(self) -> int:
        return len(self.jpeg)

    def to_json_dict(self) -> dict[str, Any]:
        """Without the bytes (the screen fetches them by ``id``)."""
        return {
            "id": self.id,
            "width": self.width,
            "height": self.height,
            "size": self.size,
            "bytes": self.size,
        }

    def __repr__(self) -> str:
        return f"Preview({self.id}, {self.width}x{self.height}, {self.size} B)"


class CaptureService:
    """Capture, preview, accept/retake; see the module docstring. Thread-safe."""

    def __init__(self, camera: DocumentCamera | None, *, page_max_bytes: int) -> None:
        self.camera = camera
        self.page_max_bytes = page_max_bytes
        self._lock = threading.Lock()
        self._pending: Preview | None = None
        self._pages: list[Preview] = []

    @property
    def available(self) -> bool:
        return self.camera is not None

    def health(self) -> dict[str, Any] | None:
        return None if self.camera is None else self.camera.health()

    def _budget(self) -> int:
        used = sum(p.size for p in self._pages)
        return min(self.page_max_bytes, MAX_ATTACHMENT_BYTES - SIGNATURE_RESERVE_BYTES - used)

    def capture(self) -> Preview:
        """Photograph the page under the camera; it replaces a preview not yet accepted."""
        if self.camera is None:
            raise CaptureRefused(
                "no document camera configured (devices.document_camera)",
                "Ki-ốt này không có máy chụp giấy tờ. Xin mời Ông/Bà nộp bản giấy tại quầy.",
            )
        with self._lock:
            if len(self._pages) >= MAX_PAGES:
                raise CaptureRefused(
                    f"{len(self._pages)} pages accepted, the limit is {MAX_PAGES} per dossier",
                    f"Đã chụp đủ {MAX_PAGES} trang, số trang tối đa của một hồ sơ. "
                    "Xin mời Ông/Bà nộp các trang còn lại tại quầy.",
                )
            budget = self._budget()
            if budget < _MIN_PAGE_BYTES:
                raise CaptureRefused(
                    f"{budget} bytes left of the dossier's attachments, under one page",
                    "Hồ sơ đã đủ dung lượng ảnh. Xin mời Ông/Bà nộp các trang còn lại tại quầy.",
                )
            self._pending = None
        try:
            page = self.camera.capture(max_bytes=budget)
        except BlankFrame as exc:
            raise CaptureRefused(str(exc), exc.citizen_text) from exc
        except (CameraUnplugged, PageTooLarge, CameraError) as exc:
            log.warning("capture failed: %s", exc)
            raise CaptureRefused(str(exc), exc.citizen_text) from exc
        preview = Preview(id=new_ulid(), jpeg=page.jpeg, width=page.width, height=page.height)
        with self._lock:
            self._pending = preview
        log.info("page captured: %r", preview)
        return preview

    def preview(self, preview_id: str) -> Preview:
        """A pending or accepted page by id (the screen shows it)."""
        with self._lock:
            for p in [*self._pages, *([self._pending] if self._pending else [])]:
                if p.id == preview_id:
                    return p
        raise UnknownPage(
            f"id: no captured page {preview_id[:40]!r}",
            "Không tìm thấy ảnh trang này. Xin mời Ông/Bà chụp lại.",
        )

    def _take_pending(self, preview_id: str) -> Preview:
        if self._pending is None or self._pending.id != preview_id:
            raise UnknownPage(
                f"id: page {preview_id[:40]!r} is not the preview waiting for accept/retake",
                "Ảnh này không còn chờ xác nhận. Xin mời Ông/Bà chụp lại.",
            )
        pending, self._pending = self._pending, None
        return pending

    def accept(self, preview_id: str) -> int:
        """Keep the preview as the next page; returns the number of pages accepted."""
        with self._lock:
            self._pages.append(self._take_pending(preview_id))
            return len(self._pages)

    def retake(self, preview_id: str) -> Preview:
        """Drop the preview and photograph the page again."""
        with self._lock:
            self._take_pending(preview_id)
        return self.capture()

    def remove(self, preview_id: str) -> int:
        """Drop an accepted page (or the preview); returns the number of pages left."""
        with self._lock:
            if self._pending is not None and self._pending.id == preview_id:
                self._pending = None
                return len(self._pages)
            kept = [p for p in self._pages if p.id != preview_id]
            if len(kept) == len(self._pages):
                raise UnknownPage(
                    f"id: no accepted page {preview_id[:40]!r}",
                    "Không tìm thấy trang này trong hồ sơ.",
                )
            self._pages = kept
            return len(kept)

    def pages(self) -> list[Preview]:
        with self._lock:
            return list(self._pages)

    def pending(self) -> Preview | None:
        """The preview waiting for accept or retake, if any."""
        with self._lock:
            return self._pending

    def attachments(self) -> list[AttachmentIn]:
        """The accepted pages, in order, as attachments of the filing."""
        with self._lock:
            return [
                AttachmentIn(name=f"trang-{i:02d}.jpg", mime="image/jpeg", data=p.jpeg)
                for i, p in enumerate(self._pages, start=1)
            ]

    def clear(self) -> None:
        """Forget every page (after filing, or when the citizen leaves)."""
        with self._lock:
            self._pending = None
            self._pages = []
