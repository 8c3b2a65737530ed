"""Serving the API with uvicorn: in the foreground, or as a thread of ``aps-central run``."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("aps.central.api")


class ApiServer:
    """uvicorn on ``host:port`` in a background thread (stopped by :meth:`stop`)."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_keep_alive=5,
            limit_concurrency=64,
        )
        self.server = uvicorn.Server(config)
        self.host, self.port = host, port
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start and wait until it listens (or raise OSError naming the address)."""
        self._thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the API could not listen on {self.host}:{self.port}")
            time.sleep(0.02)
        log.info("API listening on http://%s:%d (OpenAPI: /openapi.json)", self.host, self.port)

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.port

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)


def serve_forever(app: FastAPI, host: str, port: int) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (``aps-central api``)."""
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=5)
