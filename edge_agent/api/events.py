"""One thread turning the app's notices and state changes into events for every screen client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from edge_agent.app import Notice

log = logging.getLogger("aps.api.events")

#: Events kept per client before the oldest are dropped (a slow client loses old news only).
CLIENT_QUEUE = 64


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]


class _App(Protocol):
    def next_notice(self, timeout: float = 0.0) -> Notice | None: ...
    def health(self) -> dict[str, Any]: ...


class TooManyClients(Exception):
    pass


class Client:
    """One event-stream client: an asyncio queue fed from the hub's thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=CLIENT_QUEUE)

    def _put(self, event: Event | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest
        self.queue.put_nowait(event)

    def offer(self, event: Event | None) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed: the server is gone
            self.loop.call_soon_threadsafe(self._put, event)


class EventHub:
    """Takes the app's notices (the only taker) and watches sync and printer state.

    ``subscribe`` refuses past ``max_clients`` (:class:`TooManyClients`).
    """

    def __init__(self, app: _App, *, max_clients: int, poll_s: float = 0.5) -> None:
        self.app = app
        self.max_clients = max_clients
        self.poll_s = poll_s
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-events", daemon=True)
        self._last: dict[str, Any] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.offer(None)  # ends its stream

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Client:
        with self._lock:
            if len(self._clients) >= self.max_clients:
                raise TooManyClients(f"{len(self._clients)} event clients already")
            client = Client(loop)
            self._clients.add(client)
        for kind, data in self._last.items():  # the current state first
            client.offer(Event(kind, data))
        return client

    def unsubscribe(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def publish(self, event: Event) -> None:
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            c.offer(event)

    def _state_events(self) -> list[Event]:
        health = self.app.health()
        states = {
            "sync": {"online": health["online"], "queued": health["queued"]},
            "printer": health["devices"].get("printer", {"state": "absent"}),
        }
        changed: list[Event] = []
        for kind, data in states.items():
            old = self._last.get(kind)
            # queued alone changing is not news for the status bar's dot; online is
            key = {k: v for k, v in data.items() if k not in ("queued", "since")}
            if old is None or {k: v for k, v in old.items() if k not in ("queued", "since")} != key:
                changed.append(Event(kind, data))
            self._last[kind] = data
        return changed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                notice = self.app.next_notice(timeout=self.poll_s)
                if notice is not None:
                    self.publish(Event(notice.kind, notice.data))
                for event in self._state_events():
                    self.publish(event)
            except Exception:  # the screen's events must not die of one (invariant 6)
                log.exception("event hub step failed")
                self._stop.wait(self.poll_s)
