"""The touch UI's files (edge_agent/ui/static), served beside the API on the same origin.

``/`` is the page, ``/static/...`` its CSS and ES modules. Every non-API answer carries a
content security policy that allows nothing but this origin (the page works with no network
beyond 127.0.0.1, and a script injected into a field could not send anything away), and the
page itself is never cached, so a software update shows at the next idle wipe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def mount_ui(api: FastAPI, prefix: str, ui_dir: Path = UI_DIR) -> None:
    """Serve ``ui_dir`` at ``/`` and ``/static``; API paths (under ``prefix``) are untouched."""
    api.mount("/static", StaticFiles(directory=ui_dir), name="static")

    @api.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(ui_dir / "index.html", headers={"Cache-Control": "no-store"})

    @api.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        response = await call_next(request)
        if not request.url.path.startswith(prefix):
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
        return response


__all__ = ["CSP", "UI_DIR", "mount_ui"]
