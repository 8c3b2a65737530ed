"""The web console at central for admins and staff (docs/console.md).

Server-rendered pages under ``/console`` on the API's listener:

- :mod:`.users`: accounts (argon2 hashes), lock-out, the console tables;
- :mod:`.auth`: sessions (cookie, idle and absolute expiry), CSRF, the Origin check;
- :mod:`.policy`: which role may call which route, and what an office scope hides;
- :mod:`.routes`: the pages, thin over the library modules the HTTP API calls;
- :mod:`.views`: what the pages read, within a user's office scope;
- :mod:`.charts`: bar charts as SVG, with their numbers in a table.

:func:`install` mounts it all on the FastAPI application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from central.web.console.settings import ConsoleSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ConsoleSettings", "install"]


def install(app: FastAPI, settings: ConsoleSettings | None = None) -> None:
    """Include the console's routes, error pages and tables on ``app``."""
    from central.web.console.routes import install as _install

    _install(app, settings)
