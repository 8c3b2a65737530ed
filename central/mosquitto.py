"""Run a private mosquitto on a loopback port (demo, tests, benchmarks).

It never touches a broker someone else started: it writes its own config
into a directory of its own and listens on a port it picked. The limits are
the ones docs/broker.md explains: mosquitto's defaults drop QoS 1 messages
silently beyond 1,000 queued per client, so they are raised and capped by
bytes instead; the kiosks' outbox, not the broker, is the storage.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from central import CentralError

CONFIG_TEMPLATE = """\
# Written by central/mosquitto.py; see docs/broker.md.
listener {port} 127.0.0.1
# Started as root, mosquitto would switch to the "mosquitto" user and lose
# access to this directory; stay who we are.
user {user}
allow_anonymous true
persistence false
max_queued_messages 100000
max_queued_bytes 268435456
max_inflight_messages 100
message_size_limit 67108864
set_tcp_nodelay true
log_dest file {log}
log_type error
log_type warning
log_type notice
connection_messages true
"""


def find_mosquitto() -> str:
    for candidate in (
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise CentralError(
        "mosquitto not found: install it with 'apt-get install -y mosquitto' "
        "(scripts/bootstrap.sh does this)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MosquittoProcess:
    """A mosquitto child process with its own config, on 127.0.0.1:<port>."""

    def __init__(self, workdir: Path, port: int | None = None, extra_config: str = "") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_config = extra_config

    def start(self, timeout: float = 10.0) -> MosquittoProcess:
        conf = (
            CONFIG_TEMPLATE.format(
                port=self.port, log=self.log, user=pwd.getpwuid(os.getuid()).pw_name
            )
            + self.extra_config
        )
        if self.extra_config:
            conf = conf.replace("allow_anonymous true\n", "")
        self.conf.write_text(conf)
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise CentralError(f"mosquitto exited at start (port {self.port}): {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise CentralError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout}s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
