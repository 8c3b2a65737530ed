"""Serving the API with uvicorn: in the foreground, or as a thread of ``aps-central run``."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from central.web import ApiListenError

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("aps.central.api")


class ApiServer:
    """uvicorn on ``host:port`` in a background thread (stopped by :meth:`stop`)."""

    def __init__(
        self, app: FastAPI, host: str, port: int, *, tls: tuple[Path, Path] | None = None
    ) -> None:
        """``tls``: (certificate, key) PEM files to serve HTTPS (enrolment needs it)."""
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_keep_alive=5,
            limit_concurrency=64,
            ssl_certfile=None if tls is None else str(tls[0]),
            ssl_keyfile=None if tls is None else str(tls[1]),
        )
        self.scheme = "http" if tls is None else "https"
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Bind, start, and wait until it serves (or raise :class:`ApiListenError`)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ApiListenError(
                f"the API cannot listen on {self.host}:{self.port}: {exc.strerror} "
                "(in use, or not an address of this machine?)"
            ) from None
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ApiListenError(f"the API on {self.host}:{self.port} did not start")
            time.sleep(0.02)
        log.info(
            "API listening on %s://%s:%d (OpenAPI: /openapi.json)",
            self.scheme,
            self.host,
            self.port,
        )

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self.port

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._socket is not None:
            self._socket.close()


def serve_forever(
    app: FastAPI, host: str, port: int, *, tls: tuple[Path, Path] | None = None
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (``aps-central api``)."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_keep_alive=5,
        ssl_certfile=None if tls is None else str(tls[0]),
        ssl_keyfile=None if tls is None else str(tls[1]),
    )
