"""Real loopback receivers for notifier tests: an HTTP webhook and an SMTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from central.notify import SIGNATURE_HEADER, verify_signature


@dataclass
class WebhookReceiver:
    secret: bytes
    url: str = ""
    status: int = 204  # what it answers; change it to make deliveries fail
    received: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    hold: threading.Event | None = None  # set: answer only after it is set (timeouts)
    got: threading.Condition = field(default_factory=threading.Condition)


@contextmanager
def webhook_receiver(secret: bytes) -> Iterator[WebhookReceiver]:
    recv = WebhookReceiver(secret=secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if recv.hold is not None:
                recv.hold.wait(10)
            ok = verify_signature(recv.secret, raw, self.headers.get(SIGNATURE_HEADER))
            with recv.got:
                if ok:
                    recv.received.append(json.loads(raw))
                else:
                    recv.bad_signatures += 1
                recv.got.notify_all()
            self.send_response(recv.status if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    recv.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recv
    finally:
        if recv.hold is not None:
            recv.hold.set()
        server.shutdown()
        server.server_close()


@dataclass
class SmtpSink:
    host: str
    port: int
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        self.sink.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    """aiosmtpd on a free loopback port (its controller cannot take port 0)."""
    for attempt in range(5):
        sink = SmtpSink(host="127.0.0.1", port=_free_port())
        controller = Controller(_Handler(sink), hostname="127.0.0.1", port=sink.port)
        try:
            controller.start()
        except OSError:  # another process took the port meanwhile
            if attempt == 4:
                raise
            continue
        break
    try:
        yield sink
    finally:
        controller.stop()
