"""Serving the local API: uvicorn on a thread of the agent, loopback only."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time

import uvicorn

from edge_agent.api.app import create_app
from edge_agent.api.events import EventHub
from edge_agent.api.speech import Speech
from edge_agent.app import KioskApp
from edge_agent.config import split_listen

log = logging.getLogger("aps.api")


class ApiServer:
    """The API over ``app`` on ``listen``; :meth:`start` returns once it accepts connections."""

    def __init__(
        self,
        app: KioskApp,
        listen: str,
        *,
        max_body_kb: int = 256,
        max_event_clients: int = 4,
    ) -> None:
        self.host, port = split_listen(listen)
        self.hub = EventHub(app, max_clients=max_event_clients)
        self.speech = Speech(binary=app.cfg.ui.speech_binary, voice=app.cfg.ui.speech_voice)
        self.asgi = create_app(app, hub=self.hub, max_body_kb=max_body_kb, speech=self.speech)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((self.host, port))  # bound now: port 0 gets its number here
        except OSError:
            self._sock.close()
            raise
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.asgi,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="api-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def start(self, timeout: float = 10.0) -> None:
        self.hub.start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not self._server.started:
            raise RuntimeError(f"local API did not start on {self.url} within {timeout}s")
        log.info("local API on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        self.hub.stop(timeout)  # ends the event streams first: they hold the shutdown
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
        self.speech.close()
